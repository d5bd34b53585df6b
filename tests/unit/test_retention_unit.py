"""Retention without Ray: the in-memory store, a fake clock and the namespace's expiry."""

from __future__ import annotations

from typing import Any

import pytest

from raydo import InvalidDurationError, InvalidInputError, NonRetryableError
from raydo.runtime.model import WorkflowEntrypoint
from raydo.runtime.retention import parse_retention
from raydo.storage.codec import encode
from raydo.storage.instances import TimerIndex
from tests.unit.harness import Harness

pytestmark = pytest.mark.asyncio

DAY = 86400.0


class Finish(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        if event.payload == "fail":
            await step.do("boom", _fail, retries={"limit": 0})
        return await step.do("one", lambda: 1)


def _fail() -> None:
    raise NonRetryableError("no")


def _keys(h: Harness) -> list[bytes]:
    """Every key but the kept per-status counters (they stay, at zero)."""
    return h.kv.read(lambda r: [k for k, _ in r.scan(b"") if not k.startswith(b"K\x00")])


async def test_finished_instances_are_deleted_with_every_key_after_their_retention() -> None:
    h = Harness(Finish)
    before = _keys(h)
    keep = parse_retention({"success": "1 day", "error": "3 days"})
    h.ns.create([("ok", encode(None)), ("bad", encode("fail"))], False, keep)
    await h.settle()
    assert h.status("ok") == "complete" and h.status("bad") == "errored"
    await h.advance(DAY - 60)
    assert h.store.get("ok") is not None  # not yet
    await h.advance(120)
    assert h.store.get("ok") is None and h.store.get("bad") is not None
    await h.advance(2 * DAY)
    assert h.store.get("bad") is None
    assert _keys(h) == before  # record, params, steps, output, lease, timer, index: all gone
    assert set(h.store.counts().values()) == {0}
    h.create("ok")  # the id is free again
    await h.settle()
    assert h.status("ok") == "complete"


async def test_terminated_uses_the_error_retention_and_restart_disarms_it() -> None:
    h = Harness(Finish)
    h.ns.create([("t", encode(None))], False, {"error": 10.0})
    h.ns.terminate("t")
    assert h.store.get("t") is not None
    h.ns.restart("t")  # unfinished again: no expiry, no timer key
    await h.settle()
    assert h.status("t") == "complete"  # success retention not given: kept
    await h.advance(100)
    assert h.store.get("t") is not None
    assert TimerIndex(h.kv).due(h.clock.now() + 10 * DAY) == []


async def test_expired_instances_found_at_recovery_are_deleted() -> None:
    h = Harness(Finish)
    h.ns.create([("a", encode(None))], False, {"success": 5.0})
    await h.settle()
    h.timers.clear()  # the timer service never fires (raydo was down)
    await h.clock.advance(10)
    fresh = Harness(Finish, kv=h.kv, clock=h.clock)
    fresh.ns.recover()  # reads unfinished instances only; the expiry is in the timer index
    overdue = [iid for _, wf, iid in TimerIndex(h.kv).due(h.clock.now()) if wf == "wf"]
    assert overdue == ["a"]
    fresh.ns.wake(overdue)  # what the namespace actor does at start (_wake_overdue)
    assert fresh.store.get("a") is None


@pytest.mark.parametrize(
    "bad",
    [
        "7 days",
        {},
        {"success": "forever"},
        {"sucess": "1 day"},
        {"error": -1},
        {"error": True},
        {"success": 400 * DAY},
        [("success", 1)],
    ],
)
async def test_bad_retention_is_a_typed_error_naming_value_and_rule(bad: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_retention(bad)
    message = str(info.value)
    assert "retention" in message
    if isinstance(bad, dict) and set(bad) <= {"success", "error"} and bad:
        assert isinstance(info.value, InvalidDurationError)
        assert repr(next(iter(bad.values()))) in message or "bool" in message
