"""Storage faults against real Ray and LMDB: a full disk (a real, small tmpfs), a corrupt record,
a crafted pickle in storage, a storage folder of a newer schema."""

from __future__ import annotations

import pickle
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import raydo
from raydo import InstanceStatus, SchemaVersionError, WorkflowEntrypoint
from raydo.storage import keys
from raydo.storage.kv import close, open_lmdb

pytestmark = pytest.mark.ray


class Hog(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        for i in range(40):
            await step.do(f"blob{i}", lambda: "x" * 900_000)
        return "stored 36 MB"


class Small(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        total = 0
        for i in range(5):
            total += await step.do(f"s{i}", lambda i=i: i)
            await step.sleep(f"z{i}", 0.3)
        return total


@pytest.fixture
def small_disk(ray_session: None, tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    storage = mnt / "raydo"
    try:
        yield storage
    finally:
        raydo.shutdown(kill_actors=True)
        close(str(storage))
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_errors_the_writer_others_continue_nothing_corrupt(small_disk: Path) -> None:
    raydo.init(small_disk)
    small = raydo.workflow(Small, name="small", concurrency=1)
    hog = raydo.workflow(Hog, name="hog", concurrency=1)
    s = small.create(id="s").result()
    h = hog.create(id="h").result()
    hs = h.wait(timeout=120).result()
    assert hs.status is InstanceStatus.ERRORED
    assert hs.error is not None and hs.error.name == "StorageFullError"
    assert "disk is full" in hs.error.message
    assert s.wait(timeout=120).result().output == 10

    # space returns; raydo restarts on the same storage; everything reads back intact
    subprocess.run(["mount", "-o", "remount,size=128m", str(small_disk.parent)], check=True)
    raydo.shutdown(kill_actors=True)
    raydo.init(small_disk)
    small = raydo.workflow(Small, name="small", concurrency=1)
    hog = raydo.workflow(Hog, name="hog", concurrency=1)
    assert small.get("s").result().status().result().output == 10
    steps = hog.get("h").result().status(steps=True).result().steps
    assert steps and all(
        st.output == "x" * 900_000 for st in steps if st.state == "done" and st.error is None
    )
    h = hog.get("h").result()
    h.restart().result()
    assert h.wait(timeout=120).result().output == "stored 36 MB"


class Sleepy(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        a = await step.do("a", lambda: event.payload)
        await step.sleep("nap", 1.5)
        return await step.do("b", lambda: a * 2)


def _wait_status(inst: raydo.WorkflowInstance, status: InstanceStatus) -> None:
    deadline = time.time() + 30
    while inst.status().result().status is not status:
        assert time.time() < deadline
        time.sleep(0.05)


def test_corrupt_record_errors_only_that_instance(raydo_env: Path) -> None:
    wf = raydo.workflow(Sleepy, name="sleepy", concurrency=2)
    bad, good = wf.create(id="bad", params=1).result(), wf.create(id="good", params=2).result()
    _wait_status(bad, InstanceStatus.WAITING)
    kv = open_lmdb(str(raydo_env))
    kv.write(lambda w: w.put(keys.step("sleepy", "bad", "a", 1), b"\xc1not msgpack"))
    st = bad.wait(timeout=30).result()
    assert st.status is InstanceStatus.ERRORED
    assert st.error is not None and st.error.name == "CorruptRecordError"
    assert "'bad'" in st.error.message
    assert good.wait(timeout=30).result().output == 4


class Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp") / "raydo-pickle-ran"


def test_crafted_pickle_in_storage_cannot_run_code(raydo_env: Path) -> None:
    MARKER.unlink(missing_ok=True)
    wf = raydo.workflow(Sleepy, name="pickled", concurrency=1)
    inst = wf.create(id="p", params=3).result()
    _wait_status(inst, InstanceStatus.WAITING)
    kv = open_lmdb(str(raydo_env))
    kv.write(lambda w: w.put(keys.params("pickled", "p"), pickle.dumps(Exploit())))
    st = inst.wait(timeout=30).result()
    assert st.status is InstanceStatus.ERRORED
    assert st.error is not None and st.error.name == "CorruptRecordError"
    assert not MARKER.exists()


def test_storage_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "newer")
    open_lmdb(path).write(lambda w: w.put(keys.SCHEMA_KEY, keys.encode_u64(99)))
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        raydo.init(path)
    close(path)
