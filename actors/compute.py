"""Ray's side of `step.do(..., resources=...)`: each attempt is a Ray task with those resources
(runtime/compute.py has the semantics), submitted by the node's ComputeActor (the attempt's
owner) so that it outlives an activation that hibernates while it runs. The instance actor's
RayCompute asks the owner to start, join, hand over or drop an attempt; a drop (the attempt's
timeout, terminate, restart, delete) cancels the task, killing its worker if it runs.

Ray keeps a task no node can ever run queued forever (an "infeasible" task, waiting for an
autoscaler). An attempt that is still waiting after FIRST_LOOK seconds has its request compared
with what the alive nodes have in total; once it has matched no node for `infeasible_after`
seconds, the task is cancelled and the attempt fails with InfeasibleResourcesError naming the
request and what each node offers. A request that fits some node but waits for it to be free is
not infeasible: it waits as long as the step's timeout allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from ..errors import InfeasibleResourcesError, PayloadError
from ..runtime.clock import clock_for
from ..runtime.compute import INFEASIBLE_AFTER, AttemptKey, ComputeRequest
from ..storage import keys
from ..storage.codec import MAX_RESULT_BYTES, encode
from ..storage.instances import InstanceStore, clock_offset
from ..storage.kv import open_lmdb
from ..storage.records import Fenced, StepRecord, StepState, unpack_step
from . import handles
from .logs import forward_logs

log = logging.getLogger("raydo")

FIRST_LOOK = 1.0  # seconds an attempt may wait before anyone asks whether it can ever run
LOOK_EVERY = 2.0  # seconds between later looks at the cluster while it cannot
SWEEP_EVERY = 1.0  # seconds between the owner's looks for attempts whose step was taken away
_SHOWN = ("CPU", "GPU", "memory")


def run_step(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """The task body: the user's step function, sync or async."""
    result = fn(*args)
    if inspect.isawaitable(result):
        return asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def task_options(req: ComputeRequest) -> dict[str, Any]:
    """Ray options for one attempt (or one actor): raydo retries, never Ray."""
    options: dict[str, Any] = {"max_retries": 0}
    for name in ("num_cpus", "num_gpus", "memory"):
        value = getattr(req, name)
        if value is not None:
            options[name] = int(value) if name == "memory" else value
    if req.resources:
        options["resources"] = dict(req.resources)
    return options


class RayCompute:
    """The ComputeExecutor of an instance actor: a client of its node's ComputeActor."""

    def __init__(self, storage: str, infeasible_after: float = INFEASIBLE_AFTER) -> None:
        self.storage, self.infeasible_after = storage, infeasible_after
        self._owner: Any = None

    @property
    def owner(self) -> Any:
        if self._owner is None:
            from .handles import compute_actor

            self._owner = compute_actor(self.storage)
        return self._owner

    async def start(
        self, key: AttemptKey, fn: Callable[..., Any], args: tuple[Any, ...], req: ComputeRequest
    ) -> float:
        wait = self.infeasible_after if req.infeasible_after is None else req.infeasible_after
        return float(await self.owner.start.remote(key, fn, args, req, wait))

    async def outcome(self, key: AttemptKey) -> Any:
        try:
            ok, value = await self.owner.outcome.remote(key)
        except RayActorError as exc:
            raise AttemptLostError(
                f"attempt {key.attempt} of step {key.name!r} was lost with its owner: {exc}"
            ) from None
        if ok:
            return value
        raise value

    async def knows(self, key: AttemptKey) -> bool:
        try:
            return bool(await self.owner.knows.remote(key))
        except RayActorError:
            return False

    def detach(self, key: AttemptKey, lease: int) -> None:
        self.owner.detach.remote(key, lease)

    def drop(self, key: AttemptKey) -> None:
        self.owner.drop.remote(key)


class AttemptLostError(Exception):
    """The owner of a placed attempt died while the instance waited for it: a failed attempt,
    retried by the step's policy."""


@dataclass
class _Attempt:
    """What the owner holds of one placed attempt."""

    ref: Any
    started: float  # time.monotonic() at submission
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: tuple[bool, Any] = (False, None)
    lease: int | None = None  # set while its instance hibernates: record under this lease
    follow: asyncio.Task[None] | None = None


class ComputeActor:
    """The owner of a node's placed step attempts (one per node storage, detached, pinned).

    It submits each attempt's task, so the task outlives the activation that asked for it (Ray
    ties a task to the process that submitted it). While the instance is attached it only hands
    the outcome over; once the instance hibernated on it (`detach`), it records a result at home
    itself (the step record, fenced by the lease: a terminate or restart in between wins), keeps
    an error for the replay to apply by the step's policy, and wakes the instance. Attempts whose
    step was taken away (terminated, restarted, deleted) are cancelled by a sweep every second.
    What it holds is in memory only: after its death, the attempts it ran are lost attempts.
    """

    def __init__(self, storage: str) -> None:
        forward_logs()
        self.storage = storage
        self.kv = open_lmdb(storage)
        self.clock = clock_for(lambda: clock_offset(self.kv))
        self._remote = ray.remote(run_step)
        self.attempts: dict[AttemptKey, _Attempt] = {}
        self._stores: dict[str, InstanceStore] = {}
        self._sweep = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def start(
        self,
        key: AttemptKey,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        req: ComputeRequest,
        wait: float,
    ) -> float:
        """Submit the attempt, or join it: the seconds it has run."""
        key = AttemptKey(*key)
        held = self.attempts.get(key)
        if held is None:
            ref = self._remote.options(**task_options(req)).remote(fn, args)
            held = self.attempts[key] = _Attempt(ref, time.monotonic())
            held.follow = asyncio.ensure_future(self._follow(key, held, req, wait))
        held.lease = None  # attached again
        return time.monotonic() - held.started

    async def outcome(self, key: AttemptKey) -> tuple[bool, Any]:
        held = self.attempts.get(AttemptKey(*key))
        if held is None:
            return False, AttemptLostError(f"attempt {key[4]} of step {key[2]!r} is not known")
        await held.ended.wait()
        return held.outcome

    async def knows(self, key: AttemptKey) -> bool:
        return AttemptKey(*key) in self.attempts

    async def detach(self, key: AttemptKey, lease: int) -> None:
        key = AttemptKey(*key)
        held = self.attempts.get(key)
        if held is not None:
            held.lease = lease
            if held.ended.is_set():
                await self._hand_over(key, held)

    async def drop(self, key: AttemptKey) -> None:
        held = self.attempts.pop(AttemptKey(*key), None)
        if held is not None and not held.ended.is_set():
            with contextlib.suppress(Exception):
                ray.cancel(held.ref, force=True)
            if held.follow is not None:
                held.follow.cancel()

    async def _follow(
        self, key: AttemptKey, held: _Attempt, req: ComputeRequest, wait: float
    ) -> None:
        future = asyncio.ensure_future(_get(held.ref))
        try:
            await _watch(future, req, wait)
            held.outcome = (True, future.result())
        except RayTaskError as exc:  # the step's own error, as the step raised it
            held.outcome = (False, exc.cause if isinstance(exc.cause, Exception) else exc)
        except Exception as exc:  # found infeasible, or the task's worker died
            with contextlib.suppress(Exception):
                ray.cancel(held.ref, force=True)
            held.outcome = (False, exc)
        finally:
            future.cancel()
        held.ended.set()
        if held.lease is not None:
            await self._hand_over(key, held)

    async def _hand_over(self, key: AttemptKey, held: _Attempt) -> None:
        """The attempt ended while its instance hibernates: record a result at home, keep an
        error for the replay, and wake the instance."""
        ok, value = held.outcome
        if ok and held.lease is not None and self._record(key, held.lease, value):
            self.attempts.pop(key, None)
        await self._wake(key)

    def _record(self, key: AttemptKey, lease: int, value: Any) -> bool:
        rec = self._running(key)
        if rec is None:
            return False
        try:
            raw = encode(value, f"result of step {key.name!r}", MAX_RESULT_BYTES)
        except PayloadError:
            return False  # the replay meets the same error and applies the step's policy
        rec.state, rec.value, rec.error = StepState.DONE, raw, None
        rec.ended_at = self.clock.now()
        try:
            store = self._store(key.workflow)
            store.save_step(key.iid, lease, (key.name, key.nth), rec, durable=True)
        except Fenced:
            return False  # another activation runs the instance: it rejoins the attempt
        return True

    def _running(self, key: AttemptKey) -> StepRecord | None:
        """The step record of this attempt, while it is the running one of an unfinished
        instance (a terminate leaves the step record as it was)."""
        instance = self._store(key.workflow).get(key.iid)
        if instance is None or instance.finished:
            return None
        raw = self.kv.read(lambda r: r.get(keys.step(key.workflow, key.iid, key.name, key.nth)))
        if raw is None:
            return None
        rec = unpack_step(raw, f"step {key.name!r}")
        running = rec.state is StepState.RUNNING and rec.attempts == key.attempt
        running = running and rec.started_at == key.since  # not a restart's new step
        return rec if running else None

    async def _wake(self, key: AttemptKey) -> None:
        for _ in range(300):  # the instance's hibernation may not have reached its namespace yet
            namespace = handles.existing_namespace(self.storage, key.workflow)
            if namespace is None or await namespace.wake_now.remote(key.iid):
                return
            await asyncio.sleep(0.1)

    def _store(self, workflow: str) -> InstanceStore:
        store = self._stores.get(workflow)
        if store is None:
            store = self._stores[workflow] = InstanceStore(self.kv, workflow)
            store.now = self.clock.now
        return store

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            try:
                await self._sweep_once()
            except Exception:  # a loop that halts on one error halts every cancel after it
                log.exception("sweeping placed attempts failed")

    async def _sweep_once(self) -> None:
        """Cancel the attempts whose step is no longer running that attempt (terminated,
        restarted, deleted, or recorded by its instance)."""
        now = time.monotonic()
        for key, held in list(self.attempts.items()):
            if now - held.started > SWEEP_EVERY and self._running(key) is None:
                await self.drop(key)


async def _get(ref: Any) -> Any:
    return await ref


async def _watch(future: asyncio.Future[Any], req: ComputeRequest, wait: float) -> None:
    """Return once `future` is done; raise InfeasibleResourcesError once no alive node could
    ever run the request for the whole wait."""
    done, _ = await asyncio.wait({future}, timeout=FIRST_LOOK)
    unmet_since: float | None = None
    while not done:
        offered = await asyncio.to_thread(offers)
        if fits_somewhere(req, offered):
            unmet_since = None
        else:
            unmet_since = unmet_since or time.monotonic()
            if time.monotonic() - unmet_since >= wait:
                raise infeasible(req, offered, wait)
        done, _ = await asyncio.wait({future}, timeout=LOOK_EVERY)


def offers() -> list[dict[str, float]]:
    """What each alive node has in total: CPU, GPU, memory and custom resources (not Ray's
    per-node markers)."""
    return [
        {k: v for k, v in node["Resources"].items() if _is_offer(k)}
        for node in ray.nodes()
        if node.get("Alive")
    ]


def _is_offer(name: str) -> bool:
    hidden = name.startswith(("node:", "accelerator_type:")) or name == "object_store_memory"
    return not hidden


def fits_somewhere(req: ComputeRequest, offered: list[dict[str, float]]) -> bool:
    amounts = req.amounts()
    return any(all(node.get(k, 0.0) >= v for k, v in amounts.items()) for node in offered)


def infeasible(req: ComputeRequest, offered: list[dict[str, float]], wait: float) -> Exception:
    shown = [
        {k: v for k, v in node.items() if k in _SHOWN or k in req.resources} for node in offered
    ]
    return InfeasibleResourcesError(
        f"step resources {req.describe()} match no node of the cluster (waited {wait:g} s; "
        f"the alive nodes offer {shown}); give a request some node can meet, add such a node, "
        "or raise infeasible_after",
        request=req.amounts(),
        offered=shown,
    )
