"""On a running Ray cluster, instances outlive the script that created them. The test starts its
own single-node cluster (`ray start --head`, own temp dir and port) and kills the pids it
recorded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.ray

DRIVER = Path(__file__).with_name("cluster_driver.py")
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_instances_outlive_their_driver(tmp_path: Path) -> None:
    port = _free_port()
    temp = Path("/tmp") / f"raydo-cluster-{os.getpid()}-{port}"
    head = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--temp-dir={temp}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # `ray start` enables Ray's token auth; drivers send the token from ~/.ray/auth_token
        env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token"}
        storage = str(tmp_path / "storage")
        created = _run([str(DRIVER), storage, "create"], env)
        assert "CREATED" in created
        collected = _run([str(DRIVER), storage, "collect"], env)
        result = json.loads(collected.split("RESULT ", 1)[1])
        assert result == {"n0": 1, "n1": 3, "n2": 5}
    finally:
        procs = [psutil.Process(head.pid), *psutil.Process(head.pid).children(recursive=True)]
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)


def _run(args: list[str], env: dict[str, str]) -> str:
    deadline = time.time() + 90
    while True:
        done = subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, env=env, timeout=120
        )
        if done.returncode == 0:
            return done.stdout
        # the head may still be starting: retry connecting for a while
        assert time.time() < deadline, done.stderr[-3000:]
        time.sleep(1)
