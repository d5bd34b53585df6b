"""What a new user trips over (issue 7), where no Ray is involved: values the codec must refuse or
keep, messages with rounded durations, mistakes caught when the binding is made."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import pytest
from harness import Harness

import raydo
from raydo import (
    InvalidInputError,
    InvalidWorkflowError,
    PayloadError,
    ReceivedEvent,
    WorkflowEntrypoint,
)
from raydo.runtime.rules import bounded, show_seconds
from raydo.storage import codec

SUPPORTED = ("None", "bool", "int", "float", "str", "bytes", "list", "tuple", "dict", "datetime")

# -- item 7: sets are refused, tuples read back as lists -----------------------------------------


@pytest.mark.parametrize(
    "value",
    [{1, 2}, frozenset({"a"}), {"tags": {"x", "y"}}, [1, {2}], set()],
    ids=repr,
)
def test_a_set_anywhere_in_a_value_is_a_payload_error_listing_every_supported_type(
    value: Any,
) -> None:
    with pytest.raises(PayloadError) as info:
        codec.encode(value, "params of instance 'a'")
    message = str(info.value)
    assert "params of instance 'a'" in message and "set" in message
    for name in (*SUPPORTED, "pydantic models", "ReceivedEvent"):
        assert name in message, (name, message)


def test_tuples_read_back_as_lists() -> None:
    assert codec.decode(codec.encode((1, (2, "x")))) == [1, [2, "x"]]


class SetResult(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("make set", lambda: {"b", "a"})


def test_a_step_returning_a_set_fails_for_good_naming_the_step() -> None:
    async def main() -> Harness:
        h = Harness(SetResult)
        h.create("i")
        await h.settle()
        return h

    h = asyncio.run(main())
    error = h.error("i")
    assert h.status("i") == "errored"
    assert error is not None and error["name"] == "PayloadError", error
    assert "result of step 'make set'" in error["message"] and "set" in error["message"]


# -- item 17: a ReceivedEvent is storable and reads back as one ----------------------------------


def test_received_event_round_trips_through_the_codec() -> None:
    when = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    event = ReceivedEvent("approved", {"by": "ana", "at": when, "raw": b"\x00"}, when)
    raw, back = codec.encode_read_back(event, "output")
    assert back == event and isinstance(back, ReceivedEvent)
    assert codec.decode(raw) == event
    assert codec.decode(codec.encode([event, {"e": event}])) == [event, {"e": event}]


def test_received_event_is_stored_as_type_payload_timestamp() -> None:
    """Stored as {type, payload, timestamp} (Cloudflare's shape), readable without raydo."""
    when = datetime(2026, 5, 1, tzinfo=UTC)
    raw = codec.encode(ReceivedEvent("t", [1], when))
    ext = msgpack.unpackb(raw)
    tag, fields = msgpack.unpackb(ext.data, ext_hook=lambda c, d: (c, d))
    assert tag == "raydo.ReceivedEvent" and sorted(fields) == ["payload", "timestamp", "type"]


class ReturnsEvent(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        ev = await step.wait_for_event("approval", type="approved", timeout="1 minute")
        again = await step.do("keep", lambda: ev)
        assert again == ev and isinstance(again, ReceivedEvent)
        return ev


def test_return_await_wait_for_event_completes_with_the_event() -> None:
    async def main() -> Harness:
        h = Harness(ReturnsEvent)
        h.create("i")
        await h.settle()
        h.ns.send_event("i", "approved", codec.encode({"by": "ana"}))
        await h.settle()
        return h

    h = asyncio.run(main())
    assert h.status("i") == "complete", h.error("i")
    out = h.output("i")
    assert isinstance(out, ReceivedEvent)
    assert out.type == "approved" and out.payload == {"by": "ana"}
    assert out.timestamp.tzinfo is not None


# -- item 11: durations in messages are rounded --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.9999987170000395, "2"),
        (0.05, "0.05"),
        (2.0, "2"),
        (1.23456, "1.235"),
        (365 * 86400.0, "31536000"),
        (0.0004, "0.0004"),
        (0.0, "0"),
    ],
)
def test_show_seconds_rounds(value: float, text: str) -> None:
    assert show_seconds(value) == text


def test_bounds_message_has_no_float_noise_or_exponent() -> None:
    with pytest.raises(InvalidInputError) as info:
        bounded(timedelta(days=366, microseconds=1), "sleep duration", 0.0, 365 * 86400.0)
    message = str(info.value)
    assert "e+07" not in message and "31622400.000001" not in message, message
    assert "is 31622400 seconds" in message and "between 0 and 31536000 seconds" in message


# -- item 4: a run() that is not async is refused at raydo.workflow ------------------------------


class SyncRun(WorkflowEntrypoint):
    def run(self, event: Any, step: Any) -> Any:  # type: ignore[override]
        return "not a coroutine"


class NoRun(WorkflowEntrypoint):
    pass


class AsyncGenRun(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:  # type: ignore[override]
        yield 1


@pytest.mark.parametrize("cls", [SyncRun, NoRun, AsyncGenRun], ids=lambda c: c.__name__)
def test_a_run_that_is_not_async_def_is_refused_naming_the_class(cls: type) -> None:
    with pytest.raises(InvalidWorkflowError) as info:
        raydo.workflow(cls, name="w")
    assert cls.__name__ in str(info.value) and "async def run" in str(info.value)
    assert info.value.workflow == cls.__name__
    assert isinstance(info.value, InvalidInputError)


def test_a_wrapped_async_run_is_accepted() -> None:
    import functools

    def traced(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any) -> Any:
            return fn(*args)

        return wrapper

    class Traced(WorkflowEntrypoint):
        @traced
        async def run(self, event: Any, step: Any) -> Any:
            return 1

    assert raydo.workflow(Traced, name="traced").name == "traced"


def test_not_a_workflow_class_is_an_invalid_workflow_error() -> None:
    with pytest.raises(InvalidWorkflowError, match="WorkflowEntrypoint"):
        raydo.workflow(int, name="w")  # type: ignore[arg-type]


# -- item 18: an empty batch is refused ----------------------------------------------------------


class Nothing(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return None


def test_create_batch_of_nothing_is_refused(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.setenv("RAYDO_STORAGE", str(tmp_path))  # never reached: refused before any call
    wf = raydo.workflow(Nothing, name="nothing")
    with pytest.raises(InvalidInputError, match="empty"):
        wf.create_batch([])
