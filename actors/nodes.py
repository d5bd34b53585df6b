"""The raydo nodes of a Ray cluster: which storage folder a node uses, who it is, and the
registry that lets any driver know every raydo node, also those that are now down.

A node's storage folder is resolved on the node: `$RAYDO_NODE_STORAGE` from the environment of
its `ray start` (Ray's workers inherit the raylet's environment), else the path the driver gave.
A driver learns a node by running `local_node` there once (a task pinned to it) and writes what
it learned to Ray's GCS key-value store, read back by later drivers (docs/cluster.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from typing import Any

import ray
from ray.experimental import internal_kv

from ..runtime.placement import NodeInfo, node_id
from ..storage import backup
from ..storage.instances import check_schema, storage_identity
from ..storage.kv import open_lmdb
from . import handles

NODE_STORAGE_ENV = "RAYDO_NODE_STORAGE"
_KV_NAMESPACE = "raydo"


def node_storage(storage: str) -> str:
    """This node's storage folder for a driver that asked for `storage`."""
    return os.path.abspath(os.environ.get(NODE_STORAGE_ENV) or storage)


def local_node(storage: str) -> NodeInfo:
    """Who this node is, for a driver that asked for `storage` (opens and stamps the storage)."""
    path = node_storage(storage)
    kv = open_lmdb(path)
    check_schema(kv)
    ctx = ray.get_runtime_context()
    labels = {
        k: v if isinstance(v, str) else ",".join(v)
        for k, v in ctx.get_node_labels().items()
        if not k.startswith("ray.io/")
    }
    return NodeInfo(
        node=node_id(storage_identity(kv)),
        ray_node=ctx.get_node_id(),
        key=handles.storage_key(path),
        storage=path,
        address=ray.util.get_node_ip_address(),
        labels=labels,
    )


def probe(ray_node: str, storage: str) -> Any:
    """An ObjectRef of the NodeInfo of Ray node `ray_node`."""
    task = ray.remote(local_node).options(
        num_cpus=0, scheduling_strategy=handles.pinned(ray_node), max_retries=0
    )
    return task.remote(storage)


def backup_here(storage: str, folder: str) -> tuple[str, str, int]:
    """Back this node's storage up into `folder`/<node id> on this node's disk; returns
    (node id, backup folder, bytes)."""
    path = node_storage(storage)
    kv = open_lmdb(path)
    check_schema(kv)
    node = node_id(storage_identity(kv))
    target = os.path.join(os.path.abspath(folder), node)
    return node, target, backup.backup(kv, target)


def backup_on(ray_node: str, storage: str, folder: str) -> Any:
    """An ObjectRef of backup_here run on Ray node `ray_node`."""
    task = ray.remote(backup_here).options(
        num_cpus=0, scheduling_strategy=handles.pinned(ray_node), max_retries=0
    )
    return task.remote(storage, folder)


def _registry_prefix(storage: str) -> bytes:
    return b"nodes:" + hashlib.sha256(storage.encode()).hexdigest()[:24].encode() + b":"


def register(storage: str, node: NodeInfo) -> None:
    """Remember `node` in the cluster's registry for drivers of `storage`."""
    value = json.dumps(asdict(node) | {"labels": dict(node.labels)}).encode()
    key = _registry_prefix(storage) + node.node.encode()
    internal_kv._internal_kv_put(key, value, overwrite=True, namespace=_KV_NAMESPACE)


def registered(storage: str) -> list[NodeInfo]:
    """Every raydo node ever registered for drivers of `storage` (alive or not)."""
    prefix = _registry_prefix(storage)
    found = []
    for key in internal_kv._internal_kv_list(prefix, namespace=_KV_NAMESPACE) or []:
        raw = internal_kv._internal_kv_get(key, namespace=_KV_NAMESPACE)
        if raw:
            found.append(NodeInfo(**json.loads(raw)))
    return found


def alive_ray_nodes() -> dict[str, dict[str, Any]]:
    """Ray node id -> Ray's description, for the nodes Ray reports alive."""
    return {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}


def dead_reason(ray_node: str) -> str:
    """What Ray says about a node that is not alive."""
    for n in ray.nodes():
        if n["NodeID"] == ray_node:
            return "Ray reports it dead" + (
                f" ({n['DeathReasonMessage']})" if n.get("DeathReasonMessage") else ""
            )
    return "Ray does not know it (the cluster was restarted without it)"
