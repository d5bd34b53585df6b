"""Pure input rules: durations, retry policies, ids, names. Each bad value raises a typed error that
names the value and the rule; nothing here has side effects."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, cast

from ..errors import (
    InvalidDurationError,
    InvalidEventTypeError,
    InvalidIdError,
    InvalidInputError,
    InvalidStepError,
    NonRetryableError,
    RaydoError,
    WorkflowStepError,
)

Duration = str | int | float | timedelta
Backoff = Literal["constant", "linear", "exponential"]

MAX_SLEEP = 365 * 86400.0
MIN_EVENT_TIMEOUT = 1.0
MAX_RETRY_LIMIT = 10_000
MAX_STEP_NAME = 256
MAX_ID = 100
# Error messages quote at most this much of a bad value: bad values can be params, tokens or
# personal data, and messages end up in logs (SECURITY.md).
SHOW_LIMIT = 200

_UNITS = {
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 7 * 86400.0,
    "month": 30 * 86400.0,
    "year": 365.25 * 86400.0,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+?)s?\s*$")
_ID_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9\-_]*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def seconds(value: Duration, what: str = "duration") -> float:
    """A duration in seconds from "10 seconds" / "1.5 hours" / timedelta / a number of seconds."""
    if isinstance(value, bool):
        raise InvalidDurationError(
            f"{what} {show(value)} is a bool; give seconds, a string or timedelta"
        )
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)):
        try:
            result = float(value)
        except OverflowError:
            result = math.inf  # rejected below with the rule
    elif isinstance(value, str):
        result = _parse(value, what)
    else:
        raise InvalidDurationError(
            f"{what} {show(value)} has type {type(value).__name__}; a duration is a string like "
            "'10 seconds', a timedelta or a number of seconds",
            value=show(value),
        )
    if not math.isfinite(result) or result < 0:
        raise InvalidDurationError(
            f"{what} {show(value)} must be a finite, non-negative duration", value=show(value)
        )
    return result


def _parse(text: str, what: str) -> float:
    match = _DURATION_RE.fullmatch(text.lower())
    unit = _UNITS.get(match.group(2)) if match else None
    if match is None or unit is None:
        raise InvalidDurationError(
            f"{what} {show(text)} is not a duration; write '<number> <unit>' with unit second, "
            "minute, hour, day, week, month or year (singular or plural)",
            value=show(text),
        )
    return float(match.group(1)) * unit


def bounded(value: Duration, what: str, low: float, high: float) -> float:
    result = seconds(value, what)
    if not low <= result <= high:
        raise InvalidDurationError(
            f"{what} {show(value)} is {show_seconds(result)} seconds; it must be between "
            f"{show_seconds(low)} and {show_seconds(high)} seconds (365 days)",
            value=show(value),
        )
    return result


def show_seconds(value: float) -> str:
    """A number of seconds for a message: rounded, no float noise, no exponent ("2", "0.05",
    "31536000"); measured times like 1.9999987 read as the round value the user gave."""
    if not math.isfinite(value):
        return str(value)
    digits = 3 if abs(value) >= 0.001 else 6
    text = f"{round(value, digits):.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def show(value: Any) -> str:
    """repr() for error messages, safe for objects whose __repr__ fails or is huge: at most
    SHOW_LIMIT characters, then the full length."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"
    if len(text) <= SHOW_LIMIT:
        return text
    return f"{text[:SHOW_LIMIT]}... ({len(text)} characters)"


def brief(exc: BaseException) -> str:
    """An error as a log line at INFO and above may show it. raydo's own messages quote values
    only as short previews; any other message (user code, a library) may quote params or step
    results, so only its type is shown."""
    if isinstance(exc, RaydoError) and not isinstance(exc, (NonRetryableError, WorkflowStepError)):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def check_id(
    value: Any, what: str = "instance id", error: type[InvalidInputError] = InvalidIdError
) -> str:
    """Ids, workflow names and event types share one rule."""
    if not isinstance(value, str) or len(value) > MAX_ID or not _ID_RE.fullmatch(value):
        raise error(
            f"{what} {show(value)} is invalid; it must be a string of 1..{MAX_ID} characters "
            "matching ^[a-zA-Z0-9_][a-zA-Z0-9-_]*$",
            value=show(value),
        )
    return value


def check_event_type(value: Any) -> str:
    return check_id(value, "event type", InvalidEventTypeError)


def check_step_name(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_STEP_NAME
        or _CONTROL_RE.search(value)
        or not _utf8(value)
    ):
        raise InvalidStepError(
            f"step name {show(value)} is invalid; it must be a non-empty string of at most "
            f"{MAX_STEP_NAME} characters with no control characters (valid Unicode)",
            value=show(value),
        )
    return value


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def check_seconds_arg(value: Any, what: str) -> float | None:
    """A plain seconds argument of the client API (e.g. a wait timeout): None or a finite
    number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{what} {show(value)} must be None or a number of seconds >= 0")
    try:
        seconds_ = float(value)
    except OverflowError:
        seconds_ = math.inf
    if not math.isfinite(seconds_) or seconds_ < 0:
        raise InvalidInputError(f"{what} {show(value)} must be a finite number of seconds >= 0")
    return seconds_


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing step is retried. Accepted by `step.do(retries=...)` as is or as a dict with
    the same keys (missing keys take these defaults)."""

    limit: int = 5
    """Retries after the first attempt: total attempts = limit + 1 (0 to 10,000)."""
    delay: Duration = 10.0
    """Before the first retry: seconds, "5 seconds" or a timedelta (stored as seconds); the base
    of the backoff."""
    backoff: Backoff = "exponential"
    """constant: delay; linear: delay * n; exponential: delay * 2**(n-1), n = failed attempts."""

    def __post_init__(self) -> None:
        limit = self.limit
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 0 <= limit <= MAX_RETRY_LIMIT
        ):
            raise InvalidStepError(
                f"retries limit {show(limit)} is invalid; it must be an int from 0 to "
                f"{MAX_RETRY_LIMIT}",
                value=show(limit),
            )
        if self.backoff not in ("constant", "linear", "exponential"):
            raise InvalidStepError(
                f"retries backoff {show(self.backoff)} is invalid; use 'constant', 'linear' or "
                "'exponential'",
                value=show(self.backoff),
            )
        object.__setattr__(self, "delay", seconds(self.delay, "retries delay"))

    def delay_after(self, failed_attempt: int) -> float:
        delay = cast(float, self.delay)
        if self.backoff == "constant":
            return delay
        if self.backoff == "linear":
            return delay * failed_attempt
        return delay * 2 ** (failed_attempt - 1)

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "delay": self.delay, "backoff": self.backoff}


@dataclass(frozen=True)
class StepConfig:
    retries: RetryPolicy = RetryPolicy()
    timeout: float = 600.0
    """Seconds one attempt may run; a timed-out attempt is a failed attempt."""

    def to_dict(self) -> dict[str, Any]:
        return {"retries": self.retries.to_dict(), "timeout": self.timeout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepConfig:
        return cls(RetryPolicy(**data["retries"]), float(data["timeout"]))


DEFAULT_CONFIG = StepConfig()
_RETRY_KEYS = {"limit", "delay", "backoff"}


def step_config(retries: Any, timeout: Any) -> StepConfig:
    """Resolve a step's config from user arguments, over the defaults."""
    if retries is None and timeout is None:
        return DEFAULT_CONFIG
    policy = DEFAULT_CONFIG.retries if retries is None else _retry_policy(retries)
    limit = seconds(timeout, "step timeout") if timeout is not None else DEFAULT_CONFIG.timeout
    if limit <= 0:
        raise InvalidStepError(f"step timeout {show(timeout)} must be greater than zero")
    return StepConfig(policy, limit)


def _retry_policy(retries: Any) -> RetryPolicy:
    if isinstance(retries, RetryPolicy):
        return retries
    if not isinstance(retries, dict) or not set(retries) <= _RETRY_KEYS:
        raise InvalidStepError(
            f"retries {show(retries)} is invalid; give a RetryPolicy or a dict with keys from "
            f"{sorted(_RETRY_KEYS)}",
            value=show(retries),
        )
    return RetryPolicy(**retries)
