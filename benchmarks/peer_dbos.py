"""The peer, measured on the same disk as raydo: DBOS Transact on SQLite (its default system
database), doing what benchmarks/bench.py makes raydo do.

- per step: one workflow runs n trivial steps one after another (sync steps, then async
  steps); the figure is the time inside the workflow divided by n (bench.py figure 1).
- 3-step workflows per second: `--instances` workflows of three trivial sync steps, started at
  once and waited for (bench.py figure 2).

DBOS is not a raydo dependency: run this in a virtual environment of its own, e.g.

    python3 -m venv /tmp/dbos-venv && /tmp/dbos-venv/bin/pip install dbos==3.4.0
    /tmp/dbos-venv/bin/python benchmarks/peer_dbos.py

and run `benchmarks/bench.py` beside it (the disk's speed changes from day to day; compare
figures of the same hour only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from typing import Any

from dbos import DBOS, DBOSConfig


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=1000, help="steps per per-step workflow")
    p.add_argument("--repeats", type=int, default=3, help="per-step workflows of each kind")
    p.add_argument("--instances", type=int, default=1000, help="3-step workflows")
    p.add_argument(
        "--threads", type=int, default=4, help="DBOS max_executor_threads (4: its best here)"
    )
    p.add_argument(
        "--storage-root", default=tempfile.gettempdir(), help="where the SQLite file goes"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args()


ARGS = parse_args()
FOLDER = tempfile.mkdtemp(prefix="dbos-bench-", dir=ARGS.storage_root)
config: DBOSConfig = {
    "name": "peer-bench",
    "system_database_url": f"sqlite:///{os.path.join(FOLDER, 'dbos.sqlite')}",
    "max_executor_threads": ARGS.threads,
    "run_admin_server": False,
}
DBOS(config=config)


@DBOS.step()
def sync_step(i: int) -> int:
    return i


@DBOS.step()
async def async_step(i: int) -> int:
    return i


@DBOS.workflow()
def sync_loop(n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        sync_step(i)
    return time.perf_counter() - t0


@DBOS.workflow()
async def async_loop(n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        await async_step(i)
    return time.perf_counter() - t0


@DBOS.workflow()
def three() -> int:
    return sync_step(1) + sync_step(2) + sync_step(3)


def disk_counts() -> tuple[int, int] | None:
    """(write requests, flushes) so far of the block device holding FOLDER, if Linux says."""
    dev = os.stat(FOLDER).st_dev
    try:
        with open(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat") as f:
            fields = f.read().split()
    except OSError:
        return None
    return int(fields[4]), int(fields[15]) if len(fields) > 15 else 0


def per_step(kind: str) -> dict[str, Any]:
    n = ARGS.steps
    loop = sync_loop if kind == "sync" else (lambda k: asyncio.run(async_loop(k)))
    loop(min(n, 50))  # warm-up
    before = disk_counts()
    inside = [loop(n) for _ in range(ARGS.repeats)]
    after = disk_counts()
    per = [t / n * 1e6 for t in inside]
    out: dict[str, Any] = {
        "per_step_us": statistics.median(per),
        "runs_us": [round(x) for x in per],
    }
    if before is not None and after is not None:
        steps = n * ARGS.repeats
        out["device_writes_per_step"] = (after[0] - before[0]) / steps
        out["flushes_per_step"] = (after[1] - before[1]) / steps
    return out


def throughput() -> dict[str, Any]:
    for h in [DBOS.start_workflow(three) for _ in range(20)]:  # warm-up
        h.get_result()
    t0 = time.perf_counter()
    handles = [DBOS.start_workflow(three) for _ in range(ARGS.instances)]
    results = [h.get_result() for h in handles]
    elapsed = time.perf_counter() - t0
    assert results == [6] * ARGS.instances
    return {
        "instances": ARGS.instances,
        "elapsed_s": elapsed,
        "per_second": ARGS.instances / elapsed,
    }


def main() -> None:
    DBOS.launch()
    try:
        out = {
            "dbos": version("dbos"),
            "sync_steps": per_step("sync"),
            "async_steps": per_step("async"),
            "three_step": throughput(),
        }
    finally:
        DBOS.destroy()
        shutil.rmtree(FOLDER, ignore_errors=True)
    if ARGS.json:
        print(json.dumps(out, indent=2))
        return
    print(f"DBOS {out['dbos']} on SQLite under {ARGS.storage_root}", file=sys.stderr)
    for kind in ("sync", "async"):
        r = out[f"{kind}_steps"]
        disk = ""
        if "flushes_per_step" in r:
            disk = f"  ({r['device_writes_per_step']:.1f} device writes, "
            disk += f"{r['flushes_per_step']:.2f} flushes per step)"
        print(f"per {kind} step {r['per_step_us']:8.0f} us {r['runs_us']}{disk}")
    t = out["three_step"]
    print(f"3-step workflows {t['per_second']:.1f}/s ({t['instances']} in {t['elapsed_s']:.1f} s)")


if __name__ == "__main__":
    main()
