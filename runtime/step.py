"""`step`: the durable primitives a workflow's run() calls.

Each primitive gets its identity (name, count) when it is called, so concurrent steps started with
asyncio.gather keep the order they were written in, on the first run and on every replay. The step
path is a chain of small pieces: look up the record -> run an attempt -> record the outcome ->
wait for the retry; the waiting and persisting belong to the activation (engine.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ..errors import (
    InvalidDurationError,
    InvalidStepError,
    NonRetryableError,
    NonRetryableStepError,
    WaitForEventTimeoutError,
    WorkflowStepError,
)
from ..storage.codec import MAX_RESULT_BYTES, decode, encode_read_back
from ..storage.records import StepKind, StepRecord, StepState, lost_attempt, unpack_event
from . import dag
from .compute import ComputeRequest, PlacedStep, compute_request
from .model import ReceivedEvent, StepContext, StepIdentity
from .retrying import Transition, after_failure, failure_of
from .rules import (
    MAX_SLEEP,
    MIN_EVENT_TIMEOUT,
    Duration,
    RollbackFn,
    StepConfig,
    bounded,
    check_event_type,
    show,
)

if TYPE_CHECKING:
    from .engine import Activation

T = TypeVar("T")
# How long the loop blocks for a sync step's thread before it awaits it instead. Most sync steps
# (a lambda, a small computation, a cached lookup) end well within it, and a blocking wait saves
# the event loop's cross-thread wake-up (~100-150 us here); a longer step costs the loop at most
# this much before it goes on with other work.
_QUICK_WAIT = 0.001
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
        config: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        sensitive: bool = False,
        rollback: RollbackFn | None = None,
        rollback_config: dict[str, Any] | None = None,
    ) -> Awaitable[T]: ...

    @overload
    def do(
        self,
        name: str,
        fn: Callable[..., T],
        *,
        retries: dict[str, Any] | None = None,
        timeout: Duration | None = None,
        config: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        sensitive: bool = False,
        rollback: RollbackFn | None = None,
        rollback_config: dict[str, Any] | None = None,
    ) -> Awaitable[T]: ...

    @overload
    def do(
        self,
        name: str | None = None,
        fn: None = None,
        *,
        retries: dict[str, Any] | None = None,
        timeout: Duration | None = None,
        config: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        sensitive: bool = False,
        rollback: RollbackFn | None = None,
        rollback_config: dict[str, Any] | None = None,
        concurrent: bool = False,
    ) -> Callable[[StepFn], dag.StepFunction]: ...

    def do(
        self,
        name: str | None = None,
        fn: StepFn | None = None,
        *,
        retries: dict[str, Any] | None = None,
        timeout: Duration | None = None,
        config: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        sensitive: bool = False,
        rollback: RollbackFn | None = None,
        rollback_config: dict[str, Any] | None = None,
        concurrent: bool = False,
    ) -> Any:
        """Run `fn` once, durably: `await step.do(name, fn)`, or as a decorator `@step.do(name)`.

        `fn` may be sync (run in a thread) or async, and take no argument or a StepContext.
        `retries`: {"limit": 5, "delay": "10 seconds", "backoff": "exponential"}; `timeout` is per
        attempt (default 10 minutes); or both as Cloudflare's `config={"retries", "timeout"}`.
        A step that fails for good raises WorkflowStepError. The decorator form is a DAG step
        (runtime/dag.py): parameters named after earlier step functions receive their results,
        one named `ctx` the StepContext; `concurrent=True` resolves them together; the name
        defaults to the function's.
        `resources` ({"num_cpus", "num_gpus", "memory", "resources", "infeasible_after",
        "hibernate_after"}) runs each attempt as a Ray task on a node that has them, the
        instance hibernating while a long one runs (runtime/compute.py).
        `retries={"delay": fn}`: fn(ctx, error) returns the delay before the next attempt.
        `sensitive=True`: the output shows as "<redacted>" in status, describe, CLI, HTTP and
        the dashboard (run() gets the real value). `rollback=fn`: when the instance fails for
        good, fn(rollback) undoes this step (runtime/rollback.py), with its own
        `rollback_config={"retries": ..., "timeout": ...}`.
        """
        resolved = dag.resolve_config(
            retries,
            timeout,
            config,
            sensitive=sensitive,
            rollback=rollback,
            rollback_config=rollback_config,
        )
        request = compute_request(resources)
        if fn is None:
            return dag.decorator(
                self, name, resolved, concurrent, lambda n, f: self._placed(n, f, request)
            )
        sid = self._act.next_id(dag.check_plain_call(name, concurrent))
        return self._act.track(sid, self._do(sid, self._placed(sid[0], fn, request), resolved))

    def _placed(self, name: str, fn: Any, request: ComputeRequest | None) -> StepFn:
        """The function the step path calls: `fn`, or a remote attempt of it when the step
        asks for resources and the activation has an executor (the in-process test kit has
        none: there the step runs in the instance's process)."""
        fn = _callable(name, fn)
        executor = self._act.compute
        if request is None or executor is None:
            return fn
        return PlacedStep(fn, request, executor, _arguments, self._act)

    def sleep(self, name: str, duration: Duration) -> Awaitable[None]:
        """Sleep durably for `duration` ("2 days", timedelta, or seconds), at most 365 days."""
        secs = bounded(duration, "sleep duration", 0.0, MAX_SLEEP)
        sid = self._act.next_id(name)
        return self._act.track(sid, self._sleep(sid, secs))

    def sleep_until(self, name: str, when: datetime | float) -> Awaitable[None]:
        """Sleep durably until `when` (an aware datetime; naive means UTC; or epoch seconds)."""
        until = _epoch(when)
        sid = self._act.next_id(name)
        return self._act.track(sid, self._sleep_until(sid, until, when))

    def wait_for_event(
        self, name: str, *, type: str, timeout: Duration = "24 hours"
    ) -> Awaitable[ReceivedEvent]:
        """Wait for an event sent with `instance.send_event(type=...)`; events sent earlier are
        buffered and delivered first in, first out. Raises WaitForEventTimeoutError on timeout."""
        check_event_type(type)
        secs = bounded(timeout, "wait_for_event timeout", MIN_EVENT_TIMEOUT, MAX_SLEEP)
        sid = self._act.next_id(name)
        return self._act.track(sid, self._wait(sid, type, secs))

    def patched(self, patch_id: str) -> bool:
        """Evolve a workflow with instances in flight: `if step.patched("new-pricing"):` new
        code `else:` old code. True for an instance that reaches this point for the first
        time; False for one whose history already went past it on the old code. The answer is
        recorded the first time it is asked, so every replay of the instance branches alike.
        Once no instance that started on the old code is left, drop the old branch (and, later,
        the call). See runtime/replay.py."""
        return self._act.patched(patch_id)

    # -- do --------------------------------------------------------------------------------------

    async def _do(self, sid: tuple[str, int], fn: StepFn, config: StepConfig) -> Any:
        act = self._act
        if config.rollback is not None:
            act.rollbacks.register(sid, config)
        rec = act.lookup(sid, StepKind.DO)
        rejoin = False  # a placed attempt still running elsewhere (runtime/compute.py)
        if rec is None:
            rec = act.new_record(sid, StepKind.DO, config=config.to_dict())
        elif rec.state is StepState.DONE:
            return _replayed(sid, rec)
        else:
            config = config.persisted(rec.config or config.to_dict())
            rejoin = rec.state is StepState.RUNNING and await _rejoins(fn, sid, rec)
            if rec.state is StepState.RUNNING and not rejoin:
                _apply(
                    rec,
                    after_failure(
                        rec,
                        lost_attempt(rec.attempts),
                        config.retries,
                        act.clock.now(),
                        at_once=True,
                    ),
                )
                if _is_done(rec):  # no attempt left: record the step's end, as any failure
                    rec.ended_at = act.clock.now()
                    await act.save_durable(sid, rec)
        while not _is_done(rec):
            await act.pause_gate()  # the record may be done once the pause is over
            if _is_done(rec):
                break
            if rec.until is not None and rec.until > act.clock.now():
                await act.park(rec.until)
                continue
            result = await self._attempt(sid, fn, config, rec, rejoin)
            rejoin = False
            if _is_done(rec) and rec.error is None:
                return result
        return _replayed(sid, rec)

    async def _attempt(
        self, sid: tuple[str, int], fn: StepFn, config: StepConfig, rec: StepRecord, rejoin: bool
    ) -> Any:
        """One attempt, recorded. Returns the result as a replay would see it; on failure the
        record says what follows (retrying, or done with the error) and the result is None.
        `rejoin`: the running attempt's own end is awaited (it is not a new attempt)."""
        act = self._act
        act.ensure_durable()  # the results its body may use are on disk
        rec.attempts += 0 if rejoin else 1
        rec.state, rec.until = StepState.RUNNING, None
        # A placed attempt's running record is what a rejoin looks for (runtime/compute.py).
        started = act.begin_attempt(sid, rec, eager=rejoin or isinstance(fn, PlacedStep))
        try:
            emitter = act.emitter(sid, rec.attempts, started)
            ctx = StepContext(StepIdentity(*sid), rec.attempts, config, _emit=emitter.emit)
            result = None
            async with act.busy(config.timeout):
                try:
                    value = await _call(fn, ctx, config.timeout, act)
                    raw, result = encode_read_back(
                        value, f"result of step {sid[0]!r}", MAX_RESULT_BYTES
                    )
                except asyncio.CancelledError:
                    raise  # the activation is being stopped, not the step failing
                except BaseException as exc:  # SystemExit etc. from a step: a failed attempt
                    failure, now = failure_of(exc), act.clock.now()
                    _apply(rec, after_failure(rec, failure, config.retries, now, ctx=ctx, exc=exc))
                else:
                    rec.state, rec.value, rec.error = StepState.DONE, raw, None
                finally:
                    ctx.abandon()  # a thread still running it (timed out, or stopped) can tell
                    emitter.close()  # its emits are recorded before its end
            rec.ended_at = act.clock.now()
            await act.save_durable(sid, rec, started)
        finally:
            act.end_attempt(started)  # its outcome was not written: its start is
        return result

    # -- sleep -----------------------------------------------------------------------------------

    async def _sleep(self, sid: tuple[str, int], secs: float) -> None:
        act = self._act
        rec = act.lookup(sid, StepKind.SLEEP)
        if rec is None:
            rec = act.new_record(
                sid, StepKind.SLEEP, state=StepState.PENDING, until=act.clock.now() + secs
            )
            await act.save_durable(sid, rec)
        await self._sleep_out(sid, rec)

    async def _sleep_until(self, sid: tuple[str, int], until: float, when: Any) -> None:
        act = self._act
        rec = act.lookup(sid, StepKind.SLEEP)
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
            rec = act.new_record(sid, StepKind.SLEEP, state=StepState.PENDING, until=until)
            await act.save_durable(sid, rec)
        await self._sleep_out(sid, rec)

    async def _sleep_out(self, sid: tuple[str, int], rec: StepRecord) -> None:
        act = self._act
        assert rec.until is not None
        while rec.state is not StepState.DONE and act.clock.now() < rec.until:
            await act.park(rec.until)
        if rec.state is not StepState.DONE:
            rec.state, rec.ended_at = StepState.DONE, act.clock.now()
            act.save_behind(sid, rec)

    # -- wait_for_event --------------------------------------------------------------------------

    async def _wait(self, sid: tuple[str, int], type_: str, secs: float) -> ReceivedEvent:
        act = self._act
        rec = act.lookup(sid, StepKind.WAIT)
        if rec is None:
            rec = act.new_record(
                sid,
                StepKind.WAIT,
                state=StepState.PENDING,
                until=act.clock.now() + secs,
                type=type_,
            )
            await act.save_durable(sid, rec)
        assert rec.until is not None
        while rec.state is not StepState.DONE:
            if act.take_event(sid, rec):
                break
            if act.clock.now() >= rec.until:
                rec.state, rec.ended_at = StepState.DONE, act.clock.now()
                rec.error = {"name": "WaitForEventTimeoutError", "message": _timeout_text(sid, rec)}
                await act.save_durable(sid, rec)
                break
            await act.park(rec.until, type_)
        if rec.error is not None:
            raise WaitForEventTimeoutError(rec.error["message"], step=sid[0], type=rec.type)
        assert rec.value is not None
        event = unpack_event(rec.value, f"event of step {sid[0]!r}")
        return ReceivedEvent(event.type, decode(event.payload), _utc(event.timestamp))


async def _call(fn: StepFn, ctx: StepContext, timeout: float, act: Activation) -> Any:
    args = _arguments(fn, ctx)
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    ):
        return await act.clock.wait_for(fn(*args), timeout)
    # Sync code runs in a thread so it blocks the instance's loop for at most _QUICK_WAIT. A thread
    # cannot be stopped: one still running at its timeout is a stray, and its worker is replaced.
    running = act.submit(fn, *args)
    try:
        result = running.result(min(_QUICK_WAIT, timeout))
    except concurrent.futures.TimeoutError:
        result = await _await_thread(running, timeout, act)
    if inspect.isawaitable(result):
        return await act.clock.wait_for(result, timeout)
    return result


async def _await_thread(
    running: concurrent.futures.Future[Any], timeout: float, act: Activation
) -> Any:
    try:
        return await act.clock.wait_for(asyncio.wrap_future(running), timeout)
    except TimeoutError:
        if not running.done():
            act.strays.append(running)
        raise


async def _rejoins(fn: StepFn, sid: tuple[str, int], rec: StepRecord) -> bool:
    rejoins = getattr(fn, "rejoins", None)
    return rejoins is not None and bool(await rejoins(sid, rec.attempts))


def _callable(name: str, fn: Any) -> StepFn:
    if not callable(fn):
        raise InvalidStepError(
            f"step {show(name)}: {show(fn)} is not callable; step.do takes a function "
            "(sync or async, taking nothing or a StepContext)"
        )
    return fn


def _arguments(fn: StepFn, ctx: StepContext) -> tuple[Any, ...]:
    """What to call `fn` with: nothing, or the context when it requires one positional argument.
    Any other signature fails the step at once (a retry cannot fix it)."""
    required = _required(fn)
    if required is None or required == (0, 0):
        return ()
    if required == (1, 0):
        return (ctx,)
    raise NonRetryableError(
        f"step {ctx.step.name!r}: {_signature(fn)} cannot be called; a step function takes no "
        "argument or one positional argument (ctx), and no required keyword-only argument",
        name="InvalidStepError",
    )


def _required(fn: StepFn) -> tuple[int, int] | None:
    """(required positional, required keyword-only) parameters; None when not introspectable.
    Plain functions are read from their code object: this runs for every step."""
    target, bound = (fn.__func__, 1) if inspect.ismethod(fn) else (fn, 0)
    code = getattr(target, "__code__", None)
    if code is not None:
        positional = code.co_argcount - len(getattr(target, "__defaults__", None) or ()) - bound
        keyword = code.co_kwonlyargcount - len(getattr(target, "__kwdefaults__", None) or {})
        return max(positional, 0), keyword
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    empty = inspect.Parameter.empty
    positional = sum(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is empty
        for p in params
    )
    keyword = sum(p.kind is p.KEYWORD_ONLY and p.default is empty for p in params)
    return positional, keyword


def _signature(fn: StepFn) -> str:
    name = getattr(fn, "__qualname__", type(fn).__name__)
    try:
        return f"{name}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return name


def _is_done(rec: StepRecord) -> bool:
    return rec.state is StepState.DONE


def _apply(rec: StepRecord, transition: Transition) -> None:
    rec.state, rec.until, rec.error = transition.state, transition.until, transition.error


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
