"""Every error raydo raises, in one shallow tree. All are importable from `raydo`.

    RaydoError
     +-- InvalidInputError (also ValueError)    a rejected call; nothing was written
     |    +-- InvalidIdError                    instance id / workflow name breaks the id rule
     |    +-- InvalidDurationError              bad duration, past time, beyond 365 days
     |    +-- InvalidStepError                  bad step name or step config (retries, timeout)
     |    +-- InvalidEventTypeError             event type breaks the type rule
     |    +-- PayloadError                      params / payload / result unstorable or > 1 MiB
     |    +-- InvalidParamsError                params fail the workflow's pydantic params model
     |    +-- InvalidWorkflowError              the class given to raydo.workflow() cannot run
     |    +-- ConfigError                       a project config file breaks a rule
     +-- InstanceExistsError                    create() with an id that is taken
     +-- InstanceNotFoundError                  get()/operation on an unknown id
     +-- WorkflowNotFoundError                  a tool was asked for an undeclared workflow
     +-- InvalidStateError                      operation not allowed in the instance's status
     +-- WaitTimeoutError (also TimeoutError)   instance.wait(timeout) ran out
     +-- NonRetryableError                      raised by a step to stop retries
     +-- WorkflowStepError                      a step failed for good; raised into run()
     |    +-- NonRetryableStepError             ... because it raised NonRetryableError (also a
     |                                          NonRetryableError, so `except` either works)
     +-- WaitForEventTimeoutError               wait_for_event timed out; raised into run()
     +-- StepCancelledError                     ctx.check_cancelled() in an abandoned attempt
     +-- UnawaitedStepError                     run() called a step and never awaited it
     +-- NonDeterminismError                    replay met a different step than was recorded
     |                                          (`recorded`, `found`: StepRef kind/name/count)
     +-- ShippedCodeError                       a workflow class would ship by value where only
     |                                          installed classes are accepted
     +-- ClusterError                           Ray could not carry a call (actor or cluster gone)
     |    +-- NodeUnavailableError              the instance's home node is down or unreachable
     |    +-- NoEligibleNodeError               no node may home the workflow's instances
     |         +-- InfeasibleResourcesError     no node offers what a step's resources= asks


     +-- UnreachableError                       raydo.testing: a wait for a status or a step result
     |                                          can never end well: the instance ended otherwise
     +-- StorageError                           storage cannot be used
          +-- StorageFullError                  disk or size cap full
          +-- SchemaVersionError                storage written by another schema version
          +-- CorruptRecordError                a record cannot be decoded
          +-- StoragePermissionError            storage folder writable by other users
          +-- StorageMismatchError (also        a binding or init() names a storage other than
              RuntimeError)                     the one raydo is initialized with

StoragePermissionWarning (a UserWarning, not an error): the storage folder is readable by others.

Each class declares its fields in its constructor, and pickles with them (`__reduce__`), so it
crosses Ray actors intact (raydo unwraps Ray's RayTaskError before users see it, and turns Ray's
own failures into ClusterError with Ray's error chained as `__cause__`). This module
imports nothing of raydo: every layer may raise these.
"""

from __future__ import annotations

from typing import Any


class RaydoError(Exception):
    """Base of all raydo errors. `str(err)` names the bad value and the rule it broke."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def _fields(self) -> tuple[Any, ...]:
        """The constructor's arguments after `message`, in order (for pickling)."""
        return ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, *self._fields()))

    def __str__(self) -> str:
        return self.message


class InvalidInputError(RaydoError, ValueError):
    """A call was rejected because of its arguments; nothing was written. `value` is a short
    repr of the rejected value, when there is one."""

    def __init__(self, message: str, value: str | None = None) -> None:
        super().__init__(message)
        self.value = value

    def _fields(self) -> tuple[Any, ...]:
        return (self.value,)


class InvalidIdError(InvalidInputError):
    pass


class InvalidDurationError(InvalidInputError):
    pass


class InvalidStepError(InvalidInputError):
    pass


class InvalidEventTypeError(InvalidInputError):
    pass


class PayloadError(InvalidInputError):
    """A value cannot be stored: `what` names it ("params of instance 'a'"), `size` is its
    encoded size when that is the problem."""

    def __init__(self, message: str, what: str = "value", size: int | None = None) -> None:
        super().__init__(message)
        self.what, self.size = what, size

    def _fields(self) -> tuple[Any, ...]:
        return (self.what, self.size)


class InvalidParamsError(InvalidInputError):
    """Params do not validate against the workflow's params model (`WorkflowEntrypoint[Model]`):
    `workflow` names it, `field` is the dotted path of the first field at fault ("" for the
    whole params), `rule` what pydantic said of it."""

    def __init__(
        self, message: str, workflow: str, field: str, rule: str, value: str | None = None
    ) -> None:
        super().__init__(message, value)
        self.workflow, self.field, self.rule = workflow, field, rule

    def _fields(self) -> tuple[Any, ...]:
        return (self.workflow, self.field, self.rule, self.value)


class InvalidWorkflowError(InvalidInputError):
    """`raydo.workflow(cls)` was given a class that cannot run as a workflow (not a
    WorkflowEntrypoint, or its run() is not `async def`). `workflow` names the class."""

    def __init__(self, message: str, workflow: str) -> None:
        super().__init__(message)
        self.workflow = workflow

    def _fields(self) -> tuple[Any, ...]:
        return (self.workflow,)


class ConfigError(InvalidInputError):
    """A project config (raydo.toml, or [tool.raydo] in pyproject.toml) is invalid: `file` is its
    path, `key` the dotted key at fault (as written in the file), `rule` what it must be."""

    def __init__(self, message: str, file: str, key: str, rule: str) -> None:
        super().__init__(message)
        self.file, self.key, self.rule = file, key, rule

    def _fields(self) -> tuple[Any, ...]:
        return (self.file, self.key, self.rule)


class _AboutInstance(RaydoError):
    """An error about the instance `id`."""

    def __init__(self, message: str, id: str) -> None:
        super().__init__(message)
        self.id = id

    def _fields(self) -> tuple[Any, ...]:
        return (self.id,)


class InstanceExistsError(_AboutInstance):
    pass


class InstanceNotFoundError(_AboutInstance):
    pass


class WorkflowNotFoundError(RaydoError):
    """A tool (CLI, server) was asked for workflow `name`, which its config does not declare."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name

    def _fields(self) -> tuple[Any, ...]:
        return (self.name,)


class InvalidStateError(RaydoError):
    """The operation is not allowed while the instance `id` is in `status`."""

    def __init__(self, message: str, id: str, status: str) -> None:
        super().__init__(message)
        self.id, self.status = id, status

    def _fields(self) -> tuple[Any, ...]:
        return (self.id, self.status)


class WaitTimeoutError(RaydoError, TimeoutError):
    def __init__(self, message: str, id: str | None = None) -> None:
        super().__init__(message)
        self.id = id

    def _fields(self) -> tuple[Any, ...]:
        return (self.id,)


class NonRetryableError(RaydoError):
    """Raise inside a step to fail it at once, without further retries.

    `name` becomes the error name the instance reports (default "NonRetryableError").
    """

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name or "NonRetryableError"

    def _fields(self) -> tuple[Any, ...]:
        return (self.name,)


class WorkflowStepError(RaydoError):
    """A step failed for good (retries exhausted or non-retryable). Raised into run().

    `name` and `error_message` are the original error's, `step` and `count` the step's identity,
    `retryable` is False when the step raised NonRetryableError (then the error is a
    NonRetryableStepError). The same error is raised on the first run and on every replay, so
    code that catches it behaves the same both times.
    """

    def __init__(
        self,
        message: str,
        name: str,
        error_message: str,
        step: str,
        count: int,
        retryable: bool = True,
    ) -> None:
        RaydoError.__init__(self, message)
        self.name, self.error_message = name, error_message
        self.step, self.count, self.retryable = step, count, retryable

    def _fields(self) -> tuple[Any, ...]:
        return (self.name, self.error_message, self.step, self.count, self.retryable)


class NonRetryableStepError(WorkflowStepError, NonRetryableError):
    """A step that raised NonRetryableError: catch it as either."""


class WaitForEventTimeoutError(RaydoError):
    """wait_for_event reached its timeout with no event. Raised into run(); catch it to go on."""

    def __init__(self, message: str, step: str, type: str | None) -> None:
        super().__init__(message)
        self.step, self.type = step, type

    def _fields(self) -> tuple[Any, ...]:
        return (self.step, self.type)


class StepCancelledError(RaydoError):
    """Raised by `ctx.check_cancelled()` when the attempt was abandoned (the instance was
    terminated, restarted or deleted, or the attempt timed out): its result would be discarded."""

    def __init__(self, message: str, step: str, attempt: int) -> None:
        super().__init__(message)
        self.step, self.attempt = step, attempt

    def _fields(self) -> tuple[Any, ...]:
        return (self.step, self.attempt)


class UnawaitedStepError(RaydoError):
    """run() called step.do / sleep / wait_for_event without awaiting it: the step never ran.
    The instance ends errored with this error, naming the steps."""

    def __init__(self, message: str, steps: list[str]) -> None:
        super().__init__(message)
        self.steps = steps

    def _fields(self) -> tuple[Any, ...]:
        return (self.steps,)


class StepRef:
    """One step as replay sees it. `kind` is "do", "sleep" or "waitForEvent" ("" when only
    the call was seen). Compares and hashes as (kind, name, count)."""

    __slots__ = ("count", "kind", "name")

    def __init__(self, kind: str, name: str, count: int) -> None:
        self.kind, self.name, self.count = kind, name, count

    def _key(self) -> tuple[str, str, int]:
        return (self.kind, self.name, self.count)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StepRef) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[Any, ...]:
        return (StepRef, self._key())

    def __repr__(self) -> str:
        kind = f"{self.kind} " if self.kind else ""
        return f"{kind}step {self.name!r} #{self.count}"


class NonDeterminismError(RaydoError):
    """Replay met another step than the one recorded at that point: renamed, reordered, or of
    another kind. `recorded` is what the history holds there (None: nothing), `found` what the
    code called; `step`/`count` name the found step."""

    def __init__(
        self,
        message: str,
        step: str,
        count: int,
        recorded: StepRef | None = None,
        found: StepRef | None = None,
    ) -> None:
        super().__init__(message)
        self.step, self.count = step, count
        self.recorded, self.found = recorded, found

    def _fields(self) -> tuple[Any, ...]:
        return (self.step, self.count, self.recorded, self.found)


class ClusterError(RaydoError):
    """Ray could not carry a call to raydo's actors or bring its answer back (an actor died, the
    cluster went away). `cause` names Ray's error class; the original is chained as `__cause__`.
    Nothing is known about whether the call took effect: check the instance's status."""

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause

    def _fields(self) -> tuple[Any, ...]:
        return (self.cause,)


class NodeUnavailableError(ClusterError):
    """The node an instance lives on (its home) is down or cannot be reached. `node` is its raydo
    node id; `reason` says what Ray reports. Its state is safe in that node's storage: it resumes
    when the node is back with the same storage folder. Never restarted elsewhere."""

    def __init__(self, message: str, node: str | None = None, reason: str | None = None) -> None:
        super().__init__(message, "NodeUnavailable")
        self.node, self.reason = node, reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.node, self.reason))


class NoEligibleNodeError(ClusterError):
    """No alive node may home this workflow's instances (none carries its `node_labels`).
    `labels` is what the workflow asks for."""

    def __init__(self, message: str, labels: dict[str, str] | None = None) -> None:
        super().__init__(message, "NoEligibleNode")
        self.labels = labels

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.labels))


class InfeasibleResourcesError(NoEligibleNodeError):
    """A step's `resources=` request matched no alive node for its whole `infeasible_after`
    wait. `request` is what it asked (Ray's names: CPU, GPU, memory, custom); `offered` what
    each alive node has in total. A failed attempt: the step's retries apply."""

    def __init__(
        self,
        message: str,
        request: dict[str, float] | None = None,
        offered: list[dict[str, float]] | None = None,
    ) -> None:
        super().__init__(message)
        self.request, self.offered = request, offered

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.request, self.offered))


class UnreachableError(RaydoError):
    """raydo.testing: instance `id` ended `status`, so what the test waits for (`expected`, e.g.
    "status 'complete'" or "a result of step 'charge' #1") can never happen."""

    def __init__(self, message: str, id: str, expected: str, status: str) -> None:
        super().__init__(message)
        self.id, self.expected, self.status = id, expected, status

    def _fields(self) -> tuple[Any, ...]:
        return (self.id, self.expected, self.status)


class StorageError(RaydoError):
    pass


class StorageFullError(StorageError):
    """`free` is the free disk space in bytes when the disk was the cause."""

    def __init__(self, message: str, free: int | None = None) -> None:
        super().__init__(message)
        self.free = free

    def _fields(self) -> tuple[Any, ...]:
        return (self.free,)


class SchemaVersionError(StorageError):
    def __init__(self, message: str, found: int, expected: int) -> None:
        super().__init__(message)
        self.found, self.expected = found, expected

    def _fields(self) -> tuple[Any, ...]:
        return (self.found, self.expected)


class StorageMismatchError(StorageError, RuntimeError):
    """A call names storage `storage` while raydo is initialized with `current` (a binding made
    before `raydo.shutdown()` used after `raydo.init()` of another storage, or `init()` of a
    second storage without `shutdown()`)."""

    def __init__(self, message: str, storage: str, current: str) -> None:
        super().__init__(message)
        self.storage, self.current = storage, current

    def _fields(self) -> tuple[Any, ...]:
        return (self.storage, self.current)


class CorruptRecordError(StorageError):
    """`what` names the record that could not be decoded."""

    def __init__(self, message: str, what: str | None = None) -> None:
        super().__init__(message)
        self.what = what

    def _fields(self) -> tuple[Any, ...]:
        return (self.what,)


class StoragePermissionError(StorageError):
    """The storage folder `path` has mode `mode`, which lets other users write it: they could
    replace raydo's files, so it is refused (as ssh refuses a writable key folder)."""

    def __init__(self, message: str, path: str, mode: int) -> None:
        super().__init__(message)
        self.path, self.mode = path, mode

    def _fields(self) -> tuple[Any, ...]:
        return (self.path, self.mode)


class StoragePermissionWarning(UserWarning):
    """The storage folder is readable by other users; raydo still opens it."""


class ShippedCodeError(RaydoError):
    """Installed workflow classes only (`raydo.init(allow_shipped_code=False)` or
    RAYDO_INSTALLED_CLASSES_ONLY=1), and `workflow_class` (from `module`) is not one: its code
    would travel by value from this process to the cluster."""

    def __init__(self, message: str, workflow_class: str, module: str) -> None:
        super().__init__(message)
        self.workflow_class, self.module = workflow_class, module

    def _fields(self) -> tuple[Any, ...]:
        return (self.workflow_class, self.module)


__all__ = [
    "ClusterError",
    "ConfigError",
    "CorruptRecordError",
    "InfeasibleResourcesError",
    "InstanceExistsError",
    "InstanceNotFoundError",
    "InvalidDurationError",
    "InvalidEventTypeError",
    "InvalidIdError",
    "InvalidInputError",
    "InvalidParamsError",
    "InvalidStateError",
    "InvalidStepError",
    "InvalidWorkflowError",
    "NoEligibleNodeError",
    "NodeUnavailableError",
    "NonDeterminismError",
    "NonRetryableError",
    "NonRetryableStepError",
    "PayloadError",
    "RaydoError",
    "SchemaVersionError",
    "ShippedCodeError",
    "StepCancelledError",
    "StepRef",
    "StorageError",
    "StorageFullError",
    "StorageMismatchError",
    "StoragePermissionError",
    "StoragePermissionWarning",
    "UnawaitedStepError",
    "UnreachableError",
    "WaitForEventTimeoutError",
    "WaitTimeoutError",
    "WorkflowNotFoundError",
    "WorkflowStepError",
]
