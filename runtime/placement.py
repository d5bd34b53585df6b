"""Where instances live on a cluster: node identities and the home rule. Pure; no Ray.

A raydo node is a storage folder on one machine's disk. Its id derives from the storage's random
identity (made once with the storage), so it survives a restart of Ray on that machine and moves
with a restored backup. An instance's home is chosen by rendezvous hashing over the eligible
nodes: any process computes the same home for an id without asking anyone, and adding a node
moves only the ids that now hash to it (docs/cluster.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeInfo:
    """One raydo node as a driver knows it."""

    node: str
    """raydo's node id, stable across Ray restarts (derived from the storage identity)."""
    ray_node: str
    """The Ray node id it runs under now (a restarted raylet gets a new one)."""
    key: str
    """The storage's actor-name key (secret-derived: see actors/handles.py)."""
    storage: str
    """The storage folder, as a path on that node."""
    address: str = ""
    """The node's IP address, for messages."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """The Ray labels of the node (`ray start --labels`)."""

    def describe(self) -> str:
        """For error messages: every name a person may know the node by."""
        at = f" at {self.address}" if self.address else ""
        return f"raydo node {self.node} (Ray node {self.ray_node[:12]}{at}, storage {self.storage})"


def node_id(identity: bytes) -> str:
    """A storage's raydo node id: public (hashed in its own domain, so it reveals nothing of
    the secret identity actor names derive from)."""
    return "node-" + hashlib.sha256(b"raydo node\x00" + identity).hexdigest()[:12]


def matches(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Does a node with `labels` carry every label the workflow asks for?"""
    return all(labels.get(k) == v for k, v in wanted.items())


def home_of(iid: str, nodes: Iterable[str]) -> str | None:
    """The home of instance `iid` among node ids `nodes` (rendezvous hashing), or None when
    there is no node."""
    best: tuple[bytes, str] | None = None
    for node in nodes:
        weight = hashlib.sha256(node.encode() + b"\x00" + iid.encode()).digest()
        if best is None or weight > best[0]:
            best = (weight, node)
    return None if best is None else best[1]
