"""Pure input rules: durations, retry policies, ids, names. Each bad value raises a typed error that
names the value and the rule; nothing here has side effects."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
DelayFn = Callable[[Any, BaseException], Duration]
"""`retries={"delay": fn}`: fn(ctx, error) -> the delay before the next attempt."""
RollbackFn = Callable[..., Any]
"""`step.do(..., rollback=fn)`: fn(rollback) or fn(), sync or async (runtime/rollback.py)."""
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
    delay: Duration | DelayFn = 10.0
    """Before the first retry: seconds, "5 seconds" or a timedelta (stored as seconds); the base
    of the backoff. Or a function (ctx, error) -> duration, asked after each failed attempt
    (backoff is then unused); if it raises, the step fails as non-retryable."""
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
        if callable(self.delay):
            check_delay_fn(self.delay)
        else:
            object.__setattr__(self, "delay", _delay_seconds(self.delay))

    @property
    def delay_fn(self) -> DelayFn | None:
        return self.delay if callable(self.delay) else None

    def delay_after(self, failed_attempt: int) -> float:
        """The backoff delay (for a delay given as a duration, not a function)."""
        delay = cast(float, self.delay)
        if self.backoff == "constant":
            return delay
        if self.backoff == "linear":
            return delay * failed_attempt
        return delay * 2 ** (failed_attempt - 1)

    def to_dict(self) -> dict[str, Any]:
        """What is persisted: a delay function is not data; the record says there was one and
        the live code's function is used again on replay (StepConfig.persisted)."""
        if callable(self.delay):
            return {"limit": self.limit, "delay": 0.0, "backoff": self.backoff, "delay_fn": True}
        return {"limit": self.limit, "delay": self.delay, "backoff": self.backoff}


def _delay_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, timedelta)):
        raise InvalidStepError(
            f"retries delay {show(value)} is invalid; give a duration ('5 seconds', a timedelta "
            "or seconds) or a function (ctx, error) returning one",
            value=show(value),
        )
    return seconds(value, "retries delay")


def check_delay_fn(fn: Any) -> None:
    """A delay function is called with (ctx, error): refused at the call when it cannot be."""
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise InvalidStepError(
            f"retries delay function {show(fn)} cannot be called as fn(ctx, error); it must "
            "take two positional arguments and return a duration",
            value=show(fn),
        ) from None
    except ValueError:
        pass  # not introspectable (some builtins): the call will tell


@dataclass(frozen=True)
class StepConfig:
    retries: RetryPolicy = RetryPolicy()
    timeout: float = 600.0
    """Seconds one attempt may run; a timed-out attempt is a failed attempt."""
    sensitive: bool = False
    """The step's output is shown as "<redacted>" wherever raydo shows it (status, describe,
    CLI, HTTP, dashboard); run() and replays get the real value."""
    rollback: RollbackFn | None = field(default=None, compare=False, repr=False)
    """Undoes the step when the instance fails for good (runtime/rollback.py). Not persisted:
    the live code's handler runs."""
    rollback_config: StepConfig | None = field(default=None, compare=False, repr=False)
    """Retries and timeout of the rollback handler (default: the step defaults)."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"retries": self.retries.to_dict(), "timeout": self.timeout}
        if self.sensitive:
            data["sensitive"] = True
        if self.rollback is not None:
            data["rollback"] = True  # a finished step whose handler a replay misses is known
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepConfig:
        retries = {k: v for k, v in data["retries"].items() if k != "delay_fn"}
        return cls(RetryPolicy(**retries), float(data["timeout"]), bool(data.get("sensitive")))

    def persisted(self, data: dict[str, Any]) -> StepConfig:
        """The config recorded at the step's first execution, with this (live) config's
        functions: the delay function (when the record says there was one) and the rollback."""
        stored = StepConfig.from_dict(data)
        live_fn = self.retries.delay_fn
        if data["retries"].get("delay_fn") and live_fn is not None:
            stored = replace(stored, retries=replace(stored.retries, delay=live_fn))
        return replace(stored, rollback=self.rollback, rollback_config=self.rollback_config)


DEFAULT_CONFIG = StepConfig()
_RETRY_KEYS = {"limit", "delay", "backoff"}
_ROLLBACK_KEYS = {"retries", "timeout"}


def step_config(
    retries: Any,
    timeout: Any,
    *,
    sensitive: Any = False,
    rollback: Any = None,
    rollback_config: Any = None,
) -> StepConfig:
    """Resolve a step's config from user arguments, over the defaults."""
    if retries is None and timeout is None and not sensitive and rollback is None:
        if rollback_config is not None:
            _check_rollback(rollback, rollback_config)
        return DEFAULT_CONFIG
    policy = DEFAULT_CONFIG.retries if retries is None else _retry_policy(retries)
    limit = seconds(timeout, "step timeout") if timeout is not None else DEFAULT_CONFIG.timeout
    if limit <= 0:
        raise InvalidStepError(f"step timeout {show(timeout)} must be greater than zero")
    if not isinstance(sensitive, bool):
        raise InvalidStepError(
            f"sensitive {show(sensitive)} is invalid; it must be True or False",
            value=show(sensitive),
        )
    undo = _check_rollback(rollback, rollback_config)
    return StepConfig(policy, limit, sensitive, rollback, undo)


def _check_rollback(rollback: Any, rollback_config: Any) -> StepConfig | None:
    if rollback is None:
        if rollback_config is not None:
            raise InvalidStepError(
                f"rollback_config {show(rollback_config)} was given without a rollback "
                "handler; pass rollback=fn as well",
                value=show(rollback_config),
            )
        return None
    if not callable(rollback):
        raise InvalidStepError(
            f"rollback {show(rollback)} is not callable; it must be a function (sync or async) "
            "taking the rollback context, or nothing",
            value=show(rollback),
        )
    _check_handler(rollback)
    if rollback_config is None:
        return None
    undo = _keyed(rollback_config, _ROLLBACK_KEYS, "rollback_config", "a dict")
    return step_config(undo.get("retries"), undo.get("timeout"))


def _check_handler(rollback: Any) -> None:
    try:
        params = inspect.signature(rollback)
    except (TypeError, ValueError):
        return  # not introspectable (some builtins): the call will tell
    for args in ((None,), ()):
        try:
            params.bind(*args)
        except TypeError:
            continue
        return
    raise InvalidStepError(
        f"rollback {show(rollback)} cannot be called with one argument (the rollback context) "
        "or none",
        value=show(rollback),
    )


def _retry_policy(retries: Any) -> RetryPolicy:
    if isinstance(retries, RetryPolicy):
        return retries
    return RetryPolicy(**_keyed(retries, _RETRY_KEYS, "retries", "a RetryPolicy or a dict"))


def _keyed(value: Any, keys: set[str], what: str, expected: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not set(value) <= keys:
        raise InvalidStepError(
            f"{what} {show(value)} is invalid; give {expected} with keys from {sorted(keys)}",
            value=show(value),
        )
    return value
