"""`step`: the durable primitives a workflow's run() calls.

Each primitive gets its identity (name, count) when it is called, so concurrent steps started with
asyncio.gather keep the order they were written in, on the first run and on every replay. The step
path is a chain of small pieces: look up the record -> run an attempt -> record the outcome ->
wait for the retry; the waiting and persisting belong to the activation (engine.py).
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ..errors import (
    InvalidDurationError,
    InvalidStepError,
    NonRetryableError,
    NonRetryableStepError,
    PayloadError,
    WaitForEventTimeoutError,
    WorkflowStepError,
)
from ..storage.codec import decode, encode_read_back, unpack
from ..storage.instances import StepRecord
from .model import ReceivedEvent, StepContext, StepIdentity
from .rules import (
    MAX_SLEEP,
    MIN_EVENT_TIMEOUT,
    Duration,
    StepConfig,
    bounded,
    check_event_type,
    show,
    step_config,
)

if TYPE_CHECKING:
    from .engine import Activation

T = TypeVar("T")
StepFn = Callable[..., Any]


class WorkflowStep:
    """The `step` argument of run(): do, sleep, sleep_until, wait_for_event."""

    def __init__(self, activation: Activation) -> None:
        self._act = activation

    @overload
    def do(
        self,
        name: str,
        fn: Callable[..., Coroutine[Any, Any, T]],
        *,
        retries: dict[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Awaitable[T]: ...

    @overload
    def do(
        self,
        name: str,
        fn: Callable[..., T],
        *,
        retries: dict[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Awaitable[T]: ...

    @overload
    def do(
        self,
        name: str,
        fn: None = None,
        *,
        retries: dict[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Callable[[StepFn], Callable[[], Awaitable[Any]]]: ...

    def do(
        self,
        name: str,
        fn: StepFn | None = None,
        *,
        retries: dict[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """Run `fn` once, durably: `await step.do(name, fn)`, or as a decorator `@step.do(name)`.

        `fn` may be sync (run in a thread) or async, and take no argument or a StepContext.
        `retries`: {"limit": 5, "delay": "10 seconds", "backoff": "exponential"}; `timeout` is per
        attempt (default 10 minutes). A step that fails for good raises WorkflowStepError.
        """
        config = step_config(retries, timeout)
        if fn is None:
            return lambda f: _DeferredStep(self, name, _callable(name, f), config)
        return self._do(self._act.next_id(name), _callable(name, fn), config)

    def sleep(self, name: str, duration: Duration) -> Awaitable[None]:
        """Sleep durably for `duration` ("2 days", timedelta, or seconds), at most 365 days."""
        secs = bounded(duration, "sleep duration", 0.0, MAX_SLEEP)
        return self._sleep(self._act.next_id(name), secs)

    def sleep_until(self, name: str, when: datetime | float) -> Awaitable[None]:
        """Sleep durably until `when` (an aware datetime; naive means UTC; or epoch seconds)."""
        until = _epoch(when)
        return self._sleep_until(self._act.next_id(name), until, when)

    def wait_for_event(
        self, name: str, *, type: str, timeout: Duration = "24 hours"
    ) -> Awaitable[ReceivedEvent]:
        """Wait for an event sent with `instance.send_event(type=...)`; events sent earlier are
        buffered and delivered first in, first out. Raises WaitForEventTimeoutError on timeout."""
        check_event_type(type)
        secs = bounded(timeout, "wait_for_event timeout", MIN_EVENT_TIMEOUT, MAX_SLEEP)
        return self._wait(self._act.next_id(name), type, secs)

    # -- do --------------------------------------------------------------------------------------

    async def _do(self, sid: tuple[str, int], fn: StepFn, config: StepConfig) -> Any:
        act = self._act
        rec = act.lookup(sid, "do")
        if rec is None:
            rec = act.new_record(sid, "do", config=config.to_dict())
        elif rec.state == "done":
            return _replayed(sid, rec)
        else:
            config = StepConfig.from_dict(rec.config or {})
            if rec.state == "running":
                _count_lost_attempt(rec, act.clock.now())
        while True:
            await act.pause_gate()
            if rec.state == "done":
                return _replayed(sid, rec)
            if rec.until is not None and rec.until > act.clock.now():
                await act.park(rec.until)
                continue
            result = await self._attempt(sid, fn, config, rec)
            if result is not _FAILED:
                return result

    async def _attempt(
        self, sid: tuple[str, int], fn: StepFn, config: StepConfig, rec: StepRecord
    ) -> Any:
        """One attempt, recorded. Returns the result as a replay would see it, or _FAILED."""
        act = self._act
        rec.attempts += 1
        rec.state, rec.until = "running", None
        act.save(sid, rec, durable=False)
        ctx = StepContext(StepIdentity(*sid), rec.attempts, config)
        async with act.busy(config.timeout):
            try:
                value = await _call(fn, ctx, config.timeout, act)
                raw, result = encode_read_back(value, f"result of step {sid[0]!r}")
            except asyncio.CancelledError:
                raise  # the activation is being stopped, not the step failing
            except BaseException as exc:  # SystemExit etc. from a step: a failed attempt
                _record_failure(rec, exc, config, act.clock.now())
                result = _FAILED
            else:
                rec.state, rec.value, rec.error = "done", raw, None
        rec.ended_at = act.clock.now()
        act.save(sid, rec, durable=True)
        return result

    # -- sleep -----------------------------------------------------------------------------------

    async def _sleep(self, sid: tuple[str, int], secs: float) -> None:
        act = self._act
        rec = act.lookup(sid, "sleep")
        if rec is None:
            rec = act.new_record(sid, "sleep", state="pending", until=act.clock.now() + secs)
            act.save(sid, rec, durable=True)
        await self._sleep_out(sid, rec)

    async def _sleep_until(self, sid: tuple[str, int], until: float, when: Any) -> None:
        act = self._act
        rec = act.lookup(sid, "sleep")
        if rec is None:
            now = act.clock.now()
            if until < now:
                raise InvalidDurationError(
                    f"sleep_until time {show(when)} is in the past; it must be a future time",
                    value=show(when),
                )
            if until - now > MAX_SLEEP:
                raise InvalidDurationError(
                    f"sleep_until time {show(when)} is more than 365 days ahead", value=show(when)
                )
            rec = act.new_record(sid, "sleep", state="pending", until=until)
            act.save(sid, rec, durable=True)
        await self._sleep_out(sid, rec)

    async def _sleep_out(self, sid: tuple[str, int], rec: StepRecord) -> None:
        act = self._act
        assert rec.until is not None
        while rec.state != "done" and act.clock.now() < rec.until:
            await act.park(rec.until)
        if rec.state != "done":
            rec.state, rec.ended_at = "done", act.clock.now()
            act.save(sid, rec, durable=False)

    # -- wait_for_event --------------------------------------------------------------------------

    async def _wait(self, sid: tuple[str, int], type_: str, secs: float) -> ReceivedEvent:
        act = self._act
        rec = act.lookup(sid, "wait")
        if rec is None:
            rec = act.new_record(
                sid, "wait", state="pending", until=act.clock.now() + secs, type=type_
            )
            act.save(sid, rec, durable=True)
        assert rec.until is not None
        while rec.state != "done":
            if act.take_event(sid, rec):
                break
            if act.clock.now() >= rec.until:
                rec.state, rec.ended_at = "done", act.clock.now()
                rec.error = {"name": "WaitForEventTimeoutError", "message": _timeout_text(sid, rec)}
                act.save(sid, rec, durable=True)
                break
            await act.park(rec.until, type_)
        if rec.error is not None:
            raise WaitForEventTimeoutError(rec.error["message"], step=sid[0], type=rec.type)
        assert rec.value is not None
        body = unpack(rec.value, f"event of step {sid[0]!r}")
        return ReceivedEvent(body["y"], decode(body["p"]), _utc(body["t"]))


_FAILED = object()  # _attempt's "no result": the loop in _do decides what comes next


class _DeferredStep:
    """The decorator form: `@step.do(name)` makes this; awaiting a call of it runs the step."""

    def __init__(self, step: WorkflowStep, name: str, fn: StepFn, config: StepConfig) -> None:
        self._step, self._name, self._fn, self._config = step, name, fn, config

    def __call__(self) -> Awaitable[Any]:
        return self._step._do(self._step._act.next_id(self._name), self._fn, self._config)


async def _call(fn: StepFn, ctx: StepContext, timeout: float, act: Activation) -> Any:
    args = (ctx,) if _wants_context(fn) else ()
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    ):
        async with asyncio.timeout(timeout):
            return await fn(*args)
    # Sync code runs in a thread so it never blocks the instance's loop. A thread cannot be
    # stopped: one still running at its timeout is a stray, and its worker gets replaced.
    running = act.submit(fn, *args)
    try:
        result = await asyncio.wait_for(asyncio.wrap_future(running), timeout)
    except TimeoutError:
        if not running.done():
            act.strays.append(running)
        raise
    if inspect.isawaitable(result):
        async with asyncio.timeout(timeout):
            return await result
    return result


def _callable(name: str, fn: Any) -> StepFn:
    if not callable(fn):
        raise InvalidStepError(
            f"step {show(name)}: {show(fn)} is not callable; step.do takes a function "
            "(sync or async, taking nothing or a StepContext)"
        )
    return fn


def _wants_context(fn: StepFn) -> bool:
    """True when `fn` has a required positional parameter (the context)."""
    code = getattr(fn, "__code__", None)
    if code is not None and not getattr(fn, "__self__", None):
        return code.co_argcount > len(getattr(fn, "__defaults__", None) or ())
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        for p in params
    )


def _record_failure(rec: StepRecord, exc: BaseException, config: StepConfig, now: float) -> None:
    retryable = not isinstance(exc, (NonRetryableError, PayloadError))
    rec.error = _error_info(exc, retryable)
    if retryable and rec.attempts <= config.retries.limit:
        rec.state, rec.until = "retrying", now + config.retries.delay_after(rec.attempts)
    else:
        rec.state = "done"


def _count_lost_attempt(rec: StepRecord, now: float) -> None:
    """An attempt that started but never finished (its process died) counts as a failed attempt;
    it is retried at once, within the step's retry limit."""
    config = StepConfig.from_dict(rec.config or {})
    rec.error = {
        "name": "AttemptLostError",
        "message": f"attempt {rec.attempts} did not finish: the process running it stopped",
        "retryable": True,
    }
    if rec.attempts <= config.retries.limit:
        rec.state, rec.until = "retrying", now
    else:
        rec.state = "done"


def _error_info(exc: BaseException, retryable: bool) -> dict[str, Any]:
    if isinstance(exc, TimeoutError) and not str(exc):
        return {"name": "TimeoutError", "message": "attempt timed out", "retryable": retryable}
    name = getattr(exc, "name", None) if isinstance(exc, NonRetryableError) else None
    message = exc.message if isinstance(exc, (NonRetryableError, PayloadError)) else str(exc)
    return {"name": name or type(exc).__name__, "message": message, "retryable": retryable}


def _replayed(sid: tuple[str, int], rec: StepRecord) -> Any:
    if rec.error is not None:
        retryable = rec.error.get("retryable", True)
        cls = WorkflowStepError if retryable else NonRetryableStepError
        raise cls(
            f"step {sid[0]!r} failed: {rec.error['name']}: {rec.error['message']}",
            name=rec.error["name"],
            error_message=rec.error["message"],
            step=sid[0],
            count=sid[1],
            retryable=retryable,
        )
    assert rec.value is not None
    return decode(rec.value)


def _timeout_text(sid: tuple[str, int], rec: StepRecord) -> str:
    return f"wait_for_event {sid[0]!r} got no event of type {rec.type!r} before its timeout"


def _epoch(when: datetime | float) -> float:
    if isinstance(when, datetime):
        aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        return aware.timestamp()
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        try:
            epoch = float(when)
        except OverflowError:
            epoch = math.inf if when > 0 else -math.inf
        if not math.isnan(epoch):
            return epoch  # +-inf are refused as beyond 365 days / in the past
    raise InvalidDurationError(
        f"sleep_until time {show(when)} must be a datetime or epoch seconds (not NaN)",
        value=show(when),
    )


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)
