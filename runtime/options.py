"""The options of a workflow, in one frozen dataclass that travels from `raydo.workflow(...)` to
the namespace and instance actors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ..errors import InvalidInputError
from .compute import INFEASIBLE_AFTER, ComputeRequest, compute_request
from .retention import parse_retention
from .rules import check_seconds_arg, show
from .schedules import check_crons

HIBERNATE_AFTER = 0.25


@dataclass(frozen=True)
class WorkflowOptions:
    concurrency: int = 4
    """Instances of this workflow running at once, each holding one actor; the rest are queued."""

    actors: int | None = None
    """Instance actors (worker processes) per node running this workflow; None: `concurrency`,
    one instance per actor at a time. Fewer actors run `concurrency // actors` instances each at
    once, sharing the actor's event loop and its fsyncs (group commit): less memory and more
    throughput for short activations, but an instance that blocks the loop slows its neighbours
    (and the watchdog replaces the whole actor)."""

    env: Mapping[str, Any] = field(default_factory=dict)
    """Bindings the workflow sees as `self.env` (e.g. other Workflows), by attribute or key."""

    hibernate_after: float = HIBERNATE_AFTER
    """Seconds: a wait (sleep, retry delay, event) longer than this gives the actor back."""

    block_limit: float = 60.0
    """Seconds run() code outside steps may block the event loop before its worker is replaced
    (a step may block for its own timeout)."""

    warm: int = 1
    """Instance actors started ahead of need (at most `concurrency`)."""

    node_labels: Mapping[str, str] = field(default_factory=dict)
    """On a multi-node cluster, instances are homed only on nodes whose Ray labels include all
    of these (`ray start --labels`); none matching is a NoEligibleNodeError at create."""

    runtime_env: Mapping[str, Any] | None = None
    """Ray runtime_env of the instance actors (pip, env_vars, working_dir...); their steps'
    `resources=` tasks inherit it."""

    resources: ComputeRequest | Mapping[str, Any] | None = None
    """What each instance actor reserves on its home node: {"num_cpus", "num_gpus", "memory",
    "resources"} (default: nothing, num_cpus 0). The home node must offer it."""

    infeasible_after: float = INFEASIBLE_AFTER
    """Seconds a step's `resources=` may match no node before its attempt fails with
    InfeasibleResourcesError (a step's own "infeasible_after" overrides it)."""

    retention: Mapping[str, Any] | None = None
    """How long finished instances are kept by default: {"success": duration, "error":
    duration} (runtime/retention.py); None keeps them until deleted. Stored parsed (seconds)."""

    schedules: tuple[str, ...] | None = None
    """Cron expressions that create an instance at each tick (runtime/schedules.py); None
    leaves the schedules stored for the workflow as they are, () removes them."""

    def __post_init__(self) -> None:
        _check_int("concurrency", self.concurrency, 1)
        if self.actors is not None:
            _check_int("actors", self.actors, 1)
            if self.actors > self.concurrency:
                raise InvalidInputError(
                    f"actors {self.actors} must be at most concurrency ({self.concurrency})",
                    value=show(self.actors),
                )
        self._check_compute()
        object.__setattr__(self, "retention", parse_retention(self.retention))
        if self.schedules is not None:
            object.__setattr__(self, "schedules", tuple(check_crons(self.schedules)))
        _check_int("warm", self.warm, 0)
        if not isinstance(self.env, Mapping) or not all(isinstance(k, str) for k in self.env):
            raise InvalidInputError(
                f"env {show(self.env)} must be a dict with str keys, or None", value=show(self.env)
            )
        object.__setattr__(self, "env", dict(self.env))
        labels = self.node_labels
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise InvalidInputError(
                f"node_labels {show(labels)} must be a dict of str to str", value=show(labels)
            )
        object.__setattr__(self, "node_labels", dict(labels))
        for name in ("hibernate_after", "block_limit"):
            seconds = check_seconds_arg(getattr(self, name), name)
            if seconds is None:
                raise InvalidInputError(f"{name} must be a number of seconds, not None")
            object.__setattr__(self, name, seconds)

    def _check_compute(self) -> None:
        env = self.runtime_env
        if env is not None and not (
            isinstance(env, Mapping) and all(isinstance(k, str) for k in env)
        ):
            raise InvalidInputError(
                f"runtime_env {show(env)} must be a dict with str keys (Ray's runtime_env) or None",
                value=show(env),
            )
        object.__setattr__(self, "runtime_env", None if env is None else dict(env))
        object.__setattr__(self, "resources", compute_request(self.resources, "resources"))
        wait = check_seconds_arg(self.infeasible_after, "infeasible_after")
        if wait is None:
            raise InvalidInputError("infeasible_after must be a number of seconds, not None")
        object.__setattr__(self, "infeasible_after", wait)

    @property
    def actor_request(self) -> ComputeRequest | None:
        """`resources`, checked (a dict given to the constructor is made a request there)."""
        assert self.resources is None or isinstance(self.resources, ComputeRequest)
        return self.resources

    @property
    def kept(self) -> dict[str, float] | None:
        """`retention` as parsed in __post_init__: seconds per kind."""
        return cast("dict[str, float] | None", self.retention)

    @property
    def wake_lead(self) -> float:
        """Timers fire this much early so dispatch and replay happen before the due time; the
        engine sleeps the rest in memory (so it must stay below hibernate_after)."""
        return min(0.02, self.hibernate_after / 2)


def _check_int(what: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{what} {show(value)} must be an int >= {low}", value=show(value))
