"""`raydo.backup(folder)` and `raydo.restore(backup, storage)`: online backup of every raydo
node's storage, each to its own disk, and an offline restore (docs/cluster.md, "Durability")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..runtime.placement import NodeInfo
from ..storage import backup as storage_backup
from . import client  # first: it quiets Ray's import (bindings/logs.py)

if TYPE_CHECKING:
    from .cluster import ClusterView


@dataclass(frozen=True)
class NodeBackup:
    """The backup of one raydo node: where it went, on that node's disk, and its size."""

    node: str
    folder: str | None
    bytes: int = 0
    error: str | None = None
    """Why this node was not backed up (it was unreachable); None when it was."""


def backup(folder: str | os.PathLike[str]) -> list[NodeBackup]:
    """Back up every raydo node's storage while instances run: a consistent snapshot per node,
    written on that node's own disk to `folder`/<node id> (folder 0700, file 0600). A node
    that is down is listed with an `error`, not backed up."""
    from ..actors import nodes
    from . import cluster
    from .pending import submit

    path = os.path.abspath(os.fspath(folder))
    storage = client.context().storage
    view = cluster.view_of(storage)
    if submit(view.is_single):
        return [NodeBackup(*nodes.backup_here(storage, path))]
    cluster.start(view.refresh(force=True)).result()
    return [_backup_node(view, node, path) for node in sorted(view.nodes.values(), key=_by_id)]


def _backup_node(view: ClusterView, node: NodeInfo, path: str) -> NodeBackup:
    """One node's backup, by a task pinned to it (its disk is only reachable there)."""
    import ray

    from ..actors import nodes
    from .pending import raise_user_error

    if not view.is_up(node):
        return NodeBackup(node.node, None, 0, view.unavailable(node).message)
    try:
        return NodeBackup(*ray.get(nodes.backup_on(node.ray_node, view.storage, path)))
    except ray.exceptions.RayError as exc:
        raise_user_error(exc)


def restore(backup_folder: str | os.PathLike[str], storage: str | os.PathLike[str]) -> None:
    """Make `storage` (a new or empty folder, not in use) a copy of one node's backup
    (`folder`/<node id> of `backup`). Started there (as that node's storage, or with
    `raydo.init(storage)`), its instances go on from the state the backup holds: what ran after
    the backup runs again."""
    storage_backup.restore(os.fspath(backup_folder), os.fspath(storage))


def _by_id(node: NodeInfo) -> str:
    return node.node
