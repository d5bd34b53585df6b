"""Steps that run where the compute is: `step.do(name, fn, resources={...})`. Pure; no Ray.

A step given `resources` runs each attempt as a task on a node that has them, while the instance
waits at home; the result comes back and is recorded at home like any step's. The engine only
sees a `ComputeExecutor` handed to it (actors/compute.py is Ray's); retries, the attempt timeout,
pause and terminate apply unchanged, because to the step path the placed step is just an async
function: cancelling its await (timeout, terminate) cancels the task.

The same request shape sets what a workflow's instance actors reserve (WorkflowOptions.resources).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InvalidInputError
from .model import StepContext
from .rules import Duration, seconds, show

INFEASIBLE_AFTER = 180.0
"""Default seconds a step's request may match no node of the cluster (an autoscaler may add
one) before its attempt fails with InfeasibleResourcesError."""

_NUMBERS = ("num_cpus", "num_gpus", "memory")
_KEYS = (*_NUMBERS, "resources", "infeasible_after")
_RULE = (
    "resources is a dict with keys from num_cpus, num_gpus, memory (bytes), resources "
    "(a dict of custom resource name to amount) and infeasible_after (a duration); amounts are "
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
    wait = value.get("infeasible_after")
    after = None if wait is None else _wait(f"{what}['infeasible_after']", wait)
    return ComputeRequest(**numbers, resources=amounts, infeasible_after=after)


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


class ComputeExecutor(Protocol):
    """Runs one step attempt somewhere else: `fn(*args)` where `request` can be met."""

    async def run(self, fn: Callable[..., Any], args: tuple[Any, ...], req: ComputeRequest) -> Any:
        """The attempt's result, or its error raised; cancelling the await cancels the work."""
        ...


def placed(
    fn: Callable[..., Any],
    request: ComputeRequest,
    executor: ComputeExecutor,
    arguments: Callable[[Callable[..., Any], StepContext], tuple[Any, ...]],
) -> Callable[[StepContext], Coroutine[Any, Any, Any]]:
    """`fn` as the async step function the step path runs: each call is one remote attempt.
    `arguments` decides, as for an in-actor step, whether `fn` gets the context."""

    async def attempt(ctx: StepContext) -> Any:
        return await executor.run(fn, arguments(fn, ctx), request)

    attempt.__qualname__ = getattr(fn, "__qualname__", "step")
    return attempt
