"""What follows a failed step attempt, as pure functions of (record, error, policy, now).

An attempt fails when the step function raises (or times out), or when the process running it
died before it finished (found `running` on replay). Either way the step is retried after the
policy's delay while retries are left and the error is retryable, else it is done with the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import NonRetryableError, PayloadError
from ..storage.records import StepRecord, StepState
from .rules import RetryPolicy


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
) -> Transition:
    """`rec.attempts` counts the attempt that failed. `at_once`: retry without the delay (an
    attempt lost with its process was not the step's fault in time, only in count)."""
    if error.get("retryable", True) and rec.attempts <= policy.limit:
        delay = 0.0 if at_once else policy.delay_after(rec.attempts)
        return Transition(StepState.RETRYING, now + delay, error)
    return Transition(StepState.DONE, None, error)


def failure_of(exc: BaseException) -> dict[str, Any]:
    """How a step's exception is recorded: name, message, and whether a retry may help."""
    retryable = not isinstance(exc, (NonRetryableError, PayloadError))
    if isinstance(exc, TimeoutError) and not str(exc):
        return {"name": "TimeoutError", "message": "attempt timed out", "retryable": retryable}
    name = exc.name if isinstance(exc, NonRetryableError) else type(exc).__name__
    message = exc.message if isinstance(exc, (NonRetryableError, PayloadError)) else str(exc)
    return {"name": name, "message": message, "retryable": retryable}


def lost_attempt(attempt: int) -> dict[str, Any]:
    return {
        "name": "AttemptLostError",
        "message": f"attempt {attempt} did not finish: the process running it stopped",
        "retryable": True,
    }
