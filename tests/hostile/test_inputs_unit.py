"""Hostile inputs against every public entry point, without Ray (fast).

Three layers are attacked:
- the pure rules and the codec (runtime/rules.py, storage/codec.py);
- the bindings (`raydo.workflow(...)`, `Workflow`, `WorkflowInstance`) over a fake namespace actor
  that records every call: a rejected call must send nothing;
- the in-process Harness (tests/unit/harness.py): create/params, and `step.*` inside run().

For every rejection: a typed raydo error (InvalidInputError for bad input) whose message names the
value and states the rule, and nothing written (the MemoryKV is unchanged, or no step record exists
for the hostile call). The eleven core bugs these tests first found are fixed; the tests stay.
"""

from __future__ import annotations

import asyncio
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

import hostile_strategies as hs
from harness import Harness

import raydo
from raydo import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidDurationError,
    InvalidEventTypeError,
    InvalidIdError,
    InvalidInputError,
    InvalidStepError,
    PayloadError,
    RaydoError,
    WorkflowEntrypoint,
)
from raydo.runtime import rules
from raydo.storage import codec

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HARNESS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ID_RULE_WORDS = ("1..100", hs.ID_RULE)

# -- helpers ------------------------------------------------------------------------------------


def names_value(err: BaseException, value: Any) -> bool:
    """The message quotes the value (a long one by its first SHOW_LIMIT characters)."""
    from raydo.runtime.rules import SHOW_LIMIT

    assert SHOW_LIMIT == hs.SHOW_LIMIT
    return hs.quotes(str(err), value)


def check_rejection(
    err: BaseException, cls: type[RaydoError], value: Any, *rule_words: str
) -> None:
    """A typed raydo error, of the documented class, naming the value and stating the rule."""
    assert isinstance(err, cls), f"{type(err).__name__}: {err}"
    assert isinstance(err, InvalidInputError) and isinstance(err, RaydoError)
    assert names_value(err, value), f"message {str(err)!r} does not name {value!r}"
    for words in rule_words:
        assert words in str(err), f"message {str(err)!r} does not state {words!r}"


class FakeActor:
    """Stands in for the namespace actor: records every `.remote` call and sends nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, method: str) -> Any:
        if method.startswith("__"):
            raise AttributeError(method)
        calls = self.calls

        class _Method:
            @staticmethod
            def remote(*args: Any) -> Any:
                calls.append((method, args))
                return object()

        return _Method()


class Probe(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return event.payload


def binding(name: str = "probe") -> tuple[raydo.Workflow, FakeActor]:
    wf = raydo.workflow(Probe, name=name)
    fake = FakeActor()
    wf._actor = fake
    return wf, fake


def handle() -> tuple[raydo.WorkflowInstance, FakeActor]:
    wf, fake = binding()
    return raydo.WorkflowInstance(wf, "inst-1"), fake


# Each example runs on its own event loop. `run` closes it cleanly: whatever a namespace still has
# in flight is cancelled with no new activation started, so no coroutine outlives its loop.
_HARNESSES: list[Harness] = []


def harness(cls: type[WorkflowEntrypoint]) -> Harness:
    h = Harness(cls)
    _HARNESSES.append(h)
    return h


def run(coro: Any) -> Any:
    async def main() -> Any:
        try:
            return await coro
        finally:
            while _HARNESSES:
                ns = _HARNESSES.pop().ns
                ns.concurrency = 0  # no new activations while in-flight ones are cancelled
                tasks = list(ns._tasks)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    return asyncio.run(main())


# The hostile value reaches run() through this module global (Harness runs in-process), so it
# needs no serialization of its own.
HOSTILE: dict[str, Any] = {}
NOW = 1_700_000_000.0  # FakeClock's start
FUTURE = NOW + 3600


async def _one() -> int:
    return 1


class Hostile(WorkflowEntrypoint):
    """Runs one good step, then the hostile call named by the params."""

    async def run(self, event: Any, step: Any) -> Any:
        v = HOSTILE["value"]
        await step.do("before", _one)
        op = event.payload
        if op == "do-name":
            await step.do(v, _one)
        elif op == "decorator-name":

            @step.do(v)
            async def fn() -> int:
                return 1

            await fn()
        elif op == "sleep-name":
            await step.sleep(v, 1)
        elif op == "sleep_until-name":
            await step.sleep_until(v, FUTURE)
        elif op == "wait-name":
            await step.wait_for_event(v, type="t", timeout=5)
        elif op == "sleep":
            await step.sleep("nap", v)
        elif op == "wait-timeout":
            await step.wait_for_event("w", type="t", timeout=v)
        elif op == "wait-type":
            await step.wait_for_event("w", type=v)
        elif op == "retries":
            await step.do("s", _one, retries=v)
        elif op == "timeout":
            await step.do("s", _one, timeout=v)
        elif op == "sleep_until":
            await step.sleep_until("until", v)
        elif op == "do-fn":
            await step.do("s", v)
        elif op == "result":

            async def give() -> Any:
                return v

            return await step.do("s", give)
        elif op == "output":
            return v
        return "finished"


def run_harness(op: str, value: Any, *, advance: float = 0.0) -> Harness:
    HOSTILE["value"] = value

    async def main() -> Harness:
        h = harness(Hostile)
        h.create("i", op)
        await h.settle()
        if advance:
            await h.advance(advance)
        return h

    return run(main())


def check_run_rejected(op: str, value: Any, cls: type[RaydoError], *rule_words: str) -> None:
    """run() made a hostile step call: the instance is errored with the typed error naming the
    value, and no record was written for the hostile step (only the good one before it)."""
    h = run_harness(op, value)
    snap = h.ns.snapshot("i", steps=True)
    error = snap.record.error
    assert snap.record.status == "errored", (snap.record.status, error)
    assert error is not None and error["name"] == cls.__name__, error
    message = error["message"]
    assert hs.quotes(message, value), message
    for words in rule_words:
        assert words in message, message
    assert [(n, s.state) for n, _, s in snap.steps or []] == [("before", "done")]


# == ids ========================================================================================


@FAST
@given(hs.bad_ids)
def test_check_id_rejects_and_names_the_value(value: Any) -> None:
    with pytest.raises(InvalidIdError) as info:
        rules.check_id(value)
    check_rejection(info.value, InvalidIdError, value, *ID_RULE_WORDS)


@FAST
@given(hs.valid_ids)
def test_check_id_accepts_documented_ids(value: str) -> None:
    assert rules.check_id(value) == value


@FAST
@given(hs.bad_ids)
def test_binding_rejects_bad_ids_and_sends_nothing(value: Any) -> None:
    wf, fake = binding()
    with pytest.raises(InvalidIdError) as info:
        wf.create(id=value, params={"a": 1})
    check_rejection(info.value, InvalidIdError, value, *ID_RULE_WORDS)
    with pytest.raises(InvalidIdError):
        wf.get(value)
    with pytest.raises(InvalidIdError):
        wf.create_batch([{"id": "fine-1", "params": 1}, {"id": value}])
    assert fake.calls == []


@FAST
@given(hs.valid_ids, hs.storable)
def test_binding_sends_valid_ids_and_encoded_params(iid: str, params: Any) -> None:
    wf, fake = binding()
    wf.create(id=iid, params=params)
    [(method, (items, skip, *_))] = fake.calls
    assert method == "create" and skip is False
    [(sent_id, raw)] = items
    assert sent_id == iid and hs.same(codec.decode(raw), params)


@FAST
@given(hs.bad_ids.filter(lambda v: bool(v)))
def test_workflow_name_rule(value: Any) -> None:
    with pytest.raises(InvalidIdError) as info:
        raydo.workflow(Probe, name=value)
    check_rejection(info.value, InvalidIdError, value)


@FAST
@given(st.text(hs.ID_REST, min_size=64, max_size=99).map(lambda s: "w" + s))
def test_workflow_name_over_64_chars(value: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        raydo.workflow(Probe, name=value)
    check_rejection(info.value, InvalidIdError, value, "64")


@pytest.mark.parametrize("value", ["", 0, False, b""], ids=repr)
def test_falsy_workflow_name_is_rejected(value: Any) -> None:
    with pytest.raises(InvalidIdError):
        raydo.workflow(Probe, name=value)


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr refused")


def test_id_whose_repr_raises_is_still_invalid_id() -> None:
    with pytest.raises(InvalidIdError):
        rules.check_id(_BadRepr())


# == event types ================================================================================


@FAST
@given(hs.bad_ids)
def test_event_type_rule(value: Any) -> None:
    with pytest.raises(InvalidEventTypeError) as info:
        rules.check_event_type(value)
    check_rejection(info.value, InvalidEventTypeError, value, *ID_RULE_WORDS)
    inst, fake = handle()
    with pytest.raises(InvalidEventTypeError):
        inst.send_event(type=value, payload={"ok": 1})
    assert fake.calls == []


@HARNESS
@given(hs.bad_ids)
def test_wait_for_event_type_rule_in_run(value: Any) -> None:
    check_run_rejected("wait-type", value, InvalidEventTypeError, *ID_RULE_WORDS)


# == params and payloads ========================================================================


def _payload_rule(err: BaseException) -> None:
    text = str(err)
    assert "allowed are" in text or "1 MiB" in text or "nested too deeply" in text, text


@FAST
@given(hs.unstorable)
def test_codec_refuses_unstorable_values(value: Any) -> None:
    with pytest.raises(PayloadError) as info:
        codec.encode(value, "the value")
    assert isinstance(info.value, InvalidInputError)
    assert "the value" in str(info.value)
    _payload_rule(info.value)


@FAST
@given(hs.unstorable)
def test_binding_refuses_unstorable_params_and_payloads(value: Any) -> None:
    wf, fake = binding()
    with pytest.raises(PayloadError) as info:
        wf.create(id="p-1", params=value)
    assert "params of instance 'p-1'" in str(info.value)
    _payload_rule(info.value)
    with pytest.raises(PayloadError):
        wf.create_batch([{"id": "p-2"}, {"id": "p-3", "params": value}])
    inst = raydo.WorkflowInstance(wf, "p-1")
    with pytest.raises(PayloadError) as info:
        inst.send_event(type="mail", payload=value)
    assert "payload of event 'mail'" in str(info.value)
    _payload_rule(info.value)
    assert fake.calls == []


@pytest.mark.parametrize(
    "value",
    [hs.Custom(7), object(), hs.Custom, [hs.Custom(1)], {"k": hs.Custom(2)}],
    ids=["custom", "object", "class", "in-list", "in-dict"],
)
def test_payload_message_names_the_offending_type(value: Any) -> None:
    with pytest.raises(PayloadError) as info:
        codec.encode(value, "params")
    leaf = (
        value[0]
        if isinstance(value, list)
        else value.get("k")
        if isinstance(value, dict)
        else value
    )
    assert type(leaf).__name__ in str(info.value)


def test_payload_over_1_mib_names_size_and_limit() -> None:
    with pytest.raises(PayloadError) as info:
        codec.encode("x" * hs.MAX_BYTES, "params of instance 'big'")
    err = info.value
    assert "params of instance 'big'" in str(err) and "1048576 bytes (1 MiB)" in str(err)
    assert err.size == hs.MAX_BYTES + 5  # type: ignore[attr-defined]


@HARNESS
@given(hs.unstorable)
def test_harness_create_with_unstorable_params_writes_nothing(value: Any) -> None:
    async def main() -> None:
        h = harness(Probe)
        h.create("keep", {"x": 1})
        await h.settle()
        before = dict(h.kv._data)  # type: ignore[attr-defined]
        with pytest.raises(PayloadError):
            h.create("new", value)
        assert h.kv._data == before  # type: ignore[attr-defined]
        assert h.store.get("new") is None
        assert h.output("keep") == {"x": 1}

    run(main())


@FAST
@given(hs.storable)
@example(math.nan)
@example(math.inf)
@example(-math.inf)
@example(hs.INT_MAX)
@example(hs.INT_MIN)
def test_storable_values_round_trip_through_the_codec(value: Any) -> None:
    assert hs.same(codec.decode(codec.encode(value)), value)


@pytest.mark.parametrize("value", hs.storable_edge_cases, ids=lambda v: type(v).__name__)
def test_storable_edge_cases_round_trip(value: Any) -> None:
    assert hs.same(codec.decode(codec.encode(value)), value)


def test_int_limits_are_64_bit() -> None:
    for ok in (hs.INT_MIN, hs.INT_MAX, 2**63, -1, 0):
        assert codec.decode(codec.encode(ok)) == ok
    for bad in (hs.INT_MIN - 1, hs.INT_MAX + 1, 10**100, -(10**100)):
        with pytest.raises(PayloadError, match="64-bit"):
            codec.encode(bad, "n")


def test_sets_are_refused_and_tuples_are_stored_as_lists() -> None:
    """The codec's contract: a set would read back as a list, so it is refused; a tuple is a
    msgpack array and reads back as a list."""
    for value in ({3, 1, 2}, frozenset({"b", "a"})):
        with pytest.raises(PayloadError, match="set"):
            codec.encode(value)
    assert codec.decode(codec.encode((1, (2, 3)))) == [1, [2, 3]]


@HARNESS
@given(hs.storable)
@example(math.nan)
@example({"nan": math.nan, "inf": [math.inf, -math.inf], "big": hs.INT_MAX})
def test_params_round_trip_through_a_run(params: Any) -> None:
    async def main() -> Harness:
        h = harness(Probe)
        h.create("i", params)
        await h.settle()
        return h

    h = run(main())
    assert h.status("i") == "complete", h.error("i")
    assert hs.same(h.output("i"), params)


class Mailbox(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        ev = await step.wait_for_event("mail", type="mail", timeout="1 hour")
        return ev.payload


def _deliver(payload: Any) -> Harness:
    """send_event through the real binding; its bytes are delivered into a Harness."""
    inst, fake = handle()
    inst.send_event(type="mail", payload=payload)
    [(method, (_iid, type_, raw))] = fake.calls
    assert method == "send_event" and type_ == "mail"

    async def main() -> Harness:
        h = harness(Mailbox)
        h.create("i")
        await h.settle()
        h.ns.send_event("i", type_, raw)
        await h.settle()
        return h

    return run(main())


@HARNESS
@given(hs.storable)
def test_event_payload_round_trips(payload: Any) -> None:
    h = _deliver(payload)
    assert h.status("i") == "complete", h.error("i")
    assert hs.same(h.output("i"), payload)


UNDECODABLE = [
    {(1, 2): "tuple key"},
    {frozenset({1}): "frozenset key"},
    {(): "empty tuple key"},
    msgpack.ExtType(1, b"not an isoformat"),
    msgpack.ExtType(2, b"\xc1"),
]


@pytest.mark.parametrize("value", UNDECODABLE, ids=repr)
def test_encode_only_accepts_what_decode_can_read(value: Any) -> None:
    try:
        raw = codec.encode(value, "params")
    except PayloadError:
        return
    codec.decode(raw)


def test_params_with_tuple_key_are_refused_at_create() -> None:
    async def main() -> None:
        h = harness(Probe)
        before = dict(h.kv._data)  # type: ignore[attr-defined]
        with pytest.raises(PayloadError):
            h.create("i", {(1, 2): "x"})
        assert h.kv._data == before  # type: ignore[attr-defined]

    run(main())


def test_event_payload_with_tuple_key_is_refused_at_send() -> None:
    inst, fake = handle()
    with pytest.raises(PayloadError):
        inst.send_event(type="mail", payload={(1, 2): "x"})
    assert fake.calls == []


# == durations ==================================================================================


@FAST
@given(hs.bad_durations)
def test_seconds_rejects_non_durations(value: Any) -> None:
    with pytest.raises(InvalidDurationError) as info:
        rules.seconds(value, "sleep duration")
    check_rejection(info.value, InvalidDurationError, value, "sleep duration")


@FAST
@given(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.sampled_from(hs.UNITS),
    st.booleans(),
    st.booleans(),
)
def test_duration_strings_parse(number: float, unit: str, plural: bool, upper: bool) -> None:
    text = f"{number!r} {unit}{'s' if plural else ''}"
    if "e" in text.split()[0]:
        return  # exponent notation is not a documented form
    text = text.upper() if upper else text
    factor = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}.get(
        unit, 30 * 86400 if unit == "month" else 365.25 * 86400
    )
    assert rules.seconds(text) == pytest.approx(number * factor)


@FAST
@given(st.one_of(hs.bad_durations, hs.too_long_sleeps))
def test_sleep_bounds(value: Any) -> None:
    with pytest.raises(InvalidDurationError) as info:
        rules.bounded(value, "sleep duration", 0.0, hs.MAX_SLEEP)
    check_rejection(info.value, InvalidDurationError, value, "sleep duration")


@FAST
@given(
    st.one_of(
        st.floats(min_value=0, max_value=1, exclude_max=True),
        st.sampled_from(["0 seconds", "0.999 seconds", timedelta(milliseconds=999), 0]),
    )
)
def test_wait_for_event_timeout_below_one_second(value: Any) -> None:
    with pytest.raises(InvalidDurationError) as info:
        rules.bounded(value, "wait_for_event timeout", 1.0, hs.MAX_SLEEP)
    check_rejection(info.value, InvalidDurationError, value, "between 1 and")


@HARNESS
@given(st.one_of(hs.bad_durations, hs.too_long_sleeps))
def test_sleep_in_run_rejects_and_writes_no_step(value: Any) -> None:
    check_run_rejected("sleep", value, InvalidDurationError, "sleep duration")


@HARNESS
@given(
    st.one_of(
        hs.bad_durations,
        hs.too_long_sleeps,
        st.floats(min_value=0, max_value=1, exclude_max=True),
    )
)
def test_wait_for_event_timeout_in_run(value: Any) -> None:
    check_run_rejected("wait-timeout", value, InvalidDurationError, "wait_for_event timeout")


@FAST
@given(hs.bad_step_timeouts)
def test_step_timeout_rules(value: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        rules.step_config(None, value)
    err = info.value
    assert isinstance(err, (InvalidDurationError, InvalidStepError)), type(err)
    check_rejection(err, type(err), value, "step timeout")


@HARNESS
@given(hs.bad_step_timeouts)
def test_step_timeout_in_run(value: Any) -> None:
    h = run_harness("timeout", value)
    snap = h.ns.snapshot("i", steps=True)
    assert snap.record.status == "errored"
    assert snap.record.error is not None
    assert snap.record.error["name"] in ("InvalidDurationError", "InvalidStepError")
    assert hs.quotes(snap.record.error["message"], value)
    assert [n for n, _, _ in snap.steps or []] == ["before"]


HUGE = 10**400  # an int no float can hold


@pytest.mark.parametrize(
    "call",
    [
        lambda: rules.seconds(HUGE),
        lambda: rules.bounded(HUGE, "sleep duration", 0, hs.MAX_SLEEP),
        lambda: rules.step_config(None, HUGE),
        lambda: rules.step_config({"delay": HUGE}, None),
    ],
    ids=["seconds", "sleep", "step-timeout", "retries-delay"],
)
def test_int_duration_beyond_float_range_is_invalid_duration(call: Any) -> None:
    with pytest.raises(InvalidDurationError):
        call()


def test_sleep_with_int_beyond_float_range_in_run() -> None:
    check_run_rejected("sleep", HUGE, InvalidDurationError)


# == step names =================================================================================


@FAST
@given(hs.bad_step_names)
def test_step_name_rule(value: Any) -> None:
    with pytest.raises(InvalidStepError) as info:
        rules.check_step_name(value)
    check_rejection(info.value, InvalidStepError, value, "256", "control characters")


@HARNESS
@given(
    hs.bad_step_names,
    st.sampled_from(["do-name", "decorator-name", "sleep-name", "sleep_until-name", "wait-name"]),
)
def test_step_name_in_run(value: Any, op: str) -> None:
    if value is None and op == "decorator-name":
        return  # @step.do(None): the name defaults to the function's (Cloudflare's Python API)
    check_run_rejected(op, value, InvalidStepError, "256")


@FAST
@given(hs.bad_step_names)
def test_restart_from_bad_step_name_sends_nothing(value: Any) -> None:
    inst, fake = handle()
    if isinstance(value, str):  # other types as from_step: see the wrong-shape test
        with pytest.raises(InvalidStepError) as info:
            inst.restart(from_step=value)
        check_rejection(info.value, InvalidStepError, value)
    with pytest.raises(InvalidStepError) as info:
        inst.restart(from_step=(value, 1))
    check_rejection(info.value, InvalidStepError, value)
    assert fake.calls == []


class TwoSteps(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        a = await step.do(event.payload, _one)
        b = await step.do(event.payload, _one)
        return a + b


@HARNESS
@given(hs.valid_step_names)
def test_any_valid_step_name_works_end_to_end(name: str) -> None:
    async def main() -> Harness:
        h = harness(TwoSteps)
        h.create("i", name)
        await h.settle()
        return h

    h = run(main())
    assert h.status("i") == "complete", h.error("i")
    assert set(h.store.steps("i")) == {(name, 1), (name, 2)}


@HARNESS
@given(
    st.one_of(
        hs.valid_step_names.map(lambda n: n + "-unknown"),
        st.tuples(st.just("a"), st.integers().filter(lambda c: c not in (1, 2))),
        st.tuples(st.just("a"), st.text(max_size=3)),
    )
)
def test_restart_from_unknown_step_writes_nothing(from_step: Any) -> None:
    async def main() -> None:
        h = harness(TwoSteps)
        h.create("i", "a")
        await h.settle()
        before = dict(h.kv._data)  # type: ignore[attr-defined]
        with pytest.raises(InvalidStepError) as info:
            h.ns.restart("i", from_step)
        name = from_step if isinstance(from_step, str) else from_step[0]
        assert repr(name) in str(info.value) and "no such step" in str(info.value)
        assert h.kv._data == before  # type: ignore[attr-defined]

    run(main())


def test_step_name_with_lone_surrogate_is_invalid() -> None:
    with pytest.raises(InvalidStepError):
        rules.check_step_name("step\ud800")


def test_step_name_with_lone_surrogate_in_run() -> None:
    check_run_rejected("do-name", "step\ud800", InvalidStepError)


@pytest.mark.parametrize("from_step", [123, (), {}, ("a",), ("a", 1, 2), 1.5], ids=repr)
def test_restart_from_step_of_wrong_shape_is_invalid_step(from_step: Any) -> None:
    inst, fake = handle()
    try:
        inst.restart(from_step=from_step)
    except InvalidStepError:
        assert fake.calls == []
        return
    # the binding let it through: the namespace must refuse it with a typed error

    async def main() -> None:
        h = harness(TwoSteps)
        h.create("inst-1", "a")
        await h.settle()
        with pytest.raises(InvalidStepError):
            h.ns.restart("inst-1", from_step)

    run(main())


# == retries ====================================================================================


@FAST
@given(hs.bad_retries)
def test_retry_config_rules(case: tuple[Any, Any]) -> None:
    retries, culprit = case
    with pytest.raises(InvalidInputError) as info:
        rules.step_config(retries, None)
    err = info.value
    assert isinstance(err, (InvalidStepError, InvalidDurationError)), type(err)
    check_rejection(err, type(err), culprit)
    assert "retries" in str(err)


@HARNESS
@given(hs.bad_retries)
def test_retry_config_in_run(case: tuple[Any, Any]) -> None:
    retries, culprit = case
    h = run_harness("retries", retries)
    snap = h.ns.snapshot("i", steps=True)
    assert snap.record.status == "errored"
    assert snap.record.error is not None
    assert snap.record.error["name"] in ("InvalidStepError", "InvalidDurationError")
    assert hs.quotes(snap.record.error["message"], culprit)
    assert [n for n, _, _ in snap.steps or []] == ["before"]


@FAST
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "limit": st.integers(0, 10_000),
            "delay": st.one_of(st.floats(0, 1e6), st.sampled_from(["1 second", "2 minutes"])),
            "backoff": st.sampled_from(hs.BACKOFFS),
        },
    )
)
def test_valid_retry_configs(retries: dict[str, Any]) -> None:
    config = rules.step_config(retries, None)
    assert config.retries.limit == retries.get("limit", 5)
    assert config.retries.backoff == retries.get("backoff", "exponential")


# == sleep_until ================================================================================


@HARNESS
@given(hs.past_times(NOW))
def test_sleep_until_past_is_rejected(when: Any) -> None:
    check_run_rejected("sleep_until", when, InvalidDurationError, "in the past")


@HARNESS
@given(hs.far_times(NOW))
def test_sleep_until_beyond_365_days_is_rejected(when: Any) -> None:
    check_run_rejected("sleep_until", when, InvalidDurationError, "365 days")


@HARNESS
@given(hs.wrong_type_times)
def test_sleep_until_wrong_types(when: Any) -> None:
    check_run_rejected("sleep_until", when, InvalidDurationError, "datetime or epoch seconds")


@HARNESS
@given(
    st.one_of(
        st.floats(min_value=1, max_value=hs.MAX_SLEEP - 1).map(lambda d: NOW + d),
        st.floats(min_value=1, max_value=hs.MAX_SLEEP - 1).map(
            lambda d: datetime.fromtimestamp(NOW + d, tz=UTC)
        ),
    )
)
def test_sleep_until_future_sleeps_until_then(when: Any) -> None:
    target = when.timestamp() if isinstance(when, datetime) else when
    h = run_harness("sleep_until", when, advance=target - NOW + 1)
    assert h.status("i") == "complete", h.error("i")


def test_sleep_until_nan_is_rejected() -> None:
    check_run_rejected("sleep_until", math.nan, InvalidDurationError)


def test_sleep_until_int_beyond_float_range_is_rejected() -> None:
    check_run_rejected("sleep_until", HUGE, InvalidDurationError)


# == step.do fn and results =====================================================================


def _storable_as_result(value: Any) -> bool:
    try:
        codec.encode(value, "result", codec.MAX_RESULT_BYTES)
    except PayloadError:
        return False
    return True


@HARNESS
@given(hs.unstorable)
def test_unstorable_step_result_errors_naming_the_step(value: Any) -> None:
    # A step result may pass 1 MiB (kept as a blob up to 256 MiB: tests/ray/test_blobs.py).
    assume(not _storable_as_result(value))
    HOSTILE["value"] = value

    async def main() -> Harness:
        h = harness(Hostile)
        h.create("bad", "result")
        h.create("good", "finished-normally")
        await h.settle()
        return h

    h = run(main())
    error = h.error("bad")
    assert h.status("bad") == "errored", error
    assert error is not None and error["name"] == "PayloadError"
    assert "result of step 's'" in error["message"]
    step = h.store.steps("bad")[("s", 1)]
    assert step.state == "done" and step.attempts == 1 and step.value is None  # not retried
    assert h.status("good") == "complete" and h.output("good") == "finished"


@HARNESS
@given(hs.unstorable)
def test_unstorable_workflow_output(value: Any) -> None:
    h = run_harness("output", value)
    error = h.error("i")
    assert h.status("i") == "errored" and error is not None
    assert error["name"] == "PayloadError" and "workflow output" in error["message"]
    assert h.output("i") is None


def test_set_step_result_fails_the_step_for_good() -> None:
    h = run_harness("result", {"b", "a"})
    error = h.error("i")
    assert h.status("i") == "errored"
    assert error is not None and error["name"] == "PayloadError", error


@pytest.mark.parametrize("fn", [5, "not callable", [1]], ids=repr)
def test_step_do_with_non_callable_fn(fn: Any) -> None:
    check_run_rejected("do-fn", fn, InvalidStepError)


# == binding-level arguments ====================================================================


@FAST
@given(
    st.one_of(
        st.floats(max_value=-1e-9, allow_nan=False),
        st.integers(max_value=-1),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
        st.builds(hs.Custom),
        st.just(timedelta(seconds=5)),
    )
)
def test_wait_timeout_rules(value: Any) -> None:
    inst, fake = handle()
    with pytest.raises(InvalidInputError) as info:
        inst.wait(timeout=value)
    check_rejection(info.value, InvalidInputError, value, ">= 0")
    assert fake.calls == []


@pytest.mark.parametrize("value", [True, math.nan, HUGE], ids=["True", "nan", "10**400"])
def test_wait_timeout_bool_nan_huge_are_rejected(value: Any) -> None:
    inst, fake = handle()
    with pytest.raises(InvalidInputError):
        inst.wait(timeout=value)
    assert fake.calls == []


@FAST
@given(hs.bad_ids)
def test_wait_all_rejects_bad_ids_and_sends_nothing(value: Any) -> None:
    wf, fake = binding()
    with pytest.raises(InvalidIdError) as info:
        wf.wait_all(["fine-1", value], timeout=1)
    check_rejection(info.value, InvalidIdError, value, *ID_RULE_WORDS)
    assert fake.calls == []


@pytest.mark.parametrize(
    ("instances", "timeout"),
    [
        (["done-1"], "soon"),
        (["done-1"], -5),
        (["done-1"], math.nan),
        (["done-1"], True),
        (["done-1"], [1]),
        ("abc", 1),
        (None, 1),
        (5, 1),
    ],
    ids=repr,
)
def test_wait_all_arguments_are_validated(instances: Any, timeout: Any) -> None:
    wf, fake = binding()
    try:
        wf.wait_all(instances, timeout=timeout)
    except InvalidInputError:
        assert fake.calls == []
        return
    # the binding let it through: the namespace must still refuse it with a typed error
    _method, (ids, sent_timeout) = fake.calls[0]

    async def main() -> None:
        h = harness(Probe)
        h.create("done-1", 1)
        await h.settle()
        with pytest.raises(InvalidInputError):
            await h.ns.wait_all(ids, sent_timeout)

    run(main())


@FAST
@given(
    st.one_of(
        st.lists(st.just({"id": None}), min_size=101, max_size=120),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.tuples(st.just({"id": "a"})),
        st.text(max_size=5),
        st.none(),
        st.lists(
            st.one_of(
                st.integers(),
                st.text(max_size=3),
                st.dictionaries(
                    st.text(max_size=5).filter(lambda k: k not in ("id", "params")),
                    st.integers(),
                    min_size=1,
                    max_size=2,
                ),
            ),
            min_size=1,
            max_size=3,
        ),
    )
)
def test_create_batch_shape_rules(items: Any) -> None:
    wf, fake = binding()
    with pytest.raises(InvalidInputError) as info:
        wf.create_batch(items)
    assert "create_batch" in str(info.value)
    assert fake.calls == []


@FAST
@given(st.one_of(st.integers(max_value=0), st.floats(), st.text(max_size=3), st.none()))
def test_concurrency_rule(value: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        raydo.workflow(Probe, name="c", concurrency=value)
    check_rejection(info.value, InvalidInputError, value, ">= 1")


@pytest.mark.parametrize(
    "options",
    [
        {"hibernate_after": "soon"},
        {"block_limit": "soon"},
        {"env": 5},
        {"concurrency": True},
        {"warm": "x"},
    ],
    ids=repr,
)
def test_workflow_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        raydo.workflow(Probe, name="opts", **options)


def test_workflow_class_must_be_an_entrypoint() -> None:
    for cls in (object, int, Probe(), "Probe", None):
        with pytest.raises(InvalidInputError) as info:
            raydo.workflow(cls, name="x")  # type: ignore[arg-type]
        assert "WorkflowEntrypoint" in str(info.value)


# == operations on ids that do not exist write nothing ==========================================


@HARNESS
@given(hs.valid_ids.filter(lambda v: v != "keep"))
def test_operations_on_unknown_ids_write_nothing(iid: str) -> None:
    async def main() -> None:
        h = harness(Mailbox)
        h.create("keep")
        await h.settle()
        before = dict(h.kv._data)  # type: ignore[attr-defined]
        ops = [
            lambda: h.ns.snapshot(iid),
            lambda: h.ns.pause(iid),
            lambda: h.ns.resume(iid),
            lambda: h.ns.terminate(iid),
            lambda: h.ns.restart(iid),
            lambda: h.ns.delete(iid),
            lambda: h.ns.send_event(iid, "mail", codec.encode(1)),
        ]
        for op in ops:
            with pytest.raises(InstanceNotFoundError) as info:
                op()
            assert repr(iid) in str(info.value)
        with pytest.raises(InstanceNotFoundError):
            await h.ns.wait(iid, 0.01)
        assert h.kv._data == before  # type: ignore[attr-defined]
        with pytest.raises(InstanceExistsError, match="'keep'"):
            h.create("keep", {"other": 1})
        assert h.kv._data == before  # type: ignore[attr-defined]

    run(main())
