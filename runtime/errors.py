"""Every error raydo raises, in one shallow tree. All are importable from `raydo`.

    RaydoError
     +-- InvalidInputError (also ValueError)    a rejected call; nothing was written
     |    +-- InvalidIdError                    instance id / workflow name breaks the id rule
     |    +-- InvalidDurationError              bad duration, past time, beyond 365 days
     |    +-- InvalidStepError                  bad step name or step config (retries, timeout)
     |    +-- InvalidEventTypeError             event type breaks the type rule
     |    +-- PayloadError                      params / payload / result unstorable or > 1 MiB
     +-- InstanceExistsError                    create() with an id that is taken
     +-- InstanceNotFoundError                  get()/operation on an unknown id
     +-- InvalidStateError                      operation not allowed in the instance's status
     +-- WaitTimeoutError (also TimeoutError)   instance.wait(timeout) ran out
     +-- NonRetryableError                      raised by a step to stop retries
     +-- WorkflowStepError                      a step failed for good; raised into run()
     +-- WaitForEventTimeoutError               wait_for_event timed out; raised into run()
     +-- NonDeterminismError                    replay met a different step than was recorded
     +-- StorageError                           storage cannot be used
          +-- StorageFullError                  disk or size cap full
          +-- SchemaVersionError                storage written by another schema version
          +-- CorruptRecordError                a record cannot be decoded

Every error keeps its constructor's keyword details as attributes and pickles with them, so it
crosses Ray actors intact (raydo unwraps Ray's RayTaskError before users see it).
"""

from __future__ import annotations

from typing import Any


class RaydoError(Exception):
    """Base of all raydo errors. `str(err)` names the bad value and the rule it broke."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        for key, value in details.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[RaydoError], message: str, details: dict[str, Any]) -> RaydoError:
    err = cls.__new__(cls)
    RaydoError.__init__(err, message, **details)
    return err


class InvalidInputError(RaydoError, ValueError):
    """A call was rejected because of its arguments; nothing was written."""


class InvalidIdError(InvalidInputError):
    pass


class InvalidDurationError(InvalidInputError):
    pass


class InvalidStepError(InvalidInputError):
    pass


class InvalidEventTypeError(InvalidInputError):
    pass


class PayloadError(InvalidInputError):
    pass


class InstanceExistsError(RaydoError):
    pass


class InstanceNotFoundError(RaydoError):
    pass


class InvalidStateError(RaydoError):
    pass


class WaitTimeoutError(RaydoError, TimeoutError):
    pass


class NonRetryableError(RaydoError):
    """Raise inside a step to fail it at once, without further retries.

    `name` becomes the error name the instance reports (default "NonRetryableError").
    """

    def __init__(self, message: str, name: str | None = None, **details: Any) -> None:
        super().__init__(message, name=name or "NonRetryableError", **details)


class WorkflowStepError(RaydoError):
    """A step failed for good (retries exhausted or non-retryable). Raised into run().

    Attributes: `name` and `message` of the original error, `step` and `count` of the step, and
    `retryable` (False when the step raised NonRetryableError). The same error is raised on the
    first run and on every replay, so code that catches it behaves the same both times.
    """


class WaitForEventTimeoutError(RaydoError):
    """wait_for_event reached its timeout with no event. Raised into run(); catch it to go on."""


class NonDeterminismError(RaydoError):
    pass


class StorageError(RaydoError):
    pass


class StorageFullError(StorageError):
    pass


class SchemaVersionError(StorageError):
    pass


class CorruptRecordError(StorageError):
    pass


__all__ = [
    "CorruptRecordError",
    "InstanceExistsError",
    "InstanceNotFoundError",
    "InvalidDurationError",
    "InvalidEventTypeError",
    "InvalidIdError",
    "InvalidInputError",
    "InvalidStateError",
    "InvalidStepError",
    "NonDeterminismError",
    "NonRetryableError",
    "PayloadError",
    "RaydoError",
    "SchemaVersionError",
    "StorageError",
    "StorageFullError",
    "WaitForEventTimeoutError",
    "WaitTimeoutError",
    "WorkflowStepError",
]
