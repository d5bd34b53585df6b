"""Online backup of a live storage and restore of it elsewhere (single node; the cluster's
per-node backup is in tests/cluster)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

import raydo

pytestmark = pytest.mark.ray


class Approval(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        asked = await step.do("ask", lambda: event.payload)
        ev = await step.wait_for_event("decide", type="decision", timeout="1 hour")
        return {"asked": asked, "by": ev.payload}


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_backup_while_running_then_restore_elsewhere(raydo_env: Path, tmp_path: Path) -> None:
    wf = raydo.workflow(Approval, name="approval", concurrency=1, warm=0)
    inst = wf.create(id="a1", params="budget").result()
    _wait_status(inst, "waiting")
    old_umask = os.umask(0o022)  # a permissive umask must not widen the backup
    try:
        (taken,) = raydo.backup(tmp_path / "backups")
    finally:
        os.umask(old_umask)
    assert taken.error is None and taken.bytes > 0
    folder = Path(taken.folder or "")
    assert folder.parent == tmp_path / "backups" and folder.name == taken.node
    assert _mode(folder) == 0o700 and _mode(folder / "data.mdb") == 0o600
    assert sorted(os.listdir(folder)) == ["data.mdb"]

    # the original goes on after the backup
    inst.send_event(type="decision", payload="ana").result()
    assert inst.wait(timeout=60).result().output == {"asked": "budget", "by": "ana"}

    with pytest.raises(raydo.InvalidInputError, match="not empty"):
        raydo.backup(tmp_path / "backups")  # the same folder again: refused, nothing written
    with pytest.raises(raydo.InvalidInputError, match="not a raydo backup"):
        raydo.restore(tmp_path, tmp_path / "nowhere")
    raydo.shutdown(kill_actors=True)

    restored = tmp_path / "restored"
    raydo.restore(folder, restored)
    assert _mode(restored) == 0o700 and _mode(restored / "data.mdb") == 0o600
    with pytest.raises(raydo.InvalidInputError, match="not empty"):
        raydo.restore(folder, restored)
    raydo.init(restored)
    try:
        again = raydo.workflow(Approval, name="approval", concurrency=1, warm=0).get("a1")
        inst2 = again.result()
        # the state the backup holds: waiting for the event that came after the backup
        assert inst2.status().result().status in ("waiting", "running")
        inst2.send_event(type="decision", payload="bo").result()
        assert inst2.wait(timeout=60).result().output == {"asked": "budget", "by": "bo"}
        steps = inst2.status(steps=True).result().steps
        assert [s.name for s in steps] == ["ask", "decide"]
        assert steps[0].attempts == 1  # finished before the backup: not run again
    finally:
        raydo.shutdown(kill_actors=True)


def _wait_status(inst: Any, status: str) -> None:
    import time

    deadline = time.monotonic() + 60
    while inst.status().result().status != status:
        assert time.monotonic() < deadline, inst.status().result()
        time.sleep(0.05)
