"""Driver for test_multinode: every call is a new process attached to the cluster in
RAY_ADDRESS (a second, third... driver), answering one JSON line `RESULT {...}`.

    multinode_driver.py ROOT alive                  how many Ray nodes are alive
    multinode_driver.py ROOT solo N                 create N instances while there is one node
    multinode_driver.py ROOT place N                create N instances of `where`, wait for all
    multinode_driver.py ROOT lookup ID...           statuses and controls by id from a new driver
    multinode_driver.py ROOT labels                 workflows limited to a node label
    multinode_driver.py ROOT backup                 back up every node (ROOT/backups/<node>)
    multinode_driver.py ROOT start N [PREFIX]       create N instances of `slow` and exit
    multinode_driver.py ROOT statuses ID...         status and error of each
    multinode_driver.py ROOT watch ID...            poll statuses until all complete (long-lived)
    multinode_driver.py ROOT wait ID...             wait for each to finish
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import ray

import raydo


def where() -> dict[str, Any]:
    """Where this code runs: the Ray node and the storage folder of that node."""
    return {
        "ray_node": ray.get_runtime_context().get_node_id(),
        "storage": os.environ.get("RAYDO_NODE_STORAGE"),
    }


class Where(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        first = await step.do("first", where)
        await step.sleep("nap", "1 second")  # hibernates: the node's timer actor wakes it
        await step.do("second", lambda: event.payload)
        return {"first": first, "third": await step.do("third", where)}


class Slow(raydo.WorkflowEntrypoint):
    """Six steps of ~0.4 s; every attempt's start and end go to a ledger on the shared disk
    (outside raydo), so a step that ran twice is visible whatever raydo says."""

    async def run(self, event: Any, step: Any) -> Any:
        ledger = Path(event.payload["ledger"])
        seen = []
        for k in range(6):
            seen.append(await step.do(f"s{k}", _attempt(ledger, event.instance_id, f"s{k}")))
        return seen


def _attempt(ledger: Path, iid: str, name: str) -> Any:
    async def run() -> dict[str, Any]:
        _log(ledger, {"id": iid, "step": name, "at": "start"})
        await asyncio.sleep(0.4)
        here = where()
        _log(ledger, {"id": iid, "step": name, "at": "end", **here})
        return here

    return run


def _log(ledger: Path, row: dict[str, Any]) -> None:
    with open(ledger, "a") as f:  # one short line per write: appends do not interleave
        f.write(json.dumps(row) + "\n")


def main() -> None:
    root, mode, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if mode == "alive":
        ray.init()
        print("ALIVE", sum(1 for n in ray.nodes() if n["Alive"]), flush=True)
        return
    raydo.init(root / "driver-storage")
    small = {"concurrency": 1, "warm": 0}
    answer: Any
    if mode == "place":
        wf = raydo.workflow(Where, name="where", **small)
        insts = [wf.create(id=f"p{n}", params=n).result() for n in range(int(args[0]))]
        done = wf.wait_all(insts, timeout=180).result()
        homes = wf.actor.homes
        nodes = {n.node: n.ray_node for n in wf.actor.view.nodes.values()}
        answer = {
            s.id: {"output": s.output, "home": homes[s.id], "home_ray": nodes[homes[s.id]]}
            for s in done
        }
        answer["actors"] = _raydo_actors(wf)
    elif mode == "solo":  # on a cluster of one node, before the others join
        wf = raydo.workflow(Where, name="where", **small)
        insts = [wf.create(id=f"o{n}", params=n).result() for n in range(int(args[0]))]
        done = wf.wait_all(insts, timeout=180).result()
        answer = {
            "routed": hasattr(wf.actor, "homes"),
            "done": {s.id: s.status for s in done},
            "ray_nodes": sorted({s.output["first"]["ray_node"] for s in done}),
        }
    elif mode == "labels":  # a workflow limited to nodes with a label
        zoned = raydo.workflow(Where, name="zoned", node_labels={"raydo-node": "n2"}, **small)
        insts = [zoned.create(params=n).result() for n in range(4)]
        done = zoned.wait_all(insts, timeout=180).result()
        answer = {"ran": sorted({s.output["first"]["storage"] for s in done})}
        nowhere = raydo.workflow(Where, name="nowhere", node_labels={"zone": "mars"}, **small)
        try:
            nowhere.create(params=0).result()
        except raydo.NoEligibleNodeError as exc:
            answer["refused"] = str(exc)
    elif mode == "backup":
        answer = [vars(b) for b in raydo.backup(root / "backups")]
    elif mode == "lookup":
        answer = lookup(raydo.workflow(Where, name="where", **small), args)
    elif mode == "start":
        wf = raydo.workflow(Slow, name="slow", **small)
        ledger = str(root / "ledger.jsonl")
        prefix = args[1] if len(args) > 1 else "s"
        for n in range(int(args[0])):
            wf.create(id=f"{prefix}{n}", params={"ledger": ledger}).result()
        answer = {"homes": wf.actor.homes, "nodes": _nodes(wf)}
    elif mode == "watch":  # one long-lived driver, polling through a node's loss and return
        answer = watch(raydo.workflow(Slow, name="slow", **small), args, root / "watch.jsonl")
    elif mode == "statuses":
        wf = raydo.workflow(Slow, name="slow", **small)
        answer = {iid: _status(wf, iid) for iid in args}
        answer["nodes"] = _nodes(wf)
    else:
        wf = raydo.workflow(Slow, name="slow", **small)
        answer = {iid: wf.get(iid).result().wait(timeout=180).result().status for iid in args}
    print("RESULT " + json.dumps(answer), flush=True)
    raydo.shutdown()  # joined, not started: the cluster and raydo's actors keep running


def lookup(wf: Any, ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for iid in ids:
        inst = wf.get(iid).result()
        out[iid] = {"status": inst.status().result().status, "home": wf.actor.homes[iid]}
    # controls from this driver reach the home: restart one, wait for it again
    again = wf.get(ids[0]).result()
    again.restart().result()
    out["restarted"] = again.wait(timeout=120).result().output["first"]
    try:
        wf.get("nobody").result()
    except raydo.InstanceNotFoundError as exc:
        out["missing"] = str(exc)
    out["listed"] = sorted(s.id for s in wf.instances().result())
    out["counts"] = wf.counts().result()
    paged, cursor = [], None  # pages of 4 across the three nodes, oldest first
    while True:
        page = wf.list_instances(limit=4, cursor=cursor, reverse=True).result()
        paged += [s.id for s in page.instances]
        if page.cursor is None:
            break
        cursor = page.cursor
    out["paged"] = paged
    out["params"] = wf.get(ids[2]).result().params().result()
    try:  # taken: refused whichever node the id's home is
        wf.create(id=ids[1], params=0).result()
        out["duplicate"] = "created again"
    except raydo.InstanceExistsError as exc:
        out["duplicate"] = str(exc)
    return out


def _raydo_actors(wf: Any) -> list[dict[str, str]]:
    """Every live raydo namespace and timer actor of the cluster: its name, the Ray node it
    runs on, and the Ray node of the raydo node its name belongs to."""
    by_key = {n.key: n.ray_node for n in wf.actor.view.nodes.values()}
    out = []
    for actor in ray._private.state.actors().values():  # GCS's table: no dashboard needed
        name = actor.get("Name") or ""
        if actor["State"] == "ALIVE" and name.startswith(("ns:", "timers:")):
            key = name.split(":")[1]
            out.append({"name": name, "on": actor["Address"]["NodeID"], "home": by_key[key]})
    return out


def watch(wf: Any, ids: list[str], out: Path) -> dict[str, Any]:
    """Poll every id's status until all are complete, writing (poll start, end, id, status)."""
    handles = {iid: wf.get(iid).result() for iid in ids}
    deadline = time.time() + 400
    with open(out, "a") as f:
        while time.time() < deadline:
            done = 0
            for iid, inst in handles.items():
                t0 = time.time()
                try:
                    status = inst.status().result(timeout=30).status
                except raydo.RaydoError as exc:
                    status = type(exc).__name__
                f.write(json.dumps([t0, time.time(), iid, status]) + "\n")
                f.flush()
                done += status == "complete"
            if done == len(ids):
                return {"complete": True}
            time.sleep(0.2)
    return {"complete": False}


def _status(wf: Any, iid: str) -> dict[str, Any]:
    st = wf.get(iid).result().status().result()
    return {"status": st.status, "error": st.error.message if st.error else None}


def _nodes(wf: Any) -> dict[str, Any]:
    view = wf.actor.view
    return {
        n.node: {"ray": n.ray_node, "up": view.is_up(n), **n.labels} for n in view.nodes.values()
    }


if __name__ == "__main__":
    try:
        main()
    except raydo.RaydoError as exc:
        print("RESULT " + json.dumps({"error": type(exc).__name__, "message": str(exc)}))
