"""Retention on real Ray and LMDB: finished instances expire through the timer actor, storage
does not grow over many create/finish/expire cycles, expiry survives a restart, ids come back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import raydo
from raydo import InstanceExistsError, InstanceNotFoundError, InvalidInputError, WorkflowEntrypoint
from raydo.storage import keys
from raydo.storage.kv import open_lmdb

pytestmark = pytest.mark.ray


class Quick(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        a = await step.do("a", lambda: event.payload)
        return await step.do("b", lambda: {"blob": "x" * 2000, "a": a})


def until(check: Callable[[], Any], what: str, limit: float = 60) -> Any:
    deadline = time.monotonic() + limit
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def gone(wf: raydo.Workflow, iid: str) -> bool:
    try:
        wf.get(iid).result()
    except InstanceNotFoundError:
        return True
    return False


def key_count(storage: Path) -> int:
    kv = open_lmdb(str(storage))
    return kv.read(lambda r: sum(1 for _ in r.scan(b"")))


def test_storage_does_not_grow_over_create_finish_expire_cycles(raydo_env: Path) -> None:
    wf = raydo.workflow(Quick, name="quick", retention={"success": "0.3 seconds"})
    baseline = None
    for cycle in range(6):
        items = [{"id": f"c{n}", "params": n} for n in range(20)]  # the same ids every cycle
        wf.create_batch(items).result()
        # Only a success retention is given: an instance that errored would stay, so their
        # going shows they completed (waiting for them races with so short a retention).
        until(lambda: all(gone(wf, f"c{n}") for n in range(20)), "expiry of the batch")
        count = key_count(raydo_env)
        baseline = count if baseline is None else baseline
        assert count == baseline, f"cycle {cycle}: {count} keys, first cycle left {baseline}"
    kv = open_lmdb(str(raydo_env))
    left = kv.read(lambda r: [k for k, _ in r.scan(b"") if k[:1] in (b"I", b"N", b"T", b"C", b"S")])
    assert left == []  # records, their namespaces, timers and listing index entries


def test_per_create_retention_beats_the_default_and_ids_are_reused(raydo_env: Path) -> None:
    wf = raydo.workflow(Quick, name="mixed", retention={"success": "1 hour"})
    kept = wf.create(id="kept", params=1).result()
    short = wf.create(id="short", params=2, retention={"success": "0.2 seconds"}).result()
    assert kept.wait(timeout=60).result().status == "complete"
    until(lambda: gone(wf, short.id), "expiry of 'short' (complete: only success is given)")
    assert not gone(wf, "kept")
    with pytest.raises(InstanceExistsError):
        wf.create(id="kept", params=1).result()
    again = wf.create(id="short", params=3).result()  # free again; now the default (1 hour)
    assert again.wait(timeout=60).result().output["a"] == 3


def test_expiry_due_while_raydo_was_down_happens_at_the_next_start(raydo_env: Path) -> None:
    wf = raydo.workflow(Quick, name="durable")
    inst = wf.create(id="d", params=1, retention={"success": "2 seconds"}).result()
    assert inst.wait(timeout=60).result().status == "complete"
    raydo.shutdown(kill_actors=True)
    kv = open_lmdb(str(raydo_env))
    assert kv.read(lambda r: r.get(keys.instance("durable", "d"))) is not None
    assert kv.read(lambda r: [k for k, _ in r.scan(keys.TIMERS)]) != []  # the expiry is durable
    until(lambda: time.time() > inst_end(kv) + 2.0, "the retention to pass while down")
    raydo.init(raydo_env)
    wf = raydo.workflow(Quick, name="durable")
    until(lambda: gone(wf, "d"), "expiry at start")


def inst_end(kv: Any) -> float:
    from raydo.storage.records import unpack_instance

    raw = kv.read(lambda r: r.get(keys.instance("durable", "d")))
    end = unpack_instance(raw, "d").ended_at
    assert end is not None
    return end


def test_bad_retention_is_refused_and_writes_nothing(raydo_env: Path) -> None:
    with pytest.raises(InvalidInputError, match="retention"):
        raydo.workflow(Quick, name="bad", retention={"success": "forever"})
    wf = raydo.workflow(Quick, name="bad")
    for bad in ({"succes": "1 day"}, {"error": -5}, "7 days"):
        with pytest.raises(InvalidInputError, match="retention"):
            wf.create(id="x", retention=bad).result()
    assert gone(wf, "x")
