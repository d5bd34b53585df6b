"""Steps that run where the compute is: `step.do(name, fn, resources={...})`. Pure; no Ray.

A step given `resources` runs each attempt as a task on a node that has them, while the instance
waits at home; the result comes back and is recorded at home like any step's. The engine only
sees a `ComputeExecutor` handed to it (actors/compute.py is Ray's); retries, the attempt timeout,
pause and terminate apply unchanged, because to the step path the placed step is just an async
function: cancelling its await (timeout, terminate) cancels the task.

An attempt that runs longer than `hibernate_after` (default HIBERNATE_AFTER, per step in the
dict) lets the instance hibernate: the activation ends `waiting` while the attempt's owner (one
per node, actors/compute.py) keeps the task; when it ends, the owner records a result at home
(fenced by the lease) or keeps an error, and wakes the instance, whose replay reads the result or
*rejoins* the attempt (`PlacedStep.rejoins`) and records the error by the step's policy. An
attempt its owner no longer knows (the owner or the node died) is a lost attempt.

The same request shape sets what a workflow's instance actors reserve (WorkflowOptions.resources).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..errors import InvalidInputError
from .model import StepContext
from .rules import Duration, seconds, show

if TYPE_CHECKING:
    from .engine import Activation

INFEASIBLE_AFTER = 180.0
"""Default seconds a step's request may match no node of the cluster (an autoscaler may add
one) before its attempt fails with InfeasibleResourcesError."""

HIBERNATE_AFTER = 5.0
"""Default seconds a placed attempt may run before its instance hibernates while it runs."""

RECHECK = 60.0
"""Seconds at most a hibernated instance waits before it asks whether its attempt's owner
still knows the attempt (an owner that died cannot wake it)."""

_NUMBERS = ("num_cpus", "num_gpus", "memory")
_WAITS = ("infeasible_after", "hibernate_after")
_KEYS = (*_NUMBERS, "resources", *_WAITS)
_RULE = (
    "resources is a dict with keys from num_cpus, num_gpus, memory (bytes), resources "
    "(a dict of custom resource name to amount), infeasible_after and hibernate_after "
    "(durations); amounts are "
    "finite numbers >= 0"
)


@dataclass(frozen=True)
class ComputeRequest:
    """What one step attempt (or one instance actor) asks of a node, in Ray's terms."""

    num_cpus: float | None = None
    """CPUs to reserve; None: the executor's default (Ray's: 1 for a task)."""
    num_gpus: float | None = None
    """GPUs to reserve (fractions share a GPU)."""
    memory: float | None = None
    """Bytes of memory to reserve (a scheduling hint, as in Ray: not a limit)."""
    resources: Mapping[str, float] = field(default_factory=dict)
    """Custom resources (`ray start --resources`) by name."""
    infeasible_after: float | None = None
    """Seconds to wait while no node offers all of this; None: the workflow's setting."""
    hibernate_after: float | None = None
    """Seconds an attempt runs before the instance hibernates; None: HIBERNATE_AFTER."""

    def amounts(self) -> dict[str, float]:
        """Every amount asked for, by Ray's resource name (CPU, GPU, memory, custom names)."""
        wanted = {"CPU": self.num_cpus, "GPU": self.num_gpus, "memory": self.memory}
        return {k: v for k, v in wanted.items() if v} | {
            k: v for k, v in self.resources.items() if v
        }

    def describe(self) -> str:
        """For messages: the request as the user wrote it."""
        parts = {k: getattr(self, k) for k in _NUMBERS if getattr(self, k) is not None}
        if self.resources:
            parts["resources"] = dict(self.resources)
        return show(parts)


def compute_request(value: Any, what: str = "resources") -> ComputeRequest | None:
    """Check a `resources=` dict and make it a request; None for None. Bad input raises
    InvalidInputError naming the key and the rule."""
    if value is None or isinstance(value, ComputeRequest):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} {show(value)} is not a dict; {_RULE}", value=show(value))
    unknown = sorted(str(k) for k in value if k not in _KEYS)
    if unknown:
        raise InvalidInputError(
            f"{what} key {unknown[0]!r} is not known; {_RULE}", value=show(unknown[0])
        )
    numbers = {k: _amount(f"{what}[{k!r}]", value[k]) for k in _NUMBERS if k in value}
    custom = value.get("resources", {})
    if not isinstance(custom, Mapping) or not all(isinstance(k, str) and k for k in custom):
        raise InvalidInputError(
            f"{what}['resources'] {show(custom)} must be a dict of resource name (str) to amount",
            value=show(custom),
        )
    amounts = {k: _amount(f"{what}['resources'][{k!r}]", v) for k, v in custom.items()}
    waits = {k: _wait(f"{what}[{k!r}]", value[k]) for k in _WAITS if value.get(k) is not None}
    return ComputeRequest(**numbers, resources=amounts, **waits)


def _amount(what: str, value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise InvalidInputError(
            f"{what} {show(value)} must be a finite number >= 0", value=show(value)
        )
    return float(value)


def _wait(what: str, value: Duration) -> float:
    secs = seconds(value, what)
    if secs < 0:
        raise InvalidInputError(f"{what} {show(value)} must be >= 0 seconds", value=show(value))
    return secs


class AttemptKey(NamedTuple):
    """One attempt of one placed step: what its owner knows it by."""

    workflow: str
    iid: str
    name: str
    nth: int  # the step's count (its number among steps of that name)
    attempt: int
    since: float | None  # when the step record was made: a restart's new record is another step


class ComputeExecutor(Protocol):
    """Runs step attempts somewhere else, through an owner that outlives the activation."""

    async def start(
        self, key: AttemptKey, fn: Callable[..., Any], args: tuple[Any, ...], req: ComputeRequest
    ) -> float:
        """Start `fn(*args)` where `req` can be met, or join it when `key` runs already.
        Returns the seconds it has run."""
        ...

    async def outcome(self, key: AttemptKey) -> Any:
        """The attempt's result, or its error raised."""
        ...

    async def knows(self, key: AttemptKey) -> bool:
        """Whether the owner still runs (or holds the outcome of) this attempt."""
        ...

    def detach(self, key: AttemptKey, lease: int) -> None:
        """The instance hibernates: the owner records the outcome under `lease` and wakes it."""
        ...

    def drop(self, key: AttemptKey) -> None:
        """Forget the attempt; cancel its task if it still runs."""
        ...


class PlacedStep:
    """`fn` as the async step function the step path runs: each call is one remote attempt.
    `arguments` decides, as for an in-actor step, whether `fn` gets the context."""

    def __init__(
        self,
        fn: Callable[..., Any],
        request: ComputeRequest,
        executor: ComputeExecutor,
        arguments: Callable[[Callable[..., Any], StepContext], tuple[Any, ...]],
        act: Activation,
    ) -> None:
        self.fn, self.request, self.executor, self.act = fn, request, executor, act
        self.arguments = arguments
        self.__qualname__ = getattr(fn, "__qualname__", "step")
        wait = request.hibernate_after
        self.hibernate_after = HIBERNATE_AFTER if wait is None else wait

    def key(self, name: str, count: int, attempt: int) -> AttemptKey:
        rec, step = self.act.record, self.act.steps.get((name, count))
        since = None if step is None else step.started_at
        return AttemptKey(rec.workflow, rec.id, name, count, attempt, since)

    async def rejoins(self, sid: tuple[str, int], attempt: int) -> bool:
        """On replay, a step found running: True when its attempt still runs (or ended
        unrecorded) at its owner, so the step waits for it instead of counting it lost."""
        return await self.executor.knows(self.key(*sid, attempt))

    async def __call__(self, ctx: StepContext) -> Any:
        key = self.key(ctx.step.name, ctx.step.count, ctx.attempt)
        args = self.arguments(self.fn, ctx)
        elapsed = await self.executor.start(key, self.fn, args, self.request)
        clock = self.act.clock
        deadline = clock.now() + ctx.config.timeout - elapsed
        result = asyncio.ensure_future(self.executor.outcome(key))
        leaving = False
        try:
            with contextlib.suppress(TimeoutError):
                # A rejoin past hibernate_after parks again at once.
                await clock.wait_for(asyncio.shield(result), self.hibernate_after - elapsed)
            while not result.done() and deadline - clock.now() > self.hibernate_after:
                await self.act.idle_while(result, min(deadline, clock.now() + RECHECK))
            return await clock.wait_for(result, max(0.0, deadline - clock.now()))
        except asyncio.CancelledError:
            leaving = self.act.leaving  # hibernating or pausing: the attempt goes on
            raise
        finally:
            result.cancel()
            if leaving:
                self.executor.detach(key, self.act.lease)
            else:
                self.executor.drop(key)
