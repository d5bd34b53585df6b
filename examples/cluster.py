"""raydo on a local 3-node Ray cluster: instances spread over the nodes, and a GPU step placed on
the one node that has a GPU (a fake one: `ray start --num-gpus=1`).

    python examples/cluster.py

It starts three `ray start` nodes on this machine, each with its own temp folder and its own
storage folder (RAYDO_NODE_STORAGE), joins them as a driver, runs 6 instances of a workflow whose
middle step asks for `resources={"num_gpus": 1}`, prints where each instance lives and where its
steps ran, and stops the nodes it started (their process groups; nothing else is touched).
On a real cluster you run the `ray start` commands yourself (README, "Running on a cluster").
"""

from __future__ import annotations

import os

# `ray start` turns on Ray's token auth; Ray reads this once, when it is imported.
os.environ["RAY_AUTH_MODE"] = "token"

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

import raydo
from raydo import WorkflowEntrypoint, WorkflowEvent, WorkflowStep

NODES = {"n1": (), "n2": (), "n3": ("--num-gpus=1",)}  # extra `ray start` arguments per node


def where() -> dict[str, Any]:
    """Where this code runs: the node's storage folder names the node; the GPUs Ray gave it."""
    storage = os.environ.get("RAYDO_NODE_STORAGE", "")
    return {"node": Path(storage).name, "gpus": [str(g) for g in ray.get_gpu_ids()]}


class Train(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        prepared = await step.do("prepare", where)  # in the instance's actor, at home
        trained = await step.do("train", where, resources={"num_gpus": 1})  # on a GPU node
        return {"home": prepared["node"], "train": trained}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_cluster(root: Path) -> Iterator[str]:
    """Three `ray start` nodes; yields the head's address. Each node runs in its own process
    group, killed at the end."""
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="rd-", dir="/tmp"))  # Ray's socket paths must be short
    os.environ["RAY_TMPDIR"] = str(temp)  # for the nodes and this driver alike
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, extra in NODES.items():
            args = ["ray", "start", "--block", "--num-cpus=1", "--disable-usage-stats"]
            args += [f"--temp-dir={temp / name}", "--object-store-memory=80000000", *extra]
            if name == "n1":
                args += ["--head", f"--port={port}", "--include-dashboard=false"]
            else:
                args += [f"--address=127.0.0.1:{port}"]
            node_env = {**env, "RAYDO_NODE_STORAGE": str(root / name)}
            log = open(root / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the node
            procs.append(
                subprocess.Popen(
                    [str(Path(sys.executable).with_name("ray")), *args[1:]],
                    env=node_env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
            if name == "n1":
                _wait_listening(port)
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_listening(port: int, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the head node did not listen on port {port}")


def _join(address: str, limit: float = 120) -> None:
    """Connect this process to the cluster as a driver (the head may still be starting)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            ray.init(address=address, logging_level="ERROR")
            return
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _wait_nodes(count: int, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while sum(1 for n in ray.nodes() if n["Alive"]) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} Ray nodes did not come up")
        time.sleep(0.5)


def main() -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="raydo-cluster-"))
    try:
        with local_cluster(root) as address:
            _join(address)
            _wait_nodes(len(NODES))
            raydo.init(root / "driver")  # joins the Ray this process is connected to
            wf = raydo.workflow(Train, name="train", concurrency=2, warm=0)
            insts = [wf.create(id=f"job-{n}").result() for n in range(6)]
            done = wf.wait_all(insts, timeout=300).result()
            rows = [{"id": st.id, "status": st.status.value, **st.output} for st in done]
            raydo.shutdown()
            ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for row in rows:
        print(json.dumps(row))
    homes = sorted({row["home"] for row in rows})
    gpu_nodes = sorted({row["train"]["node"] for row in rows})
    print(f"6 instances homed on nodes {homes}; every GPU step ran on {gpu_nodes}")
    return rows


if __name__ == "__main__":
    main()
