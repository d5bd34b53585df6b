"""The instance history and its stream, in process (LocalEnv: in-memory storage, fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from harness import Harness

from raydo import InvalidInputError, PayloadError, WaitForEventTimeoutError, WorkflowEntrypoint
from raydo.bindings.events import InstanceEvent, attempts_of
from raydo.runtime import stream
from raydo.runtime.rules import step_config
from raydo.storage import history
from raydo.storage.codec import encode
from raydo.storage.instances import InstanceStore, check_schema
from raydo.storage.kv import MemoryKV
from raydo.storage.records import InstanceRecord, StepKind, StepRecord, StepState
from raydo.testing import LocalEnv


class Mixed(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def flaky(ctx: Any) -> str:
            ctx.emit({"pct": 50, "attempt": ctx.attempt})
            if ctx.attempt < 2:
                raise ValueError("boom")
            return "ok" * 300  # a long output: its preview is cut

        retries = {"limit": 3, "delay": "10 seconds", "backoff": "constant"}
        await step.do("flaky", flaky, retries=retries)
        await step.sleep("nap", "1 hour")
        with contextlib.suppress(WaitForEventTimeoutError):
            await step.wait_for_event("approval", type="go", timeout="1 hour")
        return "done"


def _kinds(events: list[InstanceEvent]) -> list[str]:
    return [e.type for e in events]


MIXED = [
    "workflow_queued",
    "workflow_started",
    "step_started",
    "attempt_started",
    "step_emitted",
    "attempt_errored",
    "workflow_waiting",  # the 10-second retry delay hibernates
    "workflow_running",
    "attempt_started",
    "step_emitted",
    "attempt_completed",
    "step_completed",
    "sleep_started",
    "workflow_waiting",
    "workflow_running",
    "sleep_completed",
    "wait_started",
    "workflow_waiting",
    "workflow_running",
    "wait_timed_out",
    "workflow_completed",
]


def test_a_step_sleep_wait_retry_workflow_records_its_events_in_order() -> None:
    with LocalEnv() as env:
        wf = env.workflow(Mixed, hibernate_after=1)
        inst = wf.create(id="a").result()
        assert inst.wait(timeout=30).result().output == "done"
        found = inst.history().result()
    assert _kinds(found) == MIXED
    assert [e.cursor for e in found] == list(range(len(MIXED)))
    errored = found[5]
    assert errored.attempt == 1 and errored.error is not None
    assert errored.error.name == "ValueError" and errored.retry_at is not None
    completed = found[11]
    assert completed.output is not None and len(completed.output) <= history.PREVIEW_CHARS
    assert [e.data for e in found if e.type == "step_emitted"] == [
        {"pct": 50, "attempt": 1},
        {"pct": 50, "attempt": 2},
    ]
    rows = attempts_of(found)
    assert [(a.attempt, a.success, a.emitted) for a in rows] == [(1, False, 1), (2, True, 1)]


def test_a_cursor_resumes_with_no_gap_and_no_repeat() -> None:
    with LocalEnv() as env:
        wf = env.workflow(Mixed, hibernate_after=1)
        inst = wf.create(id="a").result()
        inst.wait(timeout=30).result()
        every = inst.history().result()
        for k, event in enumerate(every):
            assert inst.history(cursor=event.cursor).result() == every[k + 1 :]
            assert inst.history(cursor=str(event.cursor)).result() == every[k + 1 :]
        steps = inst.history(filter=["step_"]).result()
    assert _kinds(steps) == [
        "step_started",
        "step_emitted",
        "step_emitted",
        "step_completed",
    ]


class Gate(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def count(ctx: Any) -> int:
            for k in range(5):
                ctx.emit({"k": k})
                await asyncio.sleep(0)
            return 5

        await step.do("count", count)
        ev = await step.wait_for_event("go", type="go", timeout="1 hour")
        return ev.payload


def test_subscribe_replays_then_follows_live_and_ends_after_the_terminal_event() -> None:
    async def scenario(env: LocalEnv) -> tuple[list[InstanceEvent], list[InstanceEvent]]:
        wf = env.workflow(Gate)
        inst = await wf.create(id="g")
        seen: list[InstanceEvent] = []

        async def follow() -> None:
            async for ev in inst.subscribe():
                seen.append(ev)

        task = asyncio.ensure_future(follow())
        for _ in range(2000):  # until the subscriber saw the wait start (live, not replay)
            if any(e.type == "wait_started" for e in seen):
                break
            await asyncio.sleep(0.005)
        assert not task.done()
        await inst.send_event(type="go", payload={"by": "ana"})
        await asyncio.wait_for(task, 30)
        return seen, await inst.history()

    with LocalEnv() as env:
        seen, stored = asyncio.run(scenario(env))
    assert seen == stored
    assert seen[-1].type == "workflow_completed"
    assert [e.data for e in seen if e.type == "step_emitted"] == [{"k": k} for k in range(5)]
    assert "wait_completed" in _kinds(seen)


def test_bad_cursor_filter_and_oversized_emit_are_refused() -> None:
    class Loud(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            def shout(ctx: Any) -> str:
                try:
                    ctx.emit("x" * 20_000)
                except PayloadError as err:
                    return f"refused {err.size}"
                return "kept"

            return await step.do("shout", shout)

    with LocalEnv() as env:
        wf = env.workflow(Loud)
        inst = wf.create(id="l").result()
        out = inst.wait(timeout=30).result().output
        assert out.startswith("refused ")
        for bad in (-1, 1.5, "x", True):
            with pytest.raises(InvalidInputError, match="cursor"):
                inst.history(cursor=bad)
        with pytest.raises(InvalidInputError, match="names no event type"):
            inst.subscribe(filter=["nope"])
        assert "step_emitted" not in _kinds(inst.history().result())


def _running_instance_a() -> tuple[MemoryKV, InstanceStore]:
    """In-memory storage holding instance "a" of workflow "wf", acquired (lease 1)."""
    kv = MemoryKV()
    check_schema(kv)
    store = InstanceStore(kv, "wf")
    store.create([("a", b"\xc0")], 0.0, False)
    store.acquire(["a"], 1.0)
    return kv, store


def test_a_lost_attempt_is_recorded_as_errored_then_retried() -> None:
    kv, store = _running_instance_a()
    rec = StepRecord(kind=StepKind.DO, seq=0, attempts=1, started_at=1.0)
    store.save_step("a", 1, ("s", 1), rec, durable=False)
    store.acquire(["a"], 2.0)  # the worker died; a new activation replays
    rec.attempts, rec.error = 2, {"name": "WorkerLostError", "message": "died"}
    store.save_step("a", 2, ("s", 1), rec, durable=False)
    rec.state, rec.value, rec.error, rec.ended_at = StepState.DONE, b"\xc0", None, 3.0
    store.save_step("a", 2, ("s", 1), rec, durable=True)
    found = [(e["type"], e.get("attempt")) for e in store.history("a", None, 100)]
    assert found == [
        ("workflow_queued", None),
        ("workflow_started", None),
        ("step_started", None),
        ("attempt_started", 1),
        ("attempt_errored", 1),
        ("attempt_started", 2),
        ("attempt_completed", 2),
        ("step_completed", None),
    ]
    store.delete("a")
    assert list(kv.read(lambda r: list(r.scan(b"N\x00wf\x00a\x00")))) == []


def test_a_step_save_writes_its_record_and_events_and_no_counter_key() -> None:
    """Sequence numbers are read off the newest event: a counter key of its own sat apart from
    the events and cost a long instance's every step a page write more."""
    kv, store = _running_instance_a()
    before = dict(kv.read(lambda r: list(r.scan(b"N\x00wf\x00a\x00"))))
    rec = StepRecord(kind=StepKind.DO, seq=0, state=StepState.DONE, attempts=1, value=b"\xc0")
    store.save_step("a", 1, ("s", 1), rec, durable=True)
    after = dict(kv.read(lambda r: list(r.scan(b"N\x00wf\x00a\x00"))))
    written = sorted(k for k in after if after[k] != before.get(k))
    history_keys = [k for k in written if k.startswith(b"N\x00wf\x00a\x00H\x00")]
    assert written == sorted(
        [b"N\x00wf\x00a\x00S\x00s\x00" + (1).to_bytes(4, "big"), *history_keys]
    )
    assert len(history_keys) == 4  # step_started, attempt_started/completed, step_completed
    cursors = [e["cursor"] for e in store.history("a", None, 100)]
    assert cursors == list(range(len(cursors)))


def test_a_storage_with_the_old_history_counter_key_goes_on_numbering_after_its_events() -> None:
    kv, store = _running_instance_a()
    n = len(store.history("a", None, 100))
    kv.write(lambda w: w.put(b"N\x00wf\x00a\x00h", n.to_bytes(8, "big")))  # as older code left it
    rec = StepRecord(kind=StepKind.DO, seq=0, state=StepState.DONE, attempts=1, value=b"\xc0")
    store.save_step("a", 1, ("s", 1), rec, durable=True)
    cursors = [e["cursor"] for e in store.history("a", None, 100)]
    assert cursors == list(range(n + 4))
    store.delete("a")
    assert list(kv.read(lambda r: list(r.scan(b"N\x00wf\x00a\x00")))) == []


class OneShot(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("once", lambda: 1, retries={"limit": 0})


@pytest.mark.asyncio
async def test_an_attempt_lost_with_no_retry_left_ends_the_step_in_the_history() -> None:
    h = Harness(OneShot)
    config = step_config({"limit": 0}, None).to_dict()
    h.store.create([("a", encode(None))], 0.0, False)
    lease = h.store.acquire(["a"], 1.0)["a"]
    lost = StepRecord(kind=StepKind.DO, seq=0, attempts=1, started_at=1.0, config=config)
    h.store.save_step("a", lease, ("once", 1), lost, durable=False)  # then its process died
    h.ns.recover()
    await h.settle()
    assert h.status("a") == "errored"
    found = [(e["type"], e.get("attempt")) for e in h.store.history("a", None, 100)]
    assert found[-3:] == [
        ("attempt_errored", 1),
        ("step_errored", None),
        ("workflow_errored", None),
    ]
    step = h.store.steps("a")[("once", 1)]
    assert step.state is StepState.DONE and step.error is not None
    assert step.error["name"] == "AttemptLostError"


class _Script:
    """A store whose history and status follow a script, to drive `stream.poll` exactly."""

    def __init__(self, reads: list[list[history.Event]], statuses: list[str]) -> None:
        self.reads, self.statuses = reads, statuses

    def history(self, iid: str, after: int | None, limit: int) -> list[history.Event]:
        return self.reads.pop(0) if self.reads else []

    def require(self, iid: str) -> Any:
        return InstanceRecord(id=iid, workflow="wf", status=self.statuses.pop(0))


def _poll(store: _Script, wait: float = 30.0) -> tuple[stream.Batch, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    batch = asyncio.run(stream.poll(store, "a", 4, None, wait, sleep))  # type: ignore[arg-type]
    return batch, slept


def test_poll_backs_off_to_a_bound_and_never_loses_a_terminal_event_written_meanwhile() -> None:
    end = {"type": "workflow_completed", "at": 1.0, "cursor": 5}
    # nothing, nothing, ..., then the instance finishes between the history and status reads
    store = _Script([[]] * 9 + [[end]], ["running"] * 4 + ["waiting"] * 4 + ["complete"])
    batch, slept = _poll(store)
    assert batch.events == [end] and batch.ended and batch.cursor == 5
    running, waiting = slept[:4], slept[4:]
    assert running == [stream.POLL_FIRST * 2**k for k in range(4)]
    assert max(running) <= stream.POLL_MAX and max(waiting) <= stream.POLL_IDLE_MAX
    assert all(s > 0 for s in slept)  # never a tight loop


def test_poll_ends_at_once_for_a_finished_instance_past_its_end() -> None:
    batch, slept = _poll(_Script([], ["complete"]))
    assert (batch.events, batch.ended, batch.cursor, slept) == ([], True, 4, [])


def test_a_step_that_emits_without_yielding_keeps_every_record_in_order() -> None:
    class Burst(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            async def burst(ctx: Any) -> int:
                for k in range(2500):  # never yields: written in chunks as it goes
                    ctx.emit(k)
                return 2500

            return await step.do("burst", burst)

    with LocalEnv() as env:
        inst = env.workflow(Burst).create(id="b").result()
        assert inst.wait(timeout=60).result().output == 2500
        found = inst.history(filter=["step_emitted", "attempt_completed"]).result()
    assert [e.data for e in found[:-1]] == list(range(2500))
    assert found[-1].type == "attempt_completed"


class Secret(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        token = await step.do("token", lambda: "s3cr3t-token", sensitive=True)
        plain = await step.do("plain", lambda: "visible")
        return len(token) + len(plain)


def test_a_sensitive_steps_output_is_redacted_in_its_events() -> None:
    with LocalEnv() as env:
        inst = env.workflow(Secret).create(id="s").result()
        assert inst.wait(timeout=30).result().output == len("s3cr3t-token") + len("visible")
        found = inst.history().result()
    outputs = {e.step: e.output for e in found if e.type == "step_completed"}
    assert outputs == {"token": history.REDACTED, "plain": "'visible'"}
    assert all("s3cr3t" not in repr(e) for e in found)


class SecretEmits(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def token(ctx: Any) -> str:
            ctx.emit({"token": "s3cr3t-part"})
            return "s3cr3t"

        def public(ctx: Any) -> int:
            ctx.emit({"pct": 100})
            return 1

        await step.do("token", token, sensitive=True)
        return await step.do("public", public)


def test_a_sensitive_steps_emits_are_redacted_in_history_and_stream() -> None:
    async def scenario(env: LocalEnv) -> tuple[list[InstanceEvent], list[InstanceEvent]]:
        inst = await env.workflow(SecretEmits).create(id="s")
        return [ev async for ev in inst.subscribe()], await inst.history()

    with LocalEnv() as env:
        seen, stored = asyncio.run(scenario(env))
        raw = env.store("SecretEmits").history("s", None, 1000)
    assert seen == stored
    emitted = {e.step: e.data for e in stored if e.type == "step_emitted"}
    assert emitted == {"token": history.REDACTED, "public": {"pct": 100}}
    assert "s3cr3t" not in repr(raw)  # not in storage at all: nothing to leak later
    assert [a.last_emitted for a in attempts_of(stored)] == [history.REDACTED, {"pct": 100}]
