"""What follows a failed step attempt, as pure functions of (record, error, policy, now).

An attempt fails when the step function raises (or times out), or when the process running it
died before it finished (found `running` on replay). Either way the step is retried after the
policy's delay while retries are left and the error is retryable, else it is done with the error.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError, NonRetryableError, PayloadError
from ..storage.records import StepRecord, StepState
from .rules import DelayFn, RetryPolicy, seconds


@dataclass(frozen=True)
class Transition:
    """The step's next state after a failed attempt."""

    state: StepState  # RETRYING or DONE
    until: float | None  # when the retry may start
    error: dict[str, Any]  # name, message, retryable


def after_failure(
    rec: StepRecord,
    error: dict[str, Any],
    policy: RetryPolicy,
    now: float,
    *,
    at_once: bool = False,
    ctx: Any = None,
    exc: BaseException | None = None,
) -> Transition:
    """`rec.attempts` counts the attempt that failed. `at_once`: retry without the delay (an
    attempt lost with its process was not the step's fault in time, only in count). A policy
    whose delay is a function gets (ctx, exc): the attempt's context and its exception."""
    if not (error.get("retryable", True) and rec.attempts <= policy.limit):
        return Transition(StepState.DONE, None, error)
    if at_once:
        return Transition(StepState.RETRYING, now, error)
    fn = policy.delay_fn
    delay = policy.delay_after(rec.attempts) if fn is None else asked_delay(fn, ctx, exc, error)
    if isinstance(delay, dict):
        return Transition(StepState.DONE, None, delay)
    return Transition(StepState.RETRYING, now + delay, error)


def asked_delay(
    fn: DelayFn, ctx: Any, exc: BaseException | None, error: dict[str, Any]
) -> float | dict[str, Any]:
    """The delay a delay function gives, in seconds; or, when it raises or returns something
    that is not a duration, the non-retryable error that ends the step (naming both errors)."""
    failed = exc if exc is not None else RuntimeError(error["message"])
    try:
        value = fn(ctx, failed)
        if inspect.isawaitable(value):
            _close(value)
            raise InvalidInputError(
                "the retries delay function returned an awaitable; it must be a plain "
                "function returning a duration"
            )
        return seconds(value, "duration returned by the retries delay function")
    except Exception as raised:
        return {
            "name": type(raised).__name__,
            "message": f"the retries delay function raised {type(raised).__name__}: {raised} "
            f"(after the attempt failed with {error['name']}: {error['message']})",
            "retryable": False,
        }


def _close(value: Any) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        close()  # no "never awaited" warning: it is reported instead


def failure_of(exc: BaseException) -> dict[str, Any]:
    """How a step's exception is recorded: name, message, and whether a retry may help."""
    retryable = not isinstance(exc, (NonRetryableError, PayloadError))
    if isinstance(exc, TimeoutError) and not str(exc):
        return {"name": "TimeoutError", "message": "attempt timed out", "retryable": retryable}
    name = exc.name if isinstance(exc, NonRetryableError) else type(exc).__name__
    message = exc.message if isinstance(exc, (NonRetryableError, PayloadError)) else str(exc)
    return {"name": name, "message": message, "retryable": retryable}
