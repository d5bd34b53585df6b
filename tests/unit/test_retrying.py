"""The retry decision on its own: (record, error, policy, now) -> next state."""

from __future__ import annotations

import pytest

from raydo import NonRetryableError, PayloadError, RetryPolicy
from raydo.errors import InvalidStepError
from raydo.runtime.retrying import after_failure, failure_of
from raydo.storage.records import StepKind, StepRecord, StepState, lost_attempt


def record(attempts: int) -> StepRecord:
    return StepRecord(kind=StepKind.DO, seq=0, attempts=attempts)


def test_retry_after_the_backoff_delay_while_retries_are_left() -> None:
    policy = RetryPolicy(limit=2, delay=10, backoff="exponential")
    error = failure_of(RuntimeError("boom"))
    first = after_failure(record(1), error, policy, now=100.0)
    assert (first.state, first.until) == (StepState.RETRYING, 110.0)
    second = after_failure(record(2), error, policy, now=200.0)
    assert (second.state, second.until) == (StepState.RETRYING, 220.0)
    last = after_failure(record(3), error, policy, now=300.0)
    assert (last.state, last.until) == (StepState.DONE, None)
    assert last.error == {"name": "RuntimeError", "message": "boom", "retryable": True}


@pytest.mark.parametrize("exc", [NonRetryableError("no", name="Declined"), PayloadError("big")])
def test_non_retryable_errors_end_the_step_at_once(exc: Exception) -> None:
    result = after_failure(record(1), failure_of(exc), RetryPolicy(limit=5), now=0.0)
    assert result.state is StepState.DONE
    assert result.error["retryable"] is False


def test_a_lost_attempt_is_retried_at_once_within_the_limit() -> None:
    policy = RetryPolicy(limit=1, delay=60)
    again = after_failure(record(1), lost_attempt(1), policy, now=5.0, at_once=True)
    assert (again.state, again.until) == (StepState.RETRYING, 5.0)
    over = after_failure(record(2), lost_attempt(2), policy, now=5.0, at_once=True)
    assert over.state is StepState.DONE and over.error["name"] == "AttemptLostError"


def test_failure_of_a_bare_timeout_names_it() -> None:
    assert failure_of(TimeoutError())["message"] == "attempt timed out"


def test_retry_policy_validates_and_takes_durations() -> None:
    assert RetryPolicy(delay="1 minute").delay == 60.0
    assert RetryPolicy(limit=3, delay=2, backoff="linear").delay_after(3) == 6.0
    with pytest.raises(InvalidStepError, match="limit"):
        RetryPolicy(limit=-1)
    with pytest.raises(InvalidStepError, match="backoff"):
        RetryPolicy(backoff="random")  # type: ignore[arg-type]
