"""Cron ticks on several raydo nodes without Ray: three namespaces (each its own in-memory
storage, as three nodes have) run one schedule on one fake clock and a shared claim store; every
tick makes exactly one instance among them (runtime/tick_claims.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from raydo.runtime.clock import FakeClock
from raydo.runtime.model import WorkflowEntrypoint
from raydo.runtime.schedules import Scheduler, tick_id
from raydo.runtime.tick_claims import KEEP, TickClaims
from raydo.storage.schedules import ScheduleStore
from tests.unit.harness import Harness

EVERY_MINUTE = "* * * * *"
START = datetime(2026, 1, 1, 10, 0, 30, tzinfo=UTC).timestamp()


class Tick(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return event.schedule["scheduled_time"].isoformat()


class DictClaims:
    """The GCS internal KV's contract: add-if-absent is atomic."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def add(self, key: bytes, value: bytes) -> bool:
        if key in self.data:
            return False
        self.data[key] = value
        return True

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def keys(self, prefix: bytes) -> list[bytes]:
        return [k for k in self.data if k.startswith(prefix)]

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)


def _node(clock: FakeClock, store: DictClaims, name: str) -> tuple[Harness, Scheduler]:
    h = Harness(Tick, clock=clock)
    claims = TickClaims(store, "/srv/raydo", "wf", name)
    return h, Scheduler(h.ns, ScheduleStore(h.kv, "wf"), clock, None, claims.claim)


def test_one_node_wins_each_tick_and_wins_it_again_after_a_restart() -> None:
    store = DictClaims()
    a, b = (TickClaims(store, "/srv/raydo", "wf", n) for n in ("node-a", "node-b"))
    assert a.claim(EVERY_MINUTE, 60.0) and not b.claim(EVERY_MINUTE, 60.0)
    assert TickClaims(store, "/srv/raydo", "wf", "node-a").claim(EVERY_MINUTE, 60.0)
    assert b.claim(EVERY_MINUTE, 120.0) and not a.claim(EVERY_MINUTE, 120.0)
    other = TickClaims(store, "/srv/other", "wf", "node-b")  # another deployment's claims
    assert other.claim(EVERY_MINUTE, 60.0)


def test_old_claims_are_swept_but_the_newest_is_kept() -> None:
    store = DictClaims()
    claims = TickClaims(store, "/srv/raydo", "wf", "node-a")
    for minute in range(30):
        claims.claim(EVERY_MINUTE, START + 60 * minute)
    kept = sorted(store.keys(claims.prefix(EVERY_MINUTE)))
    assert claims.key(EVERY_MINUTE, START + 29 * 60) in kept
    assert claims.key(EVERY_MINUTE, START) not in kept  # superseded more than KEEP ago
    assert len(kept) <= KEEP / 60 + 2
    daily = TickClaims(store, "/srv/raydo", "wf", "node-a")
    daily.claim("@daily", START)
    assert daily.sweep("@daily", START + 30 * 86400) == 0  # the only (newest) claim stays
    assert store.get(daily.key("@daily", START)) == b"node-a"


@pytest.mark.asyncio
async def test_three_nodes_running_one_schedule_make_one_instance_per_tick() -> None:
    clock, store = FakeClock(), DictClaims()
    clock._now = START
    nodes = [_node(clock, store, f"node-{i}") for i in range(3)]
    for _, scheduler in nodes:
        scheduler.use([EVERY_MINUTE])
    for _ in range(10):
        await nodes[0][0].advance(60)
    for h, _ in nodes:
        await h.settle()
    made = [r.id for h, _ in nodes for r in h.store.records()]
    ticks = [START + 30 + 60 * i for i in range(10)]  # 10:01 .. 10:10
    assert sorted(made) == sorted(tick_id(EVERY_MINUTE, t) for t in ticks)
    assert sum(s.fired for _, s in nodes) == 10
    for _, scheduler in nodes:
        scheduler.stop()
