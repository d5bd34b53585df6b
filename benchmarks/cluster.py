"""3-step instances per second on a local cluster of 1, 2 or 3 Ray nodes, and the CPU each node
spends per instance homed on it (issue 8). Not a test: run it by hand.

    .venv/bin/python benchmarks/cluster.py                      # 1 and 3 nodes, 300 instances
    .venv/bin/python benchmarks/cluster.py --nodes 1,2,3 --instances 600 --concurrency 2
    .venv/bin/python benchmarks/cluster.py --batch 1    # one create() call per instance

Each node is its own `ray start` (num_cpus=1, own temp dir and storage folder), started and
SIGKILLed by this script exactly as tests/cluster does (tests/cluster/multinode.py). One driver
process creates the instances with create_batch (generated ids, 100 per batch), after a warm-up
that starts every node's namespace and instance actors, and waits for each batch. On this 2-core
machine absolute throughput cannot grow with nodes; what must not grow is the CPU per instance
on each node.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests" / "cluster"))

from multinode import LocalCluster  # noqa: E402

DRIVER = HERE / "cluster_driver.py"


def measure(nodes: int, instances: int, concurrency: int, batch: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="raydo-bench-cluster-"))
    cluster = LocalCluster(root)
    try:
        for k in range(nodes):
            cluster.start_node(f"n{k + 1}", head=k == 0)
            cluster.wait_nodes(k + 1)
        pids = {name: node.proc.pid for name, node in cluster.nodes.items()}
        env = {**cluster.env, "BENCH_NODE_PIDS": json.dumps(pids)}
        done = subprocess.run(
            [sys.executable, str(DRIVER), str(root), str(instances), str(concurrency), str(batch)],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        if done.returncode != 0:
            raise SystemExit(done.stdout[-2000:] + done.stderr[-4000:])
        return dict(json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0]))
    finally:
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,3")
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100, help="create_batch size; 1: create()")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for n in (int(x) for x in args.nodes.split(",")):
        r = measure(n, args.instances, args.concurrency, args.batch)
        per_node = ", ".join(
            f"{name}: {v['instances']} inst, {v['cpu_ms_per_instance']:.1f} ms CPU/inst "
            f"({v['net_cpu_ms_per_instance']:.1f} net of {v['idle_cpu_percent']:.0f}% idle)"
            for name, v in r["nodes"].items()
        )
        print(
            f"{n} node(s): {r['per_second']:.0f} 3-step instances/s ({r['instances']} in "
            f"{r['seconds']:.1f}s; driver {r['driver_cpu_ms_per_instance']:.1f} ms CPU/inst; "
            f"load {r['load']:.1f}) | {per_node}",
            flush=True,
        )
        for name, v in r["nodes"].items():
            print(f"    {name} CPU ms by process: {v['cpu_ms_by_kind']}")


if __name__ == "__main__":
    main()
