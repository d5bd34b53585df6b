"""The driver of benchmarks/cluster.py: ROOT INSTANCES CONCURRENCY BATCH; node pids in
$BENCH_NODE_PIDS. Prints one line `RESULT {json}`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil

import raydo

IDLE_SECONDS = 3.0


class ThreeSteps(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        a = await step.do("a", lambda: 1)
        b = await step.do("b", lambda: a + 1)
        return await step.do("c", lambda: b + 1)


def cpu_of(pid: int) -> float:
    return sum(cpu_by_kind(pid).values())


def cpu_by_kind(pid: int) -> dict[str, float]:
    """CPU seconds of a process tree (the processes alive now), by kind of process: Ray names
    its workers `ray::<actor class>`; the rest by executable (raylet, gcs_server, ...)."""
    found: dict[str, float] = {}
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                title = (p.cmdline() or [p.name()])[0]
                kind = title.split()[0] if title.startswith("ray::") else p.name()
                found[kind] = found.get(kind, 0.0) + t.user + t.system
            except psutil.NoSuchProcess:
                continue
    except psutil.NoSuchProcess:
        pass
    return found


def homes_of(wf: Any, ids: list[str], only: str) -> dict[str, int]:
    actor = wf.actor
    if not hasattr(actor, "homes"):
        return {only: len(ids)}
    labels = {n.node: n.labels.get("raydo-node", n.node) for n in actor.view.nodes.values()}
    counts: dict[str, int] = {}
    for iid in ids:
        name = labels[actor.homes[iid]]
        counts[name] = counts.get(name, 0) + 1
    return counts


def main() -> None:
    root, total, concurrency = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    batch = int(sys.argv[4])
    pids: dict[str, int] = json.loads(os.environ["BENCH_NODE_PIDS"])
    raydo.init(root / "driver-storage")
    wf = raydo.workflow(ThreeSteps, name="three", concurrency=concurrency, warm=concurrency)
    warm = wf.create_batch([{} for _ in range(10 * len(pids))]).result()
    wf.wait_all(warm, timeout=300).result()
    idle = {name: cpu_of(pid) for name, pid in pids.items()}
    time.sleep(IDLE_SECONDS)  # what each node burns doing nothing, to tell apart from the work
    before = {name: cpu_of(pid) for name, pid in pids.items()}
    kinds_before = {name: cpu_by_kind(pid) for name, pid in pids.items()}
    idle_rate = {name: (before[name] - idle[name]) / IDLE_SECONDS for name in pids}
    me = psutil.Process()
    mine = me.cpu_times().user + me.cpu_times().system
    start = time.perf_counter()
    if batch == 1:  # one create call per instance, all sent before the first answer
        handles = [p.result() for p in [wf.create() for _ in range(total)]]
    else:
        batches = [
            wf.create_batch([{} for _ in range(min(batch, total - k))])
            for k in range(0, total, batch)
        ]
        handles = [h for b in batches for h in b.result()]
    for k in range(0, len(handles), 100):
        wf.wait_all(handles[k : k + 100], timeout=600).result()
    seconds = time.perf_counter() - start
    used = {name: cpu_of(pid) - before[name] for name, pid in pids.items()}
    kinds = {}
    for name, pid in pids.items():
        after = cpu_by_kind(pid)
        kinds[name] = {
            k: round(1000 * (v - kinds_before[name].get(k, 0.0)), 1)
            for k, v in sorted(after.items())
            if v - kinds_before[name].get(k, 0.0) > 0.005
        }
    mine = me.cpu_times().user + me.cpu_times().system - mine
    homes = homes_of(wf, [h.id for h in handles], next(iter(pids)))
    nodes = {
        name: {
            "instances": homes.get(name, 0),
            "cpu_ms_per_instance": 1000 * used[name] / max(1, homes.get(name, 0)),
            "net_cpu_ms_per_instance": 1000
            * (used[name] - idle_rate[name] * seconds)
            / max(1, homes.get(name, 0)),
            "idle_cpu_percent": 100 * idle_rate[name],
            "cpu_ms_by_kind": kinds[name],
        }
        for name in pids
    }
    result = {
        "instances": total,
        "seconds": seconds,
        "per_second": total / seconds,
        "driver_cpu_ms_per_instance": 1000 * mine / total,
        "load": os.getloadavg()[0],
        "nodes": nodes,
    }
    print("RESULT " + json.dumps(result), flush=True)
    raydo.shutdown()


if __name__ == "__main__":
    main()
