"""How every surface reports a raydo error: the one table of error class -> (CLI exit code, HTTP
status, JSON code name). cli/exits.py and server/errors.py both read it, so a script and an HTTP
client always tell the same errors apart.

    error                   exit  http  code
    InvalidInputError       2     422   invalid_input
    InstanceNotFoundError   3     404   not_found
    WorkflowNotFoundError   3     404   not_found
    InvalidStateError       4     409   invalid_state
    InstanceExistsError     5     409   already_exists
    any other               1     500   failed
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidInputError,
    InvalidStateError,
    WorkflowNotFoundError,
)


@dataclass(frozen=True)
class ErrorCode:
    exit: int
    """The CLI's exit code (cli/exits.py documents them)."""
    http: int
    """The HTTP status of the server's answer."""
    code: str
    """The `code` of the JSON error, on both."""


FAILED = ErrorCode(1, 500, "failed")
INVALID_INPUT = ErrorCode(2, 422, "invalid_input")

# Checked in order: the first class an error is an instance of gives its codes.
_TABLE: list[tuple[type[BaseException], ErrorCode]] = [
    (InvalidInputError, INVALID_INPUT),
    (InstanceNotFoundError, ErrorCode(3, 404, "not_found")),
    (WorkflowNotFoundError, ErrorCode(3, 404, "not_found")),
    (InvalidStateError, ErrorCode(4, 409, "invalid_state")),
    (InstanceExistsError, ErrorCode(5, 409, "already_exists")),
]


def code_of(exc: BaseException) -> ErrorCode:
    """The codes of `exc` on every surface (FAILED for an error the table does not name)."""
    for cls, found in _TABLE:
        if isinstance(exc, cls):
            return found
    return FAILED
