"""Driver for test_compute_cluster: a new process attached to the cluster in RAY_ADDRESS,
answering one JSON line `RESULT {...}`.

    compute_driver.py ROOT alive          how many Ray nodes are alive
    compute_driver.py ROOT gpu N          N instances whose middle step asks for a GPU
    compute_driver.py ROOT infeasible     a step asking for 2 GPUs; a workflow limited to no node
    compute_driver.py ROOT big            a 50 MiB result made at home, read by a GPU-node step
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import ray

import raydo


def where() -> dict[str, Any]:
    """Where this code runs: the Ray node, its storage folder, the GPUs Ray gave it."""
    return {
        "ray_node": ray.get_runtime_context().get_node_id(),
        "storage": os.environ.get("RAYDO_NODE_STORAGE"),
        "gpus": [str(g) for g in ray.get_gpu_ids()],
    }


class GpuWork(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        before = await step.do("prepare", where)
        trained = await step.do("train", where, resources={"num_gpus": 1})
        after = await step.do("report", lambda: {"trained on": trained["ray_node"], **where()})
        return {"prepare": before, "train": trained, "report": after}


class TooBig(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        request = {"num_gpus": 2, "infeasible_after": 2}
        return await step.do("train", where, resources=request, retries={"limit": 0})


class BigData(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        data = await step.do("make", lambda: os.urandom(50 << 20))

        def digest() -> dict[str, Any]:
            return {"sha": hashlib.sha256(data).hexdigest(), "len": len(data), **where()}

        remote = await step.do("digest", digest, resources={"num_gpus": 1})
        return {"made": hashlib.sha256(data).hexdigest(), "read": remote}


def main() -> None:
    root, mode, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if mode == "alive":
        ray.init()
        print("ALIVE", sum(1 for n in ray.nodes() if n["Alive"]), flush=True)
        return
    raydo.init(root / "driver-storage")
    small = {"concurrency": 2, "warm": 0}
    answer: Any
    if mode == "gpu":
        wf = raydo.workflow(GpuWork, name="gpuwork", **small)
        insts = [wf.create(id=f"g{n}").result() for n in range(int(args[0]))]
        done = wf.wait_all(insts, timeout=240).result()
        answer = {s.id: {"status": s.status, "output": s.output} for s in done}
        answer["homes"] = wf.actor.homes
        answer["nodes"] = {n.node: n.ray_node for n in wf.actor.view.nodes.values()}
    elif mode == "infeasible":
        inst = raydo.workflow(TooBig, name="toobig", **small).create().result()
        st = inst.wait(timeout=240).result()
        answer = {"status": st.status, "error": st.error.model_dump() if st.error else None}
        nowhere = raydo.workflow(GpuWork, name="nowhere", node_labels={"zone": "mars"}, **small)
        try:
            nowhere.create().result()
        except raydo.NoEligibleNodeError as exc:
            answer["create"] = {"name": type(exc).__name__, "message": str(exc)}
    else:
        wf = raydo.workflow(BigData, name="bigdata", **small)
        st = wf.create(id="big").result().wait(timeout=240).result()
        answer = {"status": st.status, "output": st.output, "home": wf.actor.homes["big"]}
        answer["nodes"] = {n.node: n.ray_node for n in wf.actor.view.nodes.values()}
    print("RESULT " + json.dumps(answer), flush=True)
    raydo.shutdown()


if __name__ == "__main__":
    main()
