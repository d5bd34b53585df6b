"""The pieces of raydo.testing inside the core: the stored modifiers, the skewable clock the Ray
actors read, and the pytest plugin's registration. No Ray."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from raydo.runtime.clock import SkewedClock, SystemClock, clock_for
from raydo.runtime.modifiers import Failure, Modifiers, Selection
from raydo.storage.codec import encode
from raydo.storage.instances import (
    InstanceStore,
    all_records,
    check_schema,
    clock_offset,
    set_clock_offset,
)
from raydo.storage.kv import MemoryKV
from raydo.testing import LocalEnv

ROOT = Path(__file__).resolve().parents[2]


def test_modifiers_read_back_as_written() -> None:
    mods = Modifiers(
        token="t",
        sleeps=Selection(every=True),
        retry_delays=Selection(steps={("b", 2)}),
        results={("a", 1): encode({"x": 1})},
        failures={("c", 1): Failure({"name": "E", "message": "m", "retryable": False}, 2)},
        events=[("approved", encode(None))],
        event_timeouts={("w", 3)},
    )
    assert Modifiers.unpack(mods.pack()) == mods


def test_instances_created_during_a_workflow_introspection_get_its_modifiers() -> None:
    kv = MemoryKV()
    check_schema(kv)
    store = InstanceStore(kv, "wf")
    store.create([("before", encode(None))], 0.0, False)
    store.set_modifiers("own", b"instance-level")
    store.set_workflow_modifiers(b"workflow-level")
    store.create([("during", encode(None)), ("own", encode(None))], 1.0, False)
    store.set_workflow_modifiers(None)
    store.create([("after", encode(None))], 2.0, False)
    found = {iid: store.modifiers(iid) for iid in ("before", "during", "own", "after")}
    assert found == {
        "before": None,
        "during": b"workflow-level",
        "own": b"instance-level",  # set for that id before its create: kept
        "after": None,
    }
    assert store.load("during").modifiers == b"workflow-level"  # what an activation reads
    assert sorted(r.id for r in all_records(kv)) == ["after", "before", "during", "own"]
    store.delete("during")
    assert store.modifiers("during") is None  # removed with the instance


def test_production_storage_runs_on_the_system_clock() -> None:
    kv = MemoryKV()
    check_schema(kv)
    assert clock_offset(kv) is None
    assert isinstance(clock_for(lambda: clock_offset(kv)), SystemClock)
    set_clock_offset(kv, 0.0)
    assert isinstance(clock_for(lambda: clock_offset(kv)), SkewedClock)


@pytest.mark.asyncio
async def test_a_skewed_clock_follows_its_offset_and_ends_sleeps_and_timeouts() -> None:
    offset = [0.0]
    clock = SkewedClock(lambda: offset[0], poll=0.001)
    before = clock.now()
    sleeper = asyncio.ensure_future(clock.sleep(86400))
    waiter = asyncio.ensure_future(clock.wait_for(asyncio.Event().wait(), 3600))
    await asyncio.sleep(0.01)
    assert not sleeper.done() and not waiter.done()
    offset[0] = 86400.0  # the test skipped a day
    await asyncio.wait_for(sleeper, 10)  # real-time guard only
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiter, 10)
    assert clock.now() - before >= 86400
    assert clock.monotonic() - time.monotonic() == pytest.approx(86400, abs=1)


def test_the_plugin_is_registered_by_an_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("raydo") == "raydo.testing.plugin"


def test_the_fixture_comes_from_the_plugin(raydo_test_env: LocalEnv) -> None:
    assert isinstance(raydo_test_env, LocalEnv)


def test_the_example_test_file_runs_with_no_conftest(tmp_path: Path) -> None:
    """As a user runs it: pytest on the file, from another folder, no conftest anywhere."""
    example = ROOT / "examples" / "test_checkout_workflow.py"
    assert not list((ROOT / "examples").glob("conftest.py")) and not (ROOT / "conftest.py").exists()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout
