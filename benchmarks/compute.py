"""What a step with `resources=` costs beside an in-actor step (issue 8). Not a test: run by hand.

    .venv/bin/python benchmarks/compute.py                 # 200 steps per kind, 3 instances each
    .venv/bin/python benchmarks/compute.py --steps 50 --repeats 1 --json

One workflow runs a loop of `--steps` durable steps of one kind and returns how long the loop
took (timed inside run(), first step to last); the median of `--repeats` instances per kind, after
a warm-up instance of each kind (so Ray's task workers are started). Kinds:

  in-actor     step.do(name, fn)                                   (sync fn: the step thread pool)
  resources    step.do(name, fn, resources={"num_cpus": 1})        (a Ray task per attempt)

Also printed: a bare Ray task round trip from the driver (`ray.get(f.remote())`), for reference.
raydo runs embedded on a fresh temporary storage with a private local Ray (2 CPUs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

import raydo

KINDS: dict[str, dict[str, Any] | None] = {"in-actor": None, "resources": {"num_cpus": 1}}


def work(i: int) -> int:
    return i


class Loop(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        steps, resources = event.payload["steps"], event.payload["resources"]
        started = time.perf_counter()
        for i in range(steps):
            await step.do(f"s{i}", lambda i=i: work(i), resources=resources)
        return (time.perf_counter() - started) / steps


def per_step(wf: raydo.Workflow, steps: int, resources: dict[str, Any] | None) -> float:
    st = wf.create(params={"steps": steps, "resources": resources}).result().wait(600).result()
    assert st.status == "complete", st.error
    return float(st.output)


def bare_task_round_trip(n: int = 200) -> float:
    task = ray.remote(work).options(num_cpus=1)
    ray.get(task.remote(0))
    started = time.perf_counter()
    for i in range(n):
        ray.get(task.remote(i))
    return (time.perf_counter() - started) / n


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="raydo-bench-compute-"))
    try:
        raydo.init(root / "storage", address="local", num_cpus=2)
        wf = raydo.workflow(Loop, name="loop", concurrency=1)
        result: dict[str, Any] = {"steps": args.steps, "repeats": args.repeats}
        for kind, resources in KINDS.items():
            per_step(wf, min(args.steps, 20), resources)  # warm-up
            runs = [per_step(wf, args.steps, resources) for _ in range(args.repeats)]
            result[f"{kind} ms per step"] = round(statistics.median(runs) * 1000, 3)
        result["bare Ray task round trip ms"] = round(bare_task_round_trip() * 1000, 3)
        result["resources= cost ms per step"] = round(
            result["resources ms per step"] - result["in-actor ms per step"], 3
        )
    finally:
        raydo.shutdown(kill_actors=True)
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>32}: {value}")
    return result


if __name__ == "__main__":
    main()
