"""raydo.testing's modifiers, as the engine applies them: mocked step results and errors, forced
timeouts, disabled sleeps and retry delays, mocked events.

A test (raydo.testing.introspect) stores a `Modifiers` record in the instance's own storage
namespace (storage/keys.py, `N wf id M`); the activation reads it with the instance and, only when
there is one, gives run() a `ModifiedStep` instead of the plain WorkflowStep (engine.py,
`Activation._step_api`: the one hook). ModifiedStep rewrites a step's arguments before the normal
step path runs, so what a modifier does is recorded like the real thing: a mocked result is the
step's stored value, a forced timeout a failed attempt ("attempt timed out") that the step's retry
policy handles, a mocked event the wait's stored event. Replays therefore answer from storage as
usual, whatever the modifiers say later.

Steps are selected by identity (name, count): the count-th call of that name, from 1.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CorruptRecordError, NonRetryableError
from ..storage.codec import decode, pack, unpack
from ..storage.records import EventRecord, StepKind, StepState, pack_event
from .rules import RetryPolicy, StepConfig
from .step import StepFn, WorkflowStep, _arguments, _timeout_text

if TYPE_CHECKING:
    from .engine import Activation

StepKey = tuple[str, int]


@dataclass
class Selection:
    """Steps a modifier applies to: all of them, or those listed."""

    every: bool = False
    steps: set[StepKey] = field(default_factory=set)

    def covers(self, sid: StepKey) -> bool:
        return self.every or sid in self.steps


@dataclass(frozen=True)
class Failure:
    """What a failing attempt raises: `error` ({name, message, retryable}), or a timeout when
    None; for the first `times` attempts, or every attempt when None."""

    error: dict[str, Any] | None
    times: int | None

    def applies(self, attempt: int) -> bool:
        return self.times is None or attempt <= self.times

    def exception(self) -> BaseException:
        if self.error is None:
            return TimeoutError()  # recorded as a timed-out attempt, like a real one
        name, message = self.error["name"], self.error["message"]
        if not self.error.get("retryable", True):
            return NonRetryableError(message, name=name)
        return _named_error(name)(message)


@dataclass
class Modifiers:
    """Every modifier of one instance (or of the instances a workflow creates next)."""

    token: str = ""
    """Which introspection wrote them (introspect_workflow finds its instances by it)."""
    sleeps: Selection = field(default_factory=Selection)
    retry_delays: Selection = field(default_factory=Selection)
    results: dict[StepKey, bytes] = field(default_factory=dict)
    failures: dict[StepKey, Failure] = field(default_factory=dict)
    events: list[tuple[str, bytes]] = field(default_factory=list)
    event_timeouts: set[StepKey] = field(default_factory=set)

    def selected(self) -> list[tuple[StepKind, StepKey]]:
        """Every step a modifier names, with the kind it must be (to find names that never ran)."""
        do = {*self.retry_delays.steps, *self.results, *self.failures}
        return [
            *((StepKind.DO, sid) for sid in sorted(do)),
            *((StepKind.SLEEP, sid) for sid in sorted(self.sleeps.steps)),
            *((StepKind.WAIT, sid) for sid in sorted(self.event_timeouts)),
        ]

    def pack(self) -> bytes:
        return pack(
            {
                "token": self.token,
                "sleeps": [self.sleeps.every, _keys(self.sleeps.steps)],
                "retry_delays": [self.retry_delays.every, _keys(self.retry_delays.steps)],
                "results": [[n, c, raw] for (n, c), raw in self.results.items()],
                "failures": [[n, c, f.error, f.times] for (n, c), f in self.failures.items()],
                "events": [[t, raw] for t, raw in self.events],
                "event_timeouts": _keys(self.event_timeouts),
            }
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Modifiers:
        data = unpack(raw, "test modifiers")
        try:
            return cls(
                token=data["token"],
                sleeps=Selection(data["sleeps"][0], _key_set(data["sleeps"][1])),
                retry_delays=Selection(data["retry_delays"][0], _key_set(data["retry_delays"][1])),
                results={(n, c): v for n, c, v in data["results"]},
                failures={(n, c): Failure(e, t) for n, c, e, t in data["failures"]},
                events=[(t, v) for t, v in data["events"]],
                event_timeouts=_key_set(data["event_timeouts"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecordError(f"test modifiers are corrupt: {exc!r}") from None

    # -- what they change ------------------------------------------------------------------------

    def step_fn(self, sid: StepKey, fn: StepFn) -> StepFn:
        if sid in self.results:
            fn = _returning(self.results[sid])
        failure = self.failures.get(sid)
        return fn if failure is None else _failing(fn, failure)

    def step_config(self, sid: StepKey, config: StepConfig) -> StepConfig:
        if not self.retry_delays.covers(sid):
            return config
        policy = RetryPolicy(config.retries.limit, 0.0, config.retries.backoff)
        return dataclasses.replace(config, retries=policy)  # keeps sensitive, rollback

    def event_for(self, type_: str, earlier_waits: int) -> bytes | None:
        """The payload of the mocked event of `type_` a wait gets when `earlier_waits` waits for
        that type ran before it: mocked events go to the first waits of their type, in order."""
        mocked = [raw for t, raw in self.events if t == type_]
        return mocked[earlier_waits] if earlier_waits < len(mocked) else None


class ModifiedStep(WorkflowStep):
    """The `step` of an instance that has modifiers: each call's arguments are rewritten, then
    the normal step path runs. Steps that already have a record are left as recorded."""

    def __init__(self, activation: Activation, modifiers: Modifiers) -> None:
        super().__init__(activation)
        self._mods = modifiers

    async def _do(self, sid: StepKey, fn: StepFn, config: StepConfig) -> Any:
        mods = self._mods
        return await super()._do(sid, mods.step_fn(sid, fn), mods.step_config(sid, config))

    async def _sleep(self, sid: StepKey, secs: float) -> None:
        await super()._sleep(sid, 0.0 if self._mods.sleeps.covers(sid) else secs)

    async def _sleep_until(self, sid: StepKey, until: float, when: Any) -> None:
        now = self._act.clock.now()
        if self._mods.sleeps.covers(sid) and until >= now:  # a past time still fails as usual
            until = now
        await super()._sleep_until(sid, until, when)

    async def _wait(self, sid: StepKey, type_: str, secs: float) -> Any:
        act = self._act
        if act.lookup(sid, StepKind.WAIT) is None:
            if sid in self._mods.event_timeouts:
                self._record_wait(sid, type_, None)
            else:
                earlier = sum(
                    1 for s in act.steps.values() if s.kind is StepKind.WAIT and s.type == type_
                )
                payload = self._mods.event_for(type_, earlier)
                if payload is not None:
                    self._record_wait(sid, type_, payload)
        return await super()._wait(sid, type_, secs)

    def _record_wait(self, sid: StepKey, type_: str, payload: bytes | None) -> None:
        """Record the wait as over: with the mocked event, or (None) as timed out."""
        act = self._act
        now = act.clock.now()
        rec = act.new_record(
            sid, StepKind.WAIT, state=StepState.DONE, until=now, type=type_, ended_at=now
        )
        if payload is None:
            rec.error = {"name": "WaitForEventTimeoutError", "message": _timeout_text(sid, rec)}
        else:
            rec.value = pack_event(EventRecord(type_, payload, now))
        act.save(sid, rec, durable=True)


def _returning(raw: bytes) -> StepFn:
    async def mocked() -> Any:
        return decode(raw)

    return mocked


def _failing(fn: StepFn, failure: Failure) -> StepFn:
    """`fn`, except that the attempts `failure` covers raise its error instead. Sync stays sync
    (run in a thread) and async stays async, so the step runs as it would unmodified."""
    if _is_async(fn):

        async def failing_async(ctx: Any) -> Any:
            if failure.applies(ctx.attempt):
                raise failure.exception()
            return await fn(*_arguments(fn, ctx))

        return failing_async

    def failing(ctx: Any) -> Any:
        if failure.applies(ctx.attempt):
            raise failure.exception()
        return fn(*_arguments(fn, ctx))

    return failing


def _is_async(fn: StepFn) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


_ERROR_TYPES: dict[str, type[Exception]] = {}


def _named_error(name: str) -> Callable[[str], Exception]:
    """An exception class called `name`: a mocked error is recorded under the name the test
    gave (what run() sees as WorkflowStepError.name)."""
    cls = _ERROR_TYPES.get(name)
    if cls is None:
        cls = _ERROR_TYPES[name] = type(name, (Exception,), {})
    return cls


def _keys(steps: set[StepKey]) -> list[list[Any]]:
    return [[n, c] for n, c in sorted(steps)]


def _key_set(items: list[list[Any]]) -> set[StepKey]:
    return {(str(n), int(c)) for n, c in items}
