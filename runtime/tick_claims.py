"""One instance per cron tick on a cluster of raydo nodes. Plain Python; no Ray.

On a multi-node cluster every node's namespace of a workflow runs the workflow's schedules (each
node has its own storage, so its own namespace actor and its own last tick). A tick is fired by
the node that *claims* it first in a key-value store the whole cluster shares (Ray's GCS, through
actors/claims.py): an add-if-absent of the tick's key is atomic there, so exactly one node wins
each tick whatever the nodes' views of the membership, and a lost node needs no fail-over (the
others go on claiming). The claim holds the winner's raydo node id: a namespace that claimed a
tick and died before its create commits claims it again after its restart and creates it then
(the id is deterministic and a create of an existing id is skipped), so a crash loses no tick.

Claims of a cron are kept while they may still be contested: one is deleted once a newer claim
of its cron is older than KEEP (a node would have to stall or lag the others' clocks by that
much to try a tick that late). The newest claim is always kept, so a sparse schedule (@daily)
caught up after downtime still finds the claim of a tick another node fired.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Protocol

KEEP = 600.0  # seconds a superseded claim is kept
SWEEP_EVERY = 60.0  # seconds between sweeps of one cron's old claims (by tick time)


class ClaimStore(Protocol):
    """A key-value store shared by every node (Ray's GCS internal KV on a cluster)."""

    def add(self, key: bytes, value: bytes) -> bool:
        """Store `value` under `key` unless the key exists; True if this call stored it."""
        ...

    def get(self, key: bytes) -> bytes | None: ...
    def keys(self, prefix: bytes) -> list[bytes]: ...
    def delete(self, key: bytes) -> None: ...


def _digest(text: str, size: int) -> bytes:
    return hashlib.sha256(text.encode()).hexdigest()[:size].encode()


class TickClaims:
    """The claims of one workflow's ticks made by one raydo node (`node`), for the drivers of
    `deployment` (the storage path they give, as the node registry keys them)."""

    def __init__(self, store: ClaimStore, deployment: str, workflow: str, node: str) -> None:
        self.store, self.node = store, node.encode()
        self._base = b"cron:" + _digest(deployment, 24) + b":" + _digest(workflow, 16) + b":"
        self._swept: dict[str, float] = {}

    def prefix(self, cron: str) -> bytes:
        return self._base + _digest(cron, 8) + b":"

    def key(self, cron: str, tick: float) -> bytes:
        # fixed-width milliseconds: keys of one cron sort by tick
        return self.prefix(cron) + b"%015d" % round(tick * 1000)

    def claim(self, cron: str, tick: float) -> bool:
        """May this node fire `tick` of `cron`? True for exactly one node (and again for it)."""
        key = self.key(cron, tick)
        won = self.store.add(key, self.node) or self.store.get(key) == self.node
        if won:
            self.sweep(cron, tick)
        return won

    def sweep(self, cron: str, now: float) -> int:
        """Delete the claims of `cron` no node can contest any more; returns how many."""
        if now - self._swept.get(cron, float("-inf")) < SWEEP_EVERY:
            return 0
        self._swept[cron] = now
        prefix = self.prefix(cron)
        ticks = sorted(int(k[len(prefix) :]) for k in self.store.keys(prefix))
        stale = [old for old, newer in itertools.pairwise(ticks) if newer / 1000 < now - KEEP]
        for old in stale:
            self.store.delete(prefix + b"%015d" % old)
        return len(stale)
