"""Sensitive outputs and rollbacks as the operating surfaces show them: the HTTP API on a real
uvicorn server (loopback, free port) and the `raydo` CLI as a subprocess, both on the session's
Ray and one LMDB storage."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servekit import until

pytestmark = pytest.mark.ray

API = "/api/workflows"
RAYDO = str(Path(sys.executable).parent / "raydo")
FLOWS = '''
import raydo


class Vault(raydo.WorkflowEntrypoint):
    """A sensitive step, a step with a rollback handler, then a wait to terminate it in."""

    async def run(self, event, step):
        def undo(rb):
            with open(event.payload["log"], "a") as f:
                f.write(f"undo {rb.ctx.step.name} {rb.error.name}\\n")

        token = await step.do("token", lambda: "tok-s3cr3t", sensitive=True)
        await step.do("reserve", lambda: len(token), rollback=undo)
        await step.wait_for_event("go", type="go", timeout="1 hour")
'''
CONFIG = """
storage = "store"
[workflows.vault]
class = "surfaceflows:Vault"
"""


@pytest.fixture
def surfaces(ray_session: None, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    import ray
    import uvicorn

    import raydo
    from raydo.bindings.config import load_project
    from raydo.server.app import create_app
    from raydo.server.run import bind

    (tmp_path / "surfaceflows.py").write_text(textwrap.dedent(FLOWS))
    (tmp_path / "raydo.toml").write_text(CONFIG)
    project = load_project(tmp_path / "raydo.toml")
    raydo.init(project.config.storage_path)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(project, None), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    until(lambda: server.started, "the server to start")
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "RAY_AUTH_MODE": "token",
        "COLUMNS": "200",
    }
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", env
    server.should_exit = True
    thread.join(30)
    raydo.shutdown(kill_actors=True)
    sys.modules.pop("surfaceflows", None)


def cli(env: dict[str, str], root: Path, *args: str) -> str:
    done = subprocess.run(
        [RAYDO, *args], cwd=root, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr[-3000:])
    return done.stdout


def detail(url: str, iid: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{url}{API}/vault/instances/{iid}").json()["result"]
    return result


def test_http_and_cli_redact_and_terminate_with_rollback(
    surfaces: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = surfaces
    log = tmp_path / "undo.log"
    for iid in ("by-http", "by-cli"):
        made = httpx.post(
            f"{url}{API}/vault/instances", json={"id": iid, "params": {"log": str(log)}}
        )
        assert made.status_code == 201
        until(lambda iid=iid: detail(url, iid)["status"] == "waiting", f"{iid} to wait")

    shown = detail(url, "by-http")
    assert shown["steps"][0]["output"] == "<redacted>" and "s3cr3t" not in str(shown)
    step = httpx.get(f"{url}{API}/vault/instances/by-http/step", params={"name": "token"})
    assert "s3cr3t" not in step.text and "<redacted>" in step.text
    described = cli(env, tmp_path, "instances", "describe", "vault", "by-cli")
    assert "s3cr3t" not in described and "<redacted>" in described
    as_json = cli(env, tmp_path, "instances", "describe", "vault", "by-cli", "--json")
    assert "s3cr3t" not in as_json

    status_url = f"{url}{API}/vault/instances/by-http/status"
    refused = httpx.patch(status_url, json={"action": "pause", "rollback": True})
    assert refused.status_code in (400, 422) and "terminate only" in refused.text
    assert detail(url, "by-http")["status"] == "waiting"  # changed nothing
    assert httpx.patch(status_url, json={"action": "terminate", "rollback": True}).is_success
    until(lambda: detail(url, "by-http")["status"] == "terminated", "by-http to be terminated")
    assert detail(url, "by-http")["rollback"] == {"outcome": "completed", "error": None}

    cli(env, tmp_path, "instances", "terminate", "vault", "by-cli", "--rollback")
    until(lambda: detail(url, "by-cli")["status"] == "terminated", "by-cli to be terminated")
    described = cli(env, tmp_path, "instances", "describe", "vault", "by-cli")
    assert "Rollback" in described and "completed" in described
    assert log.read_text().splitlines() == ["undo reserve Terminated"] * 2
