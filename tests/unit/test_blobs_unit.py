"""storage/blobs.py on a real LMDB folder (no Ray): what is spilled, where, and in what order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raydo.errors import CorruptRecordError
from raydo.storage import blobs
from raydo.storage.codec import MAX_VALUE_BYTES
from raydo.storage.instances import InstanceStore, sweep_blobs
from raydo.storage.kv import MemoryKV, open_lmdb
from raydo.storage.records import StepKind, StepRecord, StepState


def _done(value: bytes) -> StepRecord:
    return StepRecord(kind=StepKind.DO, seq=0, state=StepState.DONE, attempts=1, value=value)


def test_only_values_over_the_limit_are_spilled_and_named_by_content(tmp_path: Path) -> None:
    kv = open_lmdb(str(tmp_path / "s"))
    small = _done(b"x" * MAX_VALUE_BYTES)
    assert blobs.spill(kv, "wf", "a", small) is small
    big = _done(os.urandom(MAX_VALUE_BYTES + 1))
    pointer = blobs.spill(kv, "wf", "a", big)
    assert pointer.value is None and pointer.blob is not None and big.value is not None
    folder = Path(blobs.instance_folder(kv.path, "wf", "a"))
    assert (folder / pointer.blob).read_bytes() == big.value
    assert blobs.spill(kv, "wf", "a", big) == pointer  # the same bytes: the same file
    assert sorted(os.listdir(folder)) == [pointer.blob]
    assert blobs.filled(kv, "wf", "a", pointer).value == big.value
    assert blobs.spill(MemoryKV(), "wf", "a", big) is big  # memory keeps values inline


def test_a_pointer_without_its_file_is_a_corrupt_record(tmp_path: Path) -> None:
    kv = open_lmdb(str(tmp_path / "s"))
    store = InstanceStore(kv, "wf")
    store.create([("a", b"\xc0")], 0.0, False)
    lease = store.acquire(["a"], 0.0)["a"]
    store.save_step("a", lease, ("make", 1), _done(os.urandom(MAX_VALUE_BYTES * 2)), True)
    assert len(store.steps("a")[("make", 1)].value or b"") == MAX_VALUE_BYTES * 2
    for file in Path(blobs.instance_folder(kv.path, "wf", "a")).iterdir():
        file.unlink()
    with pytest.raises(CorruptRecordError, match="cannot be read"):
        store.load("a")


def test_delete_removes_the_instance_blobs_only(tmp_path: Path) -> None:
    kv = open_lmdb(str(tmp_path / "s"))
    store = InstanceStore(kv, "wf")
    store.create([("a", b"\xc0"), ("b", b"\xc0")], 0.0, False)
    leases = store.acquire(["a", "b"], 0.0)
    for iid in ("a", "b"):
        store.save_step(iid, leases[iid], ("make", 1), _done(os.urandom(2 << 20)), True)
    store.delete("a")
    assert not os.path.exists(blobs.instance_folder(kv.path, "wf", "a"))
    assert len(os.listdir(blobs.instance_folder(kv.path, "wf", "b"))) == 1


def _step(seq: int, value: bytes) -> StepRecord:
    return StepRecord(kind=StepKind.DO, seq=seq, state=StepState.DONE, attempts=1, value=value)


def test_erasing_steps_removes_their_blobs_but_not_a_kept_steps(tmp_path: Path) -> None:
    kv = open_lmdb(str(tmp_path / "s"))
    store = InstanceStore(kv, "wf")
    store.create([("a", b"\xc0")], 0.0, False)
    lease = store.acquire(["a"], 0.0)["a"]
    shared, own = os.urandom(2 << 20), os.urandom(2 << 20)
    store.save_step("a", lease, ("one", 1), _step(0, shared), True)
    store.save_step("a", lease, ("two", 1), _step(1, shared), True)  # the same file
    store.save_step("a", lease, ("three", 1), _step(2, own), True)
    folder = Path(blobs.instance_folder(kv.path, "wf", "a"))
    assert len(os.listdir(folder)) == 2
    store.erase_steps("a", 1)  # "two" and "three" go; "one" still points at the shared file
    assert [p.read_bytes() == shared for p in folder.iterdir()] == [True]
    store.erase_steps("a", None)
    assert os.listdir(folder) == []


def test_the_sweep_removes_old_orphans_only(tmp_path: Path) -> None:
    kv = open_lmdb(str(tmp_path / "s"))
    store = InstanceStore(kv, "wf")
    store.create([("a", b"\xc0")], 0.0, False)
    lease = store.acquire(["a"], 0.0)["a"]
    store.save_step("a", lease, ("one", 1), _step(0, os.urandom(2 << 20)), True)
    live = next(Path(blobs.instance_folder(kv.path, "wf", "a")).iterdir())
    orphan, young = live.parent / ("0" * 64), live.parent / ("1" * 64)
    lost = Path(kv.path) / blobs.FOLDER / ("e" * 32) / ("2" * 64)
    lost.parent.mkdir()
    for path in (orphan, young, lost):
        path.write_bytes(b"orphan")
    now = live.stat().st_mtime
    old = now - blobs.ORPHAN_AGE - 1
    for path in (live, orphan, lost):
        os.utime(path, (old, old))
    assert sweep_blobs(kv, now) == 2
    assert live.exists() and young.exists() and not orphan.exists()
    assert not lost.parent.exists()
    blobs.spill(kv, "wf", "a", _step(1, live.read_bytes()))  # reused: touched, so not old
    assert live.stat().st_mtime > old
    assert sweep_blobs(MemoryKV(), now) == 0
