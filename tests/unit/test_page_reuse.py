"""Deleting instances returns their LMDB pages: storage does not grow over create / finish /
delete cycles (real LMDB, the same writes an instance's life makes)."""

from __future__ import annotations

from pathlib import Path

from raydo.storage.instances import InstanceStore, check_schema, set_sync_mode
from raydo.storage.kv import LmdbKV
from raydo.storage.records import InstanceStatus, StepKind, StepRecord, StepState

BATCH = 400


def live_and_finish(store: InstanceStore, round_: int) -> list[str]:
    """BATCH instances created, run through three steps and finished with an output."""
    ids = [f"r{round_:03d}-{n:04d}" for n in range(BATCH)]  # one key length every round
    store.create([(iid, b"p" * 200) for iid in ids], float(round_), skip_existing=False)
    leases = store.acquire(ids, float(round_))
    for iid, lease in leases.items():
        for seq in range(3):
            step = StepRecord(StepKind.DO, seq, StepState.DONE, 1, value=b"v" * 300)
            store.save_step(iid, lease, (f"s{seq}", 1), step, durable=False)
        rec = store.require(iid)
        rec.status, rec.has_output = InstanceStatus.COMPLETE, True
        store.settle(iid, lease, rec, b"o" * 100, durable=False)
    return ids


def test_create_finish_delete_cycles_reuse_pages(tmp_path: Path) -> None:
    first = LmdbKV(str(tmp_path / "db"))
    check_schema(first)
    set_sync_mode(first, each_commit=False)  # page reuse does not depend on fsyncs; speed does
    first.close()
    kv = LmdbKV(str(tmp_path / "db"))
    store = InstanceStore(kv, "wf")
    sizes = []
    for round_ in range(12):
        ids = live_and_finish(store, round_)
        for iid in ids:
            store.delete(iid)
        sizes.append(kv.used_bytes())
    # the first rounds settle the tree's shape; after that every round fits in freed pages
    assert sizes[-1] == sizes[3], sizes
    kept = [iid for r in range(3) for iid in live_and_finish(store, 100 + r)]
    assert kv.used_bytes() > sizes[-1]  # without deletes the same rounds do grow it
    assert store.counts()["complete"] == len(kept)
    kv.close()
