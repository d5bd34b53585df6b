"""LocalEnv: raydo in this process, for fast unit tests of workflows. No Ray; the same bindings.

The namespace and the instance workers of runtime/ (what the Ray actors wrap) run on an event loop
in a thread of their own, over an in-memory store (or LMDB in a folder) and a FakeClock. The
bindings a test holds (`env.workflow(Cls)`) are raydo's own Workflow and WorkflowInstance; their
calls go to that loop instead of to actors, and answer with the same Pending (await it, or
`.result()`), so sync and async tests both work.

Time: the FakeClock moves only when the test advances it (`env.advance(...)`), or, while the test
waits through the kit (introspector waits, `instance.wait()`, `wait_all`) with `auto_skip` on,
when nothing can happen without it: no step attempt runs, nothing is ready to run, and the next
thing due is a sleep, a retry delay, a wait's timeout or a timer. Then the clock jumps to it (as
Temporal's test server skips time while a client waits on a result).

Steps given `resources=` run here, in this process, like any other step (there is no Ray to
place them on; the request is still checked): their logic, retries and timeouts are tested, not
their placement or hibernation while they run (RayEnv, or a cluster, tests those).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from ..bindings.pending import Pending
from ..bindings.shipping import fingerprint
from ..bindings.workflow import Workflow, to_status
from ..errors import InstanceNotFoundError, InvalidInputError, WaitTimeoutError
from ..runtime import listing, stream
from ..runtime.clock import FakeClock
from ..runtime.local import InstanceRunner, LocalPool
from ..runtime.model import Env, InstanceStatus, StatusInfo, WorkflowEntrypoint
from ..runtime.namespace import Namespace, Snapshot, WorkerPool
from ..runtime.options import WorkflowOptions
from ..runtime.rules import Duration, seconds, show, show_seconds
from ..runtime.schedules import Scheduler
from ..storage import kv as kvs
from ..storage.instances import InstanceStore, check_schema, set_sync_mode
from ..storage.schedules import ScheduleStore
from .backend import NOT_YET, Binds, Probe
from .inputs import DEFAULT_TIMEOUT

T = TypeVar("T")

START = datetime(2030, 1, 1, tzinfo=UTC)
"""Where a LocalEnv's clock starts, unless given: a fixed time, so tests are repeatable."""

_BUSY_PAUSE = 0.001  # real seconds between looks while something runs (no busy spinning)


class LocalEnv(Binds):
    """An in-process raydo (see the module docstring).

    storage: None for memory, or a folder for LMDB. start: the fake clock's start (a datetime or
    epoch seconds). auto_skip: skip time while the test waits and every instance waits on it.
    limit: real seconds `advance` waits for instances to settle.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        storage: str | os.PathLike[str] | None = None,
        *,
        start: datetime | float = START,
        auto_skip: bool = True,
        limit: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.path = None if storage is None else os.path.abspath(os.fspath(storage))
        self.kv = kvs.MemoryKV() if self.path is None else _open_lmdb(self.path)
        check_schema(self.kv)
        self.clock = FakeClock(_epoch(start))
        self.auto_skip, self.limit = auto_skip, limit
        self._namespaces: dict[str, LocalNamespace] = {}
        self._timers: dict[tuple[str, str], float] = {}
        self._waiters = 0
        self._driver: asyncio.Future[None] | None = None
        self._moved = asyncio.Event()  # set (and replaced) by the driver after each move
        self._loop = _LoopThread()

    # -- what tests call -------------------------------------------------------------------------

    def _bind(
        self, cls: type[WorkflowEntrypoint], name: str | None, options: WorkflowOptions
    ) -> Workflow:
        binding = LocalWorkflow(self, cls, name, options)
        self._loop.call(self._register(binding)).result()
        return binding

    def now(self) -> datetime:
        """The env's (fake) time."""
        return datetime.fromtimestamp(self.clock.now(), tz=UTC)

    def advance(self, duration: Duration) -> Pending[None]:
        """Move time forward by `duration`, waking what falls due in order and letting each wake
        play out before time moves on."""
        return Pending(self._loop.call(self._advance(seconds(duration, "advance duration"))))

    def close(self) -> None:
        """Stop every instance and the loop; close the storage."""
        if self._loop.loop.is_running():
            self._loop.call(self._stop_all()).result(timeout=10)
        self._loop.stop()
        for ns in self._namespaces.values():
            ns.shutdown()
        if self.path is not None:
            kvs.close(self.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- Backend (for introspectors) ---------------------------------------------------------

    def store(self, workflow: str) -> InstanceStore:
        return InstanceStore(self.kv, workflow)

    def status(self, workflow: Workflow, iid: str) -> StatusInfo | None:
        """(Called on the env's loop, by probes.)"""
        ns = self._namespaces.get(workflow.name)
        if ns is None:
            return None
        try:
            return to_status(ns.ns.snapshot(iid, steps=True))
        except InstanceNotFoundError:
            return None

    def poll(self, probe: Probe, timeout: float | None) -> Pending[Any]:
        return Pending(self._loop.call(self.until(probe, timeout)))

    # -- on the env's loop -------------------------------------------------------------------

    async def _register(self, binding: LocalWorkflow) -> None:
        found = self._namespaces.get(binding.name)
        if found is None:
            found = self._namespaces[binding.name] = LocalNamespace(self, binding)
        else:
            found.use_class(binding.cls)
        if binding.options.schedules is not None:
            found.scheduler.use(list(binding.options.schedules))

    async def _stop_all(self) -> None:
        """No new activation starts; every task is cancelled (also those a cancelled one
        starts on its way out)."""
        for ns in self._namespaces.values():
            ns.ns.concurrency = 0
        while tasks := [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def schedule(self, workflow: str, iid: str, due: float) -> None:
        """A hibernated instance's wake-up (what the timer actor keeps in Ray mode)."""
        self._timers[(workflow, iid)] = due

    async def until(self, probe: Probe, timeout: float | None) -> Any:
        """Run `probe` until it answers, moving time on (see the module docstring). Many waits
        may run at once: one driver task moves things on and each wait probes after each of its
        moves (waits that yielded to each other would never see the loop idle)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._waiters += 1
        if self._driver is None or self._driver.done():
            self._driver = asyncio.ensure_future(self._drive())
        try:
            while True:
                value = probe()
                if value is not NOT_YET:
                    return value
                if deadline is not None and loop.time() >= deadline:
                    raise WaitTimeoutError(
                        f"not reached within {show_seconds(timeout or 0.0)} real seconds (the "
                        f"env's clock is at {self.now().isoformat()})"
                    )
                await self._moved.wait()
        finally:
            self._waiters -= 1

    async def _drive(self) -> None:
        while self._waiters:
            await self._move_on(skip=self.auto_skip)
            moved, self._moved = self._moved, asyncio.Event()
            moved.set()

    async def _move_on(self, skip: bool) -> None:
        await asyncio.sleep(0)
        if not self._quiet():
            await asyncio.sleep(0 if self._ready() else _BUSY_PAUSE)
            return
        due = self._next_due()
        if skip and due is not None:
            await self._skip_to(due)
        else:
            await asyncio.sleep(_BUSY_PAUSE)

    async def _advance(self, secs: float) -> None:
        target = self.clock.now() + secs
        while True:
            await self._settle()
            due = self._next_due()
            if due is None or due > target:
                break
            await self._skip_to(due)
        await self._skip_to(target)
        await self._settle()

    async def _settle(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limit
        while not self._quiet():
            if loop.time() >= deadline:
                raise WaitTimeoutError(
                    f"instances still running steps after {show_seconds(self.limit)} real seconds"
                )
            await self._move_on(skip=False)

    async def _skip_to(self, when: float) -> None:
        await self.clock.advance(max(0.0, when - self.clock.now()))
        self._fire_timers()

    def _fire_timers(self) -> None:
        now = self.clock.now()
        due = sorted((t, key) for key, t in self._timers.items() if t <= now)
        for _, key in due:
            del self._timers[key]
        for workflow, iid in (key for _, key in due):
            self._namespaces[workflow].ns.wake([iid])

    def _next_due(self) -> float | None:
        times = [t for t in (self.clock.next_deadline(), *self._timers.values()) if t is not None]
        return min(times, default=None)

    def _quiet(self) -> bool:
        """Nothing can happen without time moving: nothing is ready to run on the loop and no
        step attempt runs (in a thread, or awaiting real I/O)."""
        return not self._ready() and not any(
            ns.running_attempt() for ns in self._namespaces.values()
        )

    def _ready(self) -> bool:
        ready = getattr(asyncio.get_running_loop(), "_ready", None)  # asyncio's run queue
        return bool(ready)


class LocalNamespace:
    """A workflow's Namespace and in-process workers: what the NamespaceActor is in Ray mode,
    with the same method names (the bindings call them as they call the actor's)."""

    def __init__(self, env: LocalEnv, binding: LocalWorkflow) -> None:
        self.env, self.name = env, binding.name
        options = binding.options
        store = InstanceStore(env.kv, binding.name)
        store.now = env.clock.now
        self.runners = [
            InstanceRunner(
                store,
                binding.cls,
                env.clock,
                Env(dict(options.env)),
                options.hibernate_after,
                code=binding.code,
            )
            for _ in range(options.concurrency)
        ]
        # LocalPool hands out InstanceRunners, the Workers of this process.
        pool = cast(WorkerPool, LocalPool(self.runners))
        self.ns = Namespace(store, pool, env.clock, self._schedule, options.concurrency)
        self.scheduler = Scheduler(self.ns, ScheduleStore(env.kv, binding.name), env.clock)

    def _schedule(self, iid: str, due: float) -> None:
        self.env.schedule(self.name, iid, due)

    def use_class(self, cls: type[WorkflowEntrypoint]) -> None:
        for runner in self.runners:
            runner.cls = cls

    def running_attempt(self) -> bool:
        """A step attempt runs in one of the workers (in a thread, or awaiting real I/O)."""
        return any(r.earliest_deadline() is not None for r in self.runners)

    def shutdown(self) -> None:
        for runner in self.runners:
            runner.executor.shutdown(wait=False, cancel_futures=True)

    # -- the NamespaceActor's methods ----------------------------------------------------------

    async def use_code(self, cls: type[WorkflowEntrypoint], code: str) -> str | None:
        self.use_class(cls)
        return None

    async def create(
        self,
        items: list[tuple[str, bytes]],
        skip_existing: bool,
        retention: dict[str, float] | None = None,
    ) -> list[str]:
        return self.ns.create(items, skip_existing, retention)

    async def exists(self, iid: str) -> None:
        self.ns.store.require(iid)

    async def snapshot(self, iid: str, steps: bool) -> Snapshot:
        return self.ns.snapshot(iid, steps)

    async def instances(
        self, since: float | None = None, until: float | None = None
    ) -> list[Snapshot]:
        return [
            Snapshot(rec, None, None, False)
            for rec in self.ns.store.records()
            if (since is None or rec.created_at >= since)
            and (until is None or rec.created_at <= until)
        ]

    async def list_instances(
        self,
        status: InstanceStatus | None,
        limit: int,
        cursor: str | None,
        reverse: bool,
        since: float | None = None,
        until: float | None = None,
    ) -> listing.Page:
        query = listing.Query(status, limit, cursor, reverse, since, until)
        return listing.page_indexed(self.ns.store, self.ns.reported, self.ns.overlaid(), query)

    async def counts(self) -> dict[str, int]:
        return listing.kept_counts(self.ns.store, self.ns.reported, self.ns.overlaid())

    async def params(self, iid: str) -> bytes | None:
        self.ns.store.require(iid)
        return self.ns.store.params(iid)

    async def pause(self, iid: str) -> None:
        self.ns.pause(iid)

    async def resume(self, iid: str) -> None:
        self.ns.resume(iid)

    async def terminate(self, iid: str, rollback: bool = False) -> None:
        self.ns.terminate(iid, rollback)

    async def restart(self, iid: str, from_step: Any) -> None:
        self.ns.restart(iid, from_step)

    async def delete(self, iid: str) -> None:
        self.ns.delete(iid)

    async def send_event(self, iid: str, type_: str, payload: bytes) -> None:
        self.ns.send_event(iid, type_, payload)

    async def wait(self, iid: str, timeout: float | None, steps: bool) -> Snapshot:
        """Like the actor's, with time skipping; `timeout` is in real seconds."""
        self.ns.store.require(iid)

        def probe() -> Any:
            snap = self.ns.snapshot(iid, steps)
            return snap if snap.record.status.finished else NOT_YET

        return await self._until(probe, timeout, iid)

    async def wait_all(self, iids: list[str], timeout: float | None) -> list[Snapshot]:
        for iid in iids:
            self.ns.store.require(iid)

        def probe() -> Any:
            snaps = [self.ns.snapshot(iid) for iid in iids]
            return snaps if all(s.record.status.finished for s in snaps) else NOT_YET

        return await self._until(probe, timeout, None)

    async def _until(self, probe: Probe, timeout: float | None, iid: str | None) -> Any:
        try:
            return await self.env.until(probe, timeout)
        except WaitTimeoutError:
            what = f"instance {iid!r}" if iid is not None else "the instances"
            raise WaitTimeoutError(
                f"{what} did not finish within {show_seconds(timeout or 0.0)} real seconds",
                id=iid,
            ) from None

    async def history(
        self, iid: str, after: int | None, types: frozenset[str] | None, wait: float
    ) -> stream.Batch:
        return await stream.poll(self.ns.store, iid, after, types, wait, fault=self.ns.fault)

    async def stats(self) -> dict[str, Any]:
        return {**self.ns.stats(), "actors": len(self.runners)}


class LocalWorkflow(Workflow):
    """raydo's Workflow binding, answered by a LocalEnv instead of a namespace actor."""

    def __init__(
        self,
        env: LocalEnv,
        cls: type[WorkflowEntrypoint],
        name: str | None,
        options: WorkflowOptions,
    ) -> None:
        super().__init__(cls, name, options=options, code=_code_of(cls))
        self.testing_backend = env
        self._handle = _Handle(env, self)

    @property
    def storage(self) -> str:
        return self.testing_backend.path or ":memory:"

    @property
    def actor(self) -> Any:
        return self._handle

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            f"a LocalEnv binding of workflow {self.name!r} lives in this process and cannot be "
            "sent to another one"
        )


class _Handle:
    """Stands for the namespace actor: `handle.create.remote(...)` runs LocalNamespace.create on
    the env's loop and returns a future (which Pending waits on)."""

    def __init__(self, env: LocalEnv, binding: LocalWorkflow) -> None:
        self._env, self._name = env, binding.name

    def __getattr__(self, method: str) -> _Method:
        return _Method(self._env, self._name, method)


class _Method:
    def __init__(self, env: LocalEnv, workflow: str, method: str) -> None:
        self._env, self._workflow, self._method = env, workflow, method

    def remote(self, *args: Any) -> concurrent.futures.Future[Any]:
        return self._env._loop.call(self._run(*args))

    async def _run(self, *args: Any) -> Any:
        target = getattr(self._env._namespaces[self._workflow], self._method)
        return await target(*args)


class _LoopThread:
    """An event loop in a daemon thread; `call` runs a coroutine there and returns a future."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="raydo-local-env", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> _LoopFuture[T]:
        future: _LoopFuture[T] = _LoopFuture(self.thread)

        def start() -> None:
            if not future.set_running_or_notify_cancel():
                coro.close()
                return
            task = self.loop.create_task(coro)
            task.add_done_callback(lambda done: _copy_outcome(done, future))

        self.loop.call_soon_threadsafe(start)
        return future

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


class _LoopFuture(concurrent.futures.Future[T]):
    """A future answered on the env's loop. Blocking on it from that loop would wait forever (a
    workflow calling `.result()` on a binding call inside run()): that is an error instead."""

    def __init__(self, loop_thread: threading.Thread) -> None:
        super().__init__()
        self._loop_thread = loop_thread

    def result(self, timeout: float | None = None) -> T:
        if not self.done() and threading.current_thread() is self._loop_thread:
            raise RuntimeError(
                "a binding call's .result() was called inside a workflow running in a LocalEnv, "
                "which would block it forever; use `await` inside run() and steps"
            )
        return super().result(timeout)


def _code_of(cls: type) -> str:
    """The class's code fingerprint (status().code), when it can be taken: a class written inside
    a test function may close over things that do not pickle, and never leaves the process."""
    try:
        return fingerprint(cls)
    except Exception:
        return "local"


def _copy_outcome(task: asyncio.Task[T], future: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        future.set_exception(concurrent.futures.CancelledError())
    elif (exc := task.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(task.result())


def _epoch(start: Any) -> float:
    """The clock's start: an aware datetime (naive means UTC) or epoch seconds."""
    if isinstance(start, datetime):
        return (start if start.tzinfo else start.replace(tzinfo=UTC)).timestamp()
    if isinstance(start, (int, float)) and not isinstance(start, bool) and math.isfinite(start):
        return float(start)
    raise InvalidInputError(
        f"start {show(start)} must be a datetime or epoch seconds", value=show(start)
    )


def _open_lmdb(path: str) -> kvs.LmdbKV:
    """LMDB for a test: no fsync (a test never survives an OS crash anyway)."""
    kv = kvs.open_lmdb(path)
    set_sync_mode(kv, each_commit=False)
    kv.sync_each_commit = False
    return kv
