"""A real multi-node Ray cluster on this machine for the cluster tests: one `ray start --block`
per node, each with its own temp dir, its own storage folder (RAYDO_NODE_STORAGE) and a
`raydo-node` label. RAY_TMPDIR points at the test's own folder, so Ray's "current cluster" file
of other people's sessions is never touched. Only the process trees of the nodes started here
are ever killed (their pids are recorded)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).parent
DRIVER = HERE / "multinode_driver.py"
RAY = Path(sys.executable).with_name("ray")
# Ray marks a SIGKILLed node dead after ~period * threshold instead of ~15 s.
_FAST_DEATH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, name: str, storage: Path, proc: subprocess.Popen[bytes], temp: Path):
        self.name, self.storage, self.proc, self.temp = name, storage, proc, temp

    def pids(self) -> list[int]:
        """This node's processes: the `ray start` we launched and everything below it."""
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.proc.pid)
            return [root.pid, *(p.pid for p in root.children(recursive=True))]
        return []


class LocalCluster:
    def __init__(self, root: Path, driver: Path = DRIVER) -> None:
        self.root = root
        self.driver = driver  # the script `run`, `start_driver` and `result` launch
        self.port = free_port()
        self.nodes: dict[str, Node] = {}
        self.killed: list[int] = []
        self.starts = 0
        # Ray's socket paths must stay under 107 bytes: a short folder of our own under /tmp.
        self.temp = Path("/tmp") / f"raydo-mn-{os.getpid()}-{self.port}"
        (self.temp / "tmp").mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        # `ray start` enables Ray's token auth; drivers send the token from ~/.ray/auth_token
        return {
            **os.environ,
            "RAY_ADDRESS": self.address,
            "RAY_AUTH_MODE": "token",
            "RAY_TMPDIR": str(self.temp / "tmp"),
            "PYTHONUNBUFFERED": "1",
        }

    def start_node(self, name: str, head: bool = False, extra: tuple[str, ...] = ()) -> Node:
        """Start (or start again, on the same storage folder) node `name`; `extra` arguments
        go to its `ray start` (e.g. `--num-gpus=1` for a fake GPU node)."""
        storage = self.root / "storage" / name
        self.starts += 1
        temp = self.temp / f"{name}-{self.starts}"
        args = [str(RAY), "start", "--block", "--num-cpus=1", "--disable-usage-stats"]
        args += [f"--temp-dir={temp}", f"--labels={json.dumps({'raydo-node': name})}"]
        args += ["--object-store-memory=80000000", *extra]
        if head:
            args += ["--head", f"--port={self.port}", "--include-dashboard=false"]
            args += [f"--system-config={json.dumps(_FAST_DEATH)}"]
        else:
            args += [f"--address={self.address}"]
        env = {**self.env, "RAYDO_NODE_STORAGE": str(storage)}
        env.pop("RAY_ADDRESS")
        with open(self.root / f"ray-start-{name}-{self.starts}.log", "wb") as log:
            proc = subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)
        node = self.nodes[name] = Node(name, storage, proc, temp)
        return node

    def wait_nodes(self, count: int, timeout: float = 120) -> None:
        """Until Ray reports `count` alive nodes (asked from a throwaway driver)."""
        deadline = time.time() + timeout
        seen = ""
        while True:
            assert time.time() < deadline, f"{count} nodes did not come up: {seen[-3000:]}"
            if not self._head_listens():
                time.sleep(0.5)
                continue
            try:
                out = self.run("alive", check=False, timeout=60)
            except subprocess.TimeoutExpired:
                continue
            if out.returncode == 0 and f"ALIVE {count}" in out.stdout:
                return
            seen = out.stdout + out.stderr
            time.sleep(1)

    def _head_listens(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def kill_node(self, name: str) -> int:
        """SIGKILL every process of node `name` (its recorded tree); returns how many."""
        node = self.nodes[name]
        total = 0
        for _ in range(3):  # a process spawned while we were killing is caught next pass
            victims = [psutil.Process(pid) for pid in node.pids() if psutil.pid_exists(pid)]
            if not victims:
                break
            for p in victims:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGKILL)
                    self.killed.append(p.pid)
            psutil.wait_procs(victims, timeout=10)
            total += len(victims)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.proc.wait(5)
        return total

    def shutdown(self) -> None:
        """Kill every node we started, workers first."""
        for name in reversed(list(self.nodes)):
            self.kill_node(name)
        shutil.rmtree(self.temp, ignore_errors=True)

    def run(self, *args: str, check: bool = True, timeout: float = 240) -> Any:
        """Run the driver script with `args` as a new process attached to the cluster."""
        done = subprocess.run(
            [sys.executable, str(self.driver), str(self.root), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        if check:
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        return done

    def start_driver(self, *args: str) -> subprocess.Popen[str]:
        """The driver script with `args`, left running (the caller waits for it)."""
        return subprocess.Popen(
            [sys.executable, str(self.driver), str(self.root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )

    def result(self, *args: str) -> Any:
        """The driver's JSON answer (its line starting with RESULT)."""
        out = self.run(*args).stdout
        return json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
