"""The testing kit's input rules: step selectors, mocked errors, counts and statuses. Each bad
value raises a typed raydo error naming it and the rule; nothing here has side effects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InvalidInputError, InvalidStepError, NonRetryableError
from ..runtime.model import InstanceStatus
from ..runtime.rules import check_step_name, show

StepSelector = str | Mapping[str, Any]
"""A step: its name (the first call of that name), or {"name": ..., "count": n} for the n-th
call of that name (from 1), as step identities count them."""

DEFAULT_TIMEOUT = 60.0
"""Real seconds a testing-kit wait gives up after (time skipped does not count)."""


def step_key(selector: Any, what: str = "step") -> tuple[str, int]:
    """(name, count) from a selector."""
    if isinstance(selector, str):
        return check_step_name(selector), 1
    if isinstance(selector, Mapping) and "name" in selector and set(selector) <= {"name", "count"}:
        count = selector.get("count", 1)
        if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
            return check_step_name(selector["name"]), count
    raise InvalidStepError(
        f"{what} {show(selector)} is not a step selector; give a step name, or "
        "{'name': <step name>, 'count': <n >= 1>} for the n-th call of that name",
        value=show(selector),
    )


def step_keys(steps: Any, what: str) -> list[tuple[str, int]] | None:
    """None (every step), or the selectors of a list."""
    if steps is None:
        return None
    if isinstance(steps, (str, Mapping)) or not isinstance(steps, Iterable):
        raise InvalidStepError(
            f"{what} steps {show(steps)} must be None (every step) or a list of step selectors",
            value=show(steps),
        )
    return [step_key(s, f"{what} step") for s in steps]


def error_record(error: Any) -> dict[str, Any]:
    """How a mocked error is recorded: the name and message a real one would have."""
    if isinstance(error, type) and issubclass(error, Exception):
        try:
            error = error()
        except Exception:
            raise InvalidInputError(
                f"mock_step_error error {show(error)} cannot be made without arguments; pass an "
                "instance, e.g. KeyError('sku')",
                value=show(error),
            ) from None
    if not isinstance(error, Exception):
        raise InvalidInputError(
            f"mock_step_error error {show(error)} must be an exception (an instance or an "
            "Exception subclass), e.g. ConnectionError('gateway down')",
            value=show(error),
        )
    if isinstance(error, NonRetryableError):
        return {"name": error.name, "message": error.message, "retryable": False}
    return {"name": type(error).__name__, "message": str(error), "retryable": True}


def times_arg(times: Any, what: str) -> int | None:
    if times is None or (isinstance(times, int) and not isinstance(times, bool) and times >= 1):
        return times
    raise InvalidInputError(
        f"{what} times {show(times)} must be None (every attempt) or an int >= 1",
        value=show(times),
    )


def status_arg(status: Any) -> InstanceStatus:
    try:
        return InstanceStatus(status)
    except (ValueError, TypeError):
        raise InvalidInputError(
            f"status {show(status)} is not an instance status; use one of "
            f"{', '.join(repr(s.value) for s in InstanceStatus)}",
            value=show(status),
        ) from None


def timeout_arg(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout >= 0:
        return float(timeout)
    raise InvalidInputError(
        f"timeout {show(timeout)} must be None or a number of real seconds >= 0",
        value=show(timeout),
    )


def count_arg(count: Any) -> int:
    if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
        return count
    raise InvalidInputError(f"count {show(count)} must be an int >= 1", value=show(count))
