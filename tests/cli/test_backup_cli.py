"""`raydo backup FOLDER` and `raydo restore BACKUP STORAGE` through the installed entry point,
against real Ray and LMDB (the CLI joins the session's Ray, as in test_cli.py)."""

from __future__ import annotations

import os
import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import Cli, until

import raydo
from raydo.bindings.config import load_project

pytestmark = pytest.mark.ray

FLOWS = """
import raydo


class Approve(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        first = await step.do("prepare", lambda: event.payload)
        ev = await step.wait_for_event("approval", type="approved", timeout="1 hour")
        return {"by": ev.payload, "first": first}
"""
CONFIG = """
storage = "store"
[workflows.approve]
class = "backupflows:Approve"
"""


@pytest.fixture
def project(ray_session: None, tmp_path: Path) -> Iterator[tuple[Cli, Any, Path]]:
    import sys

    import ray

    (tmp_path / "backupflows.py").write_text(textwrap.dedent(FLOWS))
    (tmp_path / "raydo.toml").write_text(CONFIG)
    loaded = load_project(tmp_path / "raydo.toml")
    raydo.init(loaded.config.storage_path)
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "RAY_AUTH_MODE": "token",
        "COLUMNS": "200",
    }
    yield Cli(tmp_path, env), sys.modules["backupflows"], tmp_path
    raydo.shutdown(kill_actors=True)
    sys.modules.pop("backupflows", None)


def test_backup_then_restore_from_the_command_line(project: tuple[Cli, Any, Path]) -> None:
    cli, flows, root = project
    wf = raydo.workflow(flows.Approve, name="approve")
    inst = wf.create(id="a-1", params="budget").result()
    until(lambda: inst.status().result().status == "waiting", "a-1 to wait")

    (node,) = cli.json("backup", "backups")
    assert node["error"] is None and node["bytes"] > 0
    folder = Path(node["folder"])
    assert folder == root / "backups" / node["node"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    text = cli("backup", "more").stdout
    assert f"node {node['node']}: " in text and "bytes in" in text
    refused = cli.json("backup", "backups", code=2)  # not empty: nothing written
    assert refused["error"]["code"] == "invalid_input"
    assert "not empty" in refused["error"]["message"]

    restored = cli.json("restore", str(folder), str(root / "restored"))
    assert restored == {"backup": str(folder), "storage": str(root / "restored")}
    assert stat.S_IMODE((root / "restored" / "data.mdb").stat().st_mode) == 0o600
    cli("restore", str(root), str(root / "elsewhere"), code=2)  # not a backup
    raydo.shutdown(kill_actors=True)

    raydo.init(root / "restored")  # the backup's state: waiting for the event
    again = raydo.workflow(flows.Approve, name="approve").get("a-1").result()
    again.send_event(type="approved", payload="ana").result()
    assert again.wait(timeout=60).result().output == {"by": "ana", "first": "budget"}
