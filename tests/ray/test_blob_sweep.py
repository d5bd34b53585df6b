"""Blob files go with the step records that point at them (real Ray and LMDB): a restart's
erased steps take their files along, and files no record points at (orphans of a crash) are
swept when a namespace starts, while every file a record points at stays."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

import raydo
from raydo import InstanceStatus

pytestmark = pytest.mark.ray

SIZE = 2 << 20  # over the 1 MiB record limit: a blob


class Spills(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        kept = await step.do("kept", lambda: b"k" * SIZE)  # the same bytes on every run
        fresh = await step.do("fresh", lambda: os.urandom(SIZE))  # new bytes on every run
        return {"kept": len(kept), "fresh": len(fresh)}


def _blob_files(storage: Path) -> set[Path]:
    return {p for p in (storage / "blobs").rglob("*") if p.is_file()}


def _finish(inst: Any) -> None:
    st = inst.wait(timeout=120).result()
    assert st.status is InstanceStatus.COMPLETE, st.error


def test_a_restart_removes_the_blobs_of_the_steps_it_erases(raydo_env: Path) -> None:
    inst = raydo.workflow(Spills, name="spills").create(id="s-1").result()
    _finish(inst)
    before = _blob_files(raydo_env)
    assert len(before) == 2
    inst.restart(from_step="fresh").result()  # erases "fresh" only
    _finish(inst)
    after = _blob_files(raydo_env)
    assert len(after) == 2 and len(after & before) == 1  # "kept" stays, old "fresh" went
    inst.restart().result()  # from scratch: both erased; "kept" is written again alike
    _finish(inst)
    again = _blob_files(raydo_env)
    assert len(again) == 2 and len(again & after) == 1
    assert inst.status().result().output == {"kept": SIZE, "fresh": SIZE}


def test_orphan_blob_files_are_swept_when_a_namespace_starts(raydo_env: Path) -> None:
    wf = raydo.workflow(Spills, name="spills")
    inst = wf.create(id="s-2").result()
    _finish(inst)
    live = _blob_files(raydo_env)
    folder = next(iter(live)).parent
    orphans = [folder / ("0" * 64), raydo_env / "blobs" / ("f" * 32) / ("1" * 64)]
    young = folder / ("2" * 64)  # could be a blob whose record is being committed
    for path in [*orphans, young]:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_bytes(b"left by a crash")
    old = time.time() - 2 * 3600
    for path in [*orphans, *live]:  # live files may be old too: they are pointed at
        os.utime(path, (old, old))
    raydo.shutdown(kill_actors=True)
    raydo.init(raydo_env)
    assert inst.status().result().status is InstanceStatus.COMPLETE  # its namespace starts
    wait_for(lambda: not any(p.exists() for p in orphans), "the orphans to be swept")
    assert not orphans[1].parent.exists()  # an emptied instance folder goes too
    assert _blob_files(raydo_env) == live | {young}
    assert inst.status(steps=True).result().output == {"kept": SIZE, "fresh": SIZE}
