from __future__ import annotations

from datetime import timedelta

import pytest

from raydo.errors import InvalidDurationError, InvalidIdError, InvalidStepError
from raydo.runtime.rules import (
    RetryPolicy,
    bounded,
    check_id,
    check_step_name,
    seconds,
    step_config,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10 seconds", 10),
        ("1 second", 1),
        ("1.5 hours", 5400),
        ("2 days", 172800),
        ("1 week", 604800),
        ("1 month", 30 * 86400),
        ("1 year", 365.25 * 86400),
        ("3 Minutes", 180),
        (timedelta(minutes=2), 120),
        (7, 7),
        (0.5, 0.5),
    ],
)
def test_durations(text: object, expected: float) -> None:
    assert seconds(text) == pytest.approx(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    ["", "soon", "10", "ten seconds", "-1 seconds", "5 fortnights", -1, float("nan"), None, True],
)
def test_bad_durations_name_the_value(bad: object) -> None:
    with pytest.raises(InvalidDurationError) as err:
        seconds(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(err.value) or str(bad) in str(err.value)


def test_bounds() -> None:
    assert bounded("365 days", "sleep", 0, 365 * 86400) == 365 * 86400
    with pytest.raises(InvalidDurationError, match="366 days"):
        bounded("366 days", "sleep", 0, 365 * 86400)
    with pytest.raises(InvalidDurationError, match="between 1"):
        bounded("0.5 seconds", "timeout", 1, 10)


@pytest.mark.parametrize("good", ["a", "order-1", "_x", "A_b-9", "x" * 100])
def test_ids_accepted(good: str) -> None:
    assert check_id(good) == good


@pytest.mark.parametrize("bad", ["", "-a", "a b", "a/b", "é", "x" * 101, "a\n", None, 5])
def test_ids_rejected(bad: object) -> None:
    with pytest.raises(InvalidIdError, match="instance id"):
        check_id(bad)


@pytest.mark.parametrize("bad", ["", "x" * 257, "tab\there", "nul\x00", 3])
def test_step_names_rejected(bad: object) -> None:
    with pytest.raises(InvalidStepError):
        check_step_name(bad)


def test_backoff_math() -> None:
    assert [RetryPolicy(5, 2, "constant").delay_after(n) for n in (1, 2, 3)] == [2, 2, 2]
    assert [RetryPolicy(5, 2, "linear").delay_after(n) for n in (1, 2, 3)] == [2, 4, 6]
    assert [RetryPolicy(5, 2, "exponential").delay_after(n) for n in (1, 2, 3)] == [2, 4, 8]


def test_step_config_defaults_and_validation() -> None:
    cfg = step_config(None, None)
    assert (cfg.retries.limit, cfg.retries.delay, cfg.retries.backoff, cfg.timeout) == (
        5,
        10.0,
        "exponential",
        600.0,
    )
    cfg = step_config({"limit": 0, "delay": "1 minute", "backoff": "linear"}, "30 seconds")
    assert (cfg.retries.limit, cfg.retries.delay, cfg.timeout) == (0, 60.0, 30.0)
    for bad in ({"limit": -1}, {"limit": 10_001}, {"backoff": "random"}, {"tries": 3}, [1]):
        with pytest.raises(InvalidStepError):
            step_config(bad, None)
    with pytest.raises(InvalidStepError):
        step_config(None, 0)
