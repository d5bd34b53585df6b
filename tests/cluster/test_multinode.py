"""raydo on a real 3-node Ray cluster on this machine (tests/cluster/multinode.py): placement,
spread, lookups and controls from other drivers, and the loss of a node mid-run.

Each node is its own `ray start` with its own storage folder; every check of where data lives
reads the nodes' LMDB folders directly. The cluster is torn down (pids we recorded) at the end."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from multinode import LocalCluster

from raydo import restore
from raydo.runtime.placement import node_id
from raydo.storage.instances import InstanceStore, storage_identity
from raydo.storage.kv import close, open_lmdb
from raydo.storage.records import StepState

pytestmark = [
    pytest.mark.ray,
    pytest.mark.cluster,
    pytest.mark.timeout(600),
    pytest.mark.extended,
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("multinode"))
    try:
        c.start_node("n1", head=True)
        c.wait_nodes(1)
        c.solo = c.result("solo", "3")  # type: ignore[attr-defined]
        c.start_node("n2")
        c.start_node("n3")
        c.wait_nodes(3)
        yield c
    finally:
        c.shutdown()


def _read(folder: Path, workflow: str) -> tuple[str, InstanceStore]:
    """A node's raydo id and its store, read from its folder (from this test process)."""
    kv = open_lmdb(str(folder))
    return node_id(storage_identity(kv)), InstanceStore(kv, workflow)


def _ids(folder: Path, workflow: str) -> list[str]:
    return sorted(r.id for r in _read(folder, workflow)[1].records())


def _storage_of(cluster: LocalCluster) -> dict[str, Path]:
    """raydo node id -> its storage folder."""
    return {_read(node.storage, "where")[0]: node.storage for node in cluster.nodes.values()}


def test_instances_live_and_run_on_their_home_node_only(cluster: LocalCluster) -> None:
    placed = cluster.result("place", "9")
    actors = placed.pop("actors")
    folders = _storage_of(cluster)
    homes = Counter(info["home"] for info in placed.values())
    # a namespace actor per node; a timer actor per node that homes a sleeper (these 9, and the
    # head's: the `solo` sleepers homed there before the others joined); each on its node
    kinds = Counter(a["name"].split(":")[0] for a in actors)
    assert kinds["ns"] == 3, actors
    (head,) = cluster.solo["ray_nodes"]  # type: ignore[attr-defined]
    timer_nodes = Counter(a["home"] for a in actors if a["name"].startswith("timers:"))
    assert timer_nodes == Counter({info["home_ray"] for info in placed.values()} | {head}), actors
    assert all(a["on"] == a["home"] for a in actors), actors
    assert len(homes) >= 2, f"9 instances all on one node: {homes}"
    for iid, info in placed.items():
        home_folder = folders[info["home"]]
        for step in ("first", "third"):  # both ran in the home node's processes
            ran = info["output"][step]
            assert ran == {"ray_node": info["home_ray"], "storage": str(home_folder)}, iid
        for node, folder in folders.items():  # its records exist in its home's LMDB only
            record = _read(folder, "where")[1].get(iid)
            assert (record is not None) == (node == info["home"]), (iid, node)
    print(f"\nplacement: 9 instances over {len(homes)} nodes {sorted(homes.values())}")


def test_a_single_node_grows_into_a_cluster(cluster: LocalCluster) -> None:
    """Instances made while the cluster had one node (today's single-node path, no router)
    live in that node's own folder and are found once two more nodes have joined."""
    solo = cluster.solo  # type: ignore[attr-defined]
    assert solo["routed"] is False and len(solo["ray_nodes"]) == 1, solo
    assert solo["done"] == {"o0": "complete", "o1": "complete", "o2": "complete"}
    found = cluster.result("lookup", "o0", "o1", "o2")
    n1 = _read(cluster.nodes["n1"].storage, "where")
    for iid in ("o0", "o1", "o2"):
        assert found[iid] == {"status": "complete", "home": n1[0]}
        assert n1[1].get(iid) is not None
    assert not (cluster.root / "driver-storage" / "data.mdb").exists() or not _ids(
        cluster.root / "driver-storage", "where"
    )


def test_lookups_and_controls_from_another_driver(cluster: LocalCluster) -> None:
    if not (cluster.root / "storage" / "n1").exists():
        cluster.result("place", "9")
    found = cluster.result("lookup", "p0", "p1", "p2", "p3")
    folders = _storage_of(cluster)
    for iid in ("p0", "p1", "p2", "p3"):
        assert found[iid]["status"] == "complete"
        assert _read(folders[found[iid]["home"]], "where")[1].get(iid) is not None
    assert found["restarted"]["storage"] == str(folders[found["p0"]["home"]])
    assert "does not exist on any of the 3 raydo nodes" in found["missing"]
    assert {f"p{n}" for n in range(9)} <= set(found["listed"])
    assert found["counts"]["complete"] == len(found["listed"])
    # oldest first, across the nodes: the single-node ones came first
    assert found["paged"] == ["o0", "o1", "o2", *(f"p{n}" for n in range(9))]
    assert found["params"] == 2
    assert "already exists" in found["duplicate"]


def test_a_workflow_limited_to_a_label(cluster: LocalCluster) -> None:
    answer = cluster.result("labels")
    assert answer["ran"] == [str(cluster.nodes["n2"].storage)]  # every instance, only there
    assert "{'zone': 'mars'}" in answer["refused"] and "no alive raydo node" in answer["refused"]


def test_backup_of_every_node_while_running(cluster: LocalCluster) -> None:
    taken = cluster.result("backup")
    folders = _storage_of(cluster)
    assert sorted(b["node"] for b in taken) == sorted(folders)
    for b in taken:
        assert b["error"] is None and b["folder"] == str(cluster.root / "backups" / b["node"])
        copy = Path(b["folder"])
        assert stat.S_IMODE(copy.stat().st_mode) == 0o700
        assert stat.S_IMODE((copy / "data.mdb").stat().st_mode) == 0o600
        restored = cluster.root / "restored" / b["node"]
        restore(str(copy), str(restored))
        # each node's own instances, no others
        assert _ids(restored, "where") == _ids(folders[b["node"]], "where")
        assert _read(restored, "where")[0] == b["node"]  # the same raydo node


def test_node_loss_and_return(cluster: LocalCluster) -> None:
    ids = [f"s{n}" for n in range(8)]
    started = cluster.result("start", str(len(ids)))
    homes: dict[str, str] = started["homes"]
    by_label = {info["raydo-node"]: node for node, info in started["nodes"].items()}
    victim = max(("n2", "n3"), key=lambda name: sum(h == by_label[name] for h in homes.values()))
    lost_node = by_label[victim]
    lost = [iid for iid in ids if homes[iid] == lost_node]
    kept = [iid for iid in ids if iid not in lost]
    assert lost, f"no instance homed on {victim}: {homes}"
    watcher = cluster.start_driver("watch", *ids)  # holds its handles through loss and return
    try:
        _lose_and_regain(cluster, victim, ids, lost, kept, watcher)
    finally:
        if watcher.poll() is None:
            watcher.kill()  # a process this test started
            watcher.wait()


def _lose_and_regain(
    cluster: LocalCluster,
    victim: str,
    ids: list[str],
    lost: list[str],
    kept: list[str],
    watcher: subprocess.Popen[str],
) -> None:
    lost_node = _read(cluster.nodes[victim].storage, "slow")[0]
    ledger = cluster.root / "ledger.jsonl"
    _wait_for(lambda: _ended(ledger, lost) >= 2, "two steps of the lost node's instances")

    killed = cluster.kill_node(victim)
    killed_at = time.time()
    cluster.wait_nodes(2)
    finished_before = _finished_steps(cluster.nodes[victim].storage, lost)

    # the others finish untouched while the node is gone
    assert set(cluster.result("wait", *kept).values()) == {"complete"}
    down = cluster.result("statuses", *lost)
    for iid in lost:
        assert down.get(iid, {}).get("status") == "unknown", down
        assert lost_node in down[iid]["error"] and "dead" in down[iid]["error"], down[iid]

    back_at = time.time()
    cluster.start_node(victim)  # back, with the same storage folder, under a new Ray node id
    cluster.wait_nodes(3)
    assert set(cluster.result("wait", *lost).values()) == {"complete"}
    assert watcher.wait(timeout=300) == 0 and '"complete": true' in watcher.stdout.read()
    polls = [json.loads(line) for line in (cluster.root / "watch.jsonl").read_text().splitlines()]
    while_down = Counter(
        (iid in lost, status) for t0, _, iid, status in polls if killed_at < t0 < back_at
    )
    # asked while the node was down: the lost ones are unknown (never running), the rest not
    assert {status for (is_lost, status) in while_down if is_lost} == {"unknown"}, while_down
    assert "unknown" not in {status for (is_lost, status) in while_down if not is_lost}
    seen_after = {iid: st for t0, _, iid, st in polls if t0 > back_at and iid in lost}
    assert set(seen_after.values()) == {"complete"}, seen_after  # the same driver, resumed
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    starts = Counter((r["id"], r["step"]) for r in rows if r["at"] == "start")
    again = [key for key in finished_before if starts[key] != 1]
    assert again == [], f"finished steps that ran again: {again}"
    for row in rows:
        if row["at"] == "end" and row["id"] in lost:
            assert row["storage"] == str(cluster.nodes[victim].storage), row
    for iid in ids:
        assert all(starts[(iid, f"s{k}")] >= 1 for k in range(6)), iid
    rerun = sum(n - 1 for (iid, _), n in starts.items() if iid in lost)
    print(
        f"\nnode loss: {killed} processes of {victim} SIGKILLed; {len(ids)} instances, "
        f"{len(lost)} homed there reported unknown, {len(kept)} elsewhere completed meanwhile; "
        f"{len(finished_before)} steps finished before the loss ran again 0 times; "
        f"{rerun} unfinished attempts ran again; all {len(ids)} complete"
    )


def test_whole_cluster_restart(cluster: LocalCluster) -> None:
    """Every node SIGKILLed mid-run (head included: Ray's GCS and its registry go too), then
    all started again on their storage folders: everything resumes."""
    ids = [f"w{n}" for n in range(6)]
    (cluster.root / "ledger.jsonl").unlink(missing_ok=True)
    cluster.result("start", str(len(ids)), "w")
    ledger = cluster.root / "ledger.jsonl"
    _wait_for(lambda: _ended(ledger, ids) >= 3, "three finished steps")
    killed = sum(cluster.kill_node(name) for name in ("n3", "n2", "n1"))
    finished = set().union(*(_finished_steps(n.storage, ids) for n in cluster.nodes.values()))
    cluster.start_node("n1", head=True)
    cluster.wait_nodes(1)
    cluster.start_node("n2")
    cluster.start_node("n3")
    cluster.wait_nodes(3)
    assert set(cluster.result("wait", *ids).values()) == {"complete"}
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    starts = Counter((r["id"], r["step"]) for r in rows if r["at"] == "start")
    assert [key for key in finished if starts[key] != 1] == []
    print(
        f"\nwhole cluster: {killed} processes SIGKILLed; {len(ids)} instances complete after "
        f"the restart; {len(finished)} finished steps ran again 0 times"
    )


def _finished_steps(folder: Path, ids: list[str]) -> set[tuple[str, str]]:
    """The steps recorded complete in the lost node's storage (read with the node down)."""
    store = _read(folder, "slow")[1]
    done = {
        (iid, name)
        for iid in ids
        for (name, _), step in store.steps(iid).items()
        if step.state is StepState.DONE
    }
    close(str(folder))  # the node opens it again when it is back
    return done


def _ended(ledger: Path, ids: list[str]) -> int:
    if not ledger.exists():
        return 0
    rows = [json.loads(line) for line in ledger.read_text().splitlines()]
    return sum(1 for r in rows if r["at"] == "end" and r["id"] in ids)


def _wait_for(condition: Any, what: str, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
