"""`raydo --address auto serve` on the head node of a real `ray start --head` cluster (its own temp
dir and RAY_TMPDIR; every pid started here is recorded and killed): the server is only a driver,
so instances and cron schedules go on while it is stopped, and a new server sees them
(docs/cluster.md, "The HTTP server on a cluster")."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from multinode import LocalCluster

from raydo.storage.instances import InstanceStore
from raydo.storage.kv import open_lmdb

pytestmark = [
    pytest.mark.ray,
    pytest.mark.extended,
]

RAYDO = str(Path(sys.executable).parent / "raydo")
FLOWS = """
import raydo


class Slow(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        first = await step.do("first", lambda: event.payload["n"])
        await step.sleep("nap", event.payload["nap"])
        return {"n": first}


class Tick(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        return event.schedule["scheduled_time"].isoformat()
"""


def until(check: Callable[[], Any], what: str, limit: float = 120) -> Any:
    deadline = time.monotonic() + limit
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


@pytest.fixture
def head(tmp_path: Path) -> Iterator[tuple[LocalCluster, Path]]:
    c = LocalCluster(tmp_path)
    try:
        node = c.start_node("head", head=True)
        c.wait_nodes(1)
        (tmp_path / "clusterflows.py").write_text(textwrap.dedent(FLOWS))
        (tmp_path / "raydo.toml").write_text(
            f'storage = "{node.storage}"\n'
            '[workflows.slow]\nclass = "clusterflows:Slow"\n'
            '[workflows.tick]\nclass = "clusterflows:Tick"\nschedules = ["*/2 * * * * *"]\n'
        )
        yield c, tmp_path
    finally:
        c.shutdown()


class Server:
    """`raydo --address auto serve --port 0` in the project folder; its URL read from stdout.
    `address`: the head's address instead of "auto" (which finds one node of a cluster whose
    nodes all run on this machine)."""

    def __init__(self, cluster: LocalCluster, root: Path, address: str = "auto") -> None:
        env = {k: v for k, v in cluster.env.items() if k != "RAY_ADDRESS"}  # found by "auto"
        self.proc = subprocess.Popen(
            [RAYDO, "--address", address, "serve", "--port", "0"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            if line.startswith("raydo serve: http://"):
                self.url = line.split()[2]
                return
        raise AssertionError("raydo serve did not start: " + "".join(seen)[-3000:])

    def stop(self) -> None:
        """SIGTERM to our server's process group (the pid we started), then SIGKILL."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def status(url: str, name: str, iid: str) -> str:
    r = httpx.get(f"{url}/api/workflows/{name}/instances/{iid}", timeout=60)
    return str(r.json()["result"]["status"]) if r.status_code == 200 else f"http {r.status_code}"


def instance_ids(url: str, name: str) -> set[str]:
    r = httpx.get(f"{url}/api/workflows/{name}/instances", params={"limit": 1000}, timeout=60)
    return {row["id"] for row in r.json()["result"]}


def test_serve_on_the_head_node_and_work_outlives_the_server(
    head: tuple[LocalCluster, Path],
) -> None:
    cluster, root = head
    server = Server(cluster, root)
    try:
        made = httpx.post(
            f"{server.url}/api/workflows/slow/instances",
            json={"id": "s1", "params": {"n": 7, "nap": 4}},
            timeout=60,
        )
        assert made.status_code == 201, made.text
        until(lambda: status(server.url, "slow", "s1") == "waiting", "s1 to sleep")
        ticks = until(lambda: instance_ids(server.url, "tick"), "a cron tick")
    finally:
        server.stop()

    # No server, no driver: the cluster's actors finish s1 and keep the schedule ticking
    # (read straight from the node's storage while nothing of raydo runs outside the cluster).
    stopped = time.time()
    kv = open_lmdb(str(cluster.nodes["head"].storage))
    until(lambda: _stored_status(kv, "slow", "s1") == "complete", "s1 to complete, no server")
    gap = until(
        lambda: [t for t in _stored_ids(kv, "tick") if _tick(t) > stopped], "a tick, no server"
    )
    again = Server(cluster, root)
    try:
        detail = httpx.get(f"{again.url}/api/workflows/slow/instances/s1", timeout=60).json()
        assert (detail["result"]["status"], detail["result"]["output"]) == ("complete", {"n": 7})
        assert set(gap) <= instance_ids(again.url, "tick") and not ticks & set(gap)
        metrics = httpx.get(f"{again.url}/metrics", timeout=60).text
        assert 'raydo_instances{status="complete",workflow="slow"} 1.0' in metrics
    finally:
        again.stop()


def _stored_status(kv: Any, workflow: str, iid: str) -> str | None:
    rec = InstanceStore(kv, workflow).get(iid)
    return None if rec is None else rec.status.value


def _stored_ids(kv: Any, workflow: str) -> list[str]:
    return [rec.id for rec in InstanceStore(kv, workflow).records()]


def _tick(iid: str) -> float:
    """The tick time in a cron instance id (cron-<digest>-20260101T120000Z)."""
    stamp = iid.rsplit("-", 1)[1]
    return time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%SZ")) - time.timezone
