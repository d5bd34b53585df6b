"""Step results over the 1 MiB record limit are kept as blob files at home (storage/blobs.py):
a 50 MiB result on real Ray and LMDB, read back on replay, across a restart of raydo, copied by
a backup, deleted with its instance."""

from __future__ import annotations

import hashlib
import os
import random
import stat
import time
from pathlib import Path
from typing import Any

import pytest

import raydo
from raydo.storage import keys
from raydo.storage.kv import open_lmdb
from raydo.storage.records import unpack_step

pytestmark = pytest.mark.ray

SIZE = 50 << 20


def _data() -> bytes:
    return random.Random(8).randbytes(SIZE)


class Big(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        data = await step.do("make", _data)
        first = await step.do("digest", lambda: hashlib.sha256(data).hexdigest())
        await step.wait_for_event("go", type="go", timeout="1 hour")  # hibernates
        again = await step.do("digest again", lambda: hashlib.sha256(data).hexdigest())
        return {"first": first, "again": again, "len": len(data)}


class TooBigOutput(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("make", lambda: b"x" * (2 << 20))  # a step may; the output may not


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _blob_files(storage: Path) -> list[Path]:
    return sorted(p for p in (storage / "blobs").rglob("*") if p.is_file())


def _wait_status(inst: Any, status: str) -> None:
    deadline = time.monotonic() + 120
    while inst.status().result().status != status:
        assert time.monotonic() < deadline, inst.status().result()
        time.sleep(0.05)


def test_a_50_mib_result_lives_in_a_blob_and_survives_restart_backup_delete(
    raydo_env: Path, tmp_path: Path
) -> None:
    wf = raydo.workflow(Big, name="big", concurrency=1, warm=0)
    inst = wf.create(id="b1").result()
    _wait_status(inst, "waiting")
    (blob,) = _blob_files(raydo_env)
    assert blob.stat().st_size > SIZE and _mode(blob) == 0o600 and _mode(blob.parent) == 0o700
    raw = open_lmdb(str(raydo_env)).read(lambda r: r.get(keys.step("big", "b1", "make", 1)))
    assert raw is not None and len(raw) < 1000  # LMDB holds the pointer only
    record = unpack_step(raw, "make")
    assert record.value is None and record.blob == blob.name

    backups = raydo.backup(tmp_path / "backups")
    copied = _blob_files(Path(backups[0].folder or ""))
    assert [p.name for p in copied] == [blob.name] and _mode(copied[0]) == 0o600

    raydo.shutdown(kill_actors=True)  # a restart: replay reads the blob back from disk
    raydo.init(raydo_env)
    inst = raydo.workflow(Big, name="big", concurrency=1, warm=0).get("b1").result()
    inst.send_event(type="go").result()
    st = inst.wait(timeout=120).result()
    want = hashlib.sha256(_data()).hexdigest()
    assert st.output == {"first": want, "again": want, "len": SIZE}, st
    steps = {s.name: s for s in inst.status(steps=True).result().steps}
    assert steps["make"].attempts == 1  # never made again: read back on every replay
    inst.delete().result()
    assert _blob_files(raydo_env) == [] and not blob.parent.exists()
    raydo.shutdown(kill_actors=True)

    restored = tmp_path / "restored"  # the backup, restored: the blob came with it
    raydo.restore(backups[0].folder or "", restored)
    raydo.init(restored)
    inst = raydo.workflow(Big, name="big", concurrency=1, warm=0).get("b1").result()
    inst.send_event(type="go").result()
    assert inst.wait(timeout=120).result().output == {"first": want, "again": want, "len": SIZE}


def test_the_output_keeps_the_1_mib_limit(raydo_env: Path) -> None:
    inst = raydo.workflow(TooBigOutput, name="toobig").create().result()
    st = inst.wait(timeout=120).result()
    assert st.status == "errored" and st.error is not None
    assert st.error.name == "PayloadError" and "limit is 1048576 bytes (1 MiB)" in st.error.message
