"""The home rule (rendezvous hashing) and node identities, without Ray."""

from __future__ import annotations

from collections import Counter

from raydo.runtime.placement import NodeInfo, home_of, matches, node_id


def test_every_process_computes_the_same_home_whatever_the_node_order() -> None:
    nodes = ["node-a", "node-b", "node-c"]
    for n in range(200):
        assert home_of(f"i{n}", nodes) == home_of(f"i{n}", list(reversed(nodes)))


def test_homes_spread_evenly() -> None:
    homes = Counter(home_of(f"order-{n}", ["node-a", "node-b", "node-c"]) for n in range(3000))
    assert set(homes) == {"node-a", "node-b", "node-c"}
    assert min(homes.values()) > 850, homes


def test_adding_a_node_moves_only_the_ids_that_now_hash_to_it() -> None:
    ids = [f"i{n}" for n in range(2000)]
    before = {i: home_of(i, ["node-a", "node-b", "node-c"]) for i in ids}
    after = {i: home_of(i, ["node-a", "node-b", "node-c", "node-d"]) for i in ids}
    moved = [i for i in ids if before[i] != after[i]]
    assert all(after[i] == "node-d" for i in moved)
    assert 350 < len(moved) < 650  # about a quarter


def test_no_node_no_home() -> None:
    assert home_of("x", []) is None


def test_node_id_is_stable_per_identity_and_reveals_nothing_of_it() -> None:
    secret = bytes(range(32))
    assert node_id(secret) == node_id(bytes(range(32)))
    assert node_id(secret) != node_id(bytes(32))
    assert node_id(secret).startswith("node-") and secret.hex()[:12] not in node_id(secret)


def test_label_matching() -> None:
    assert matches({"zone": "b", "gpu": "yes"}, {"zone": "b"})
    assert not matches({"zone": "a"}, {"zone": "b"})
    assert matches({}, {})
    node = NodeInfo("node-1", "ab" * 28, "k", "/data/raydo", "10.0.0.2", {"zone": "b"})
    assert "node-1" in node.describe() and "10.0.0.2" in node.describe()
