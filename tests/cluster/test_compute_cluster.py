"""Compute where the work is, on a real 3-node Ray cluster on this machine (multinode.py): n3 is
a fake GPU node (`ray start --num-gpus=1`). A step with `resources={"num_gpus": 1}` runs there
whatever node its instance is homed on, and its result is recorded in the home node's LMDB; a
request no node can meet fails after its wait, naming the request and what the nodes offer; a
50 MiB result is kept as a blob at home and read back by a step on the GPU node."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from multinode import HERE, LocalCluster

from raydo.runtime.placement import node_id
from raydo.storage.codec import decode
from raydo.storage.instances import InstanceStore, storage_identity
from raydo.storage.kv import open_lmdb

pytestmark = [
    pytest.mark.ray,
    pytest.mark.cluster,
    pytest.mark.timeout(600),
    pytest.mark.extended,
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("compute"), driver=HERE / "compute_driver.py")
    try:
        c.start_node("n1", head=True)
        c.start_node("n2")
        c.start_node("n3", extra=("--num-gpus=1",))
        c.wait_nodes(3)
        yield c
    finally:
        c.shutdown()


def _folders(cluster: LocalCluster) -> dict[str, Path]:
    """raydo node id -> storage folder, read from the folders themselves."""
    return {
        node_id(storage_identity(open_lmdb(str(n.storage)))): n.storage
        for n in cluster.nodes.values()
    }


def test_a_gpu_step_runs_on_the_gpu_node_and_is_recorded_at_home(cluster: LocalCluster) -> None:
    answer = cluster.result("gpu", "6")
    homes, nodes = answer.pop("homes"), answer.pop("nodes")
    folders = _folders(cluster)
    gpu_storage = str(cluster.nodes["n3"].storage)
    assert len(set(homes.values())) >= 2, f"6 instances all homed on one node: {homes}"
    for iid, info in answer.items():
        assert info["status"] == "complete", info
        out, home = info["output"], homes[iid]
        assert out["train"]["storage"] == gpu_storage and out["train"]["gpus"] == ["0"], iid
        for step in ("prepare", "report"):  # in-actor steps ran at home
            assert out[step]["ray_node"] == nodes[home], (iid, step)
            assert out[step]["storage"] == str(folders[home]), (iid, step)
        store = InstanceStore(open_lmdb(str(folders[home])), "gpuwork")
        recorded = store.steps(iid)[("train", 1)]
        assert recorded.value is not None and decode(recorded.value) == out["train"]
    spread = Counter(homes.values())
    print(f"\ngpu steps: 6 instances homed over {len(spread)} nodes, every GPU step ran on n3")


def test_an_infeasible_request_and_a_label_no_node_has(cluster: LocalCluster) -> None:
    answer = cluster.result("infeasible")
    assert answer["status"] == "errored"
    error = answer["error"]
    assert error["name"] == "InfeasibleResourcesError", error
    assert "'num_gpus': 2.0" in error["message"] and "waited 2 s" in error["message"]
    assert error["message"].count("'CPU': 1.0") == 3, error  # three nodes offered
    assert error["message"].count("'GPU': 1.0") == 1, error
    assert answer["create"]["name"] == "NoEligibleNodeError", answer
    assert "{'zone': 'mars'}" in answer["create"]["message"]


def test_a_50_mib_result_is_a_blob_at_home_read_on_another_node(cluster: LocalCluster) -> None:
    answer = cluster.result("big")
    assert answer["status"] == "complete", answer
    out = answer["output"]
    assert out["read"]["len"] == 50 << 20 and out["read"]["sha"] == out["made"]
    assert out["read"]["storage"] == str(cluster.nodes["n3"].storage)
    home = _folders(cluster)[answer["home"]]
    blobs = [p for p in (home / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1 and blobs[0].stat().st_size > 50 << 20, blobs
    assert oct(blobs[0].stat().st_mode & 0o777) == "0o600"
