"""Group commit (storage/groupsync.py): one fsync serves every commit made before it started."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

from raydo.storage.groupsync import GroupSync
from raydo.storage.kv import LmdbKV


class FakeDisk:
    """Commits are numbered; a sync makes everything committed so far durable."""

    def __init__(self) -> None:
        self.committed = 0
        self.durable = 0
        self.syncs = 0
        self._lock = threading.Lock()

    def commit(self) -> int:
        with self._lock:
            self.committed += 1
            return self.committed

    def sync(self) -> None:
        self.syncs += 1
        self.durable = self.committed


def group(tmp_path: Path, disk: FakeDisk) -> GroupSync:
    return GroupSync(str(tmp_path), disk.sync, lambda: disk.committed, 0o600)


def test_a_lone_committer_syncs_once_per_commit(tmp_path: Path) -> None:
    disk = FakeDisk()
    sync = group(tmp_path, disk)
    for _ in range(3):
        txn = disk.commit()
        sync.wait_durable(txn)
        assert disk.durable >= txn
    assert disk.syncs == 3


def test_commits_made_before_a_sync_started_share_it(tmp_path: Path) -> None:
    disk = FakeDisk()
    sync = group(tmp_path, disk)
    committed = threading.Barrier(8)
    durable: list[bool] = []

    def committer() -> None:
        txn = disk.commit()
        committed.wait()  # all eight are committed before anyone asks for a sync
        sync.wait_durable(txn)
        durable.append(disk.durable >= txn)

    threads = [threading.Thread(target=committer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert durable == [True] * 8
    assert disk.syncs == 1


def test_the_counter_is_shared_through_the_folder(tmp_path: Path) -> None:
    disk = FakeDisk()
    first, second = group(tmp_path, disk), group(tmp_path, disk)  # two processes, in effect
    first.wait_durable(disk.commit())
    assert second.covered() == 1
    second.wait_durable(1)
    assert disk.syncs == 1


def test_a_counter_ahead_of_the_storage_is_reset(tmp_path: Path) -> None:
    disk = FakeDisk()
    for _ in range(5):
        group(tmp_path, disk).wait_durable(disk.commit())
    restored = FakeDisk()  # an older copy of the storage: its transaction ids are behind
    again = group(tmp_path, restored)
    assert again.covered() == 0
    again.wait_durable(restored.commit())
    assert restored.syncs == 1


def test_lmdb_durable_writes_go_through_the_group(tmp_path: Path) -> None:
    kv = LmdbKV(str(tmp_path / "store"))
    for n in range(5):
        kv.write(lambda w, n=n: w.put(b"k%d" % n, b"v"))
    assert kv.read(lambda r: r.get(b"k4")) == b"v"
    assert (tmp_path / "store" / "sync.state").stat().st_mode & 0o777 == 0o600
    kv.close()


def _committer(folder: str, rounds: int, barrier: Any, out: Any) -> None:
    """One process: each round, commit, wait until every process has, then ask for durability."""
    import lmdb

    env = lmdb.open(folder, sync=False, metasync=False, max_readers=64)
    syncs = [0]

    def sync() -> None:
        syncs[0] += 1
        env.sync(True)

    group = GroupSync(folder, sync, lambda: int(env.info()["last_txnid"]), 0o600)
    for n in range(rounds):
        with env.begin(write=True) as txn:
            txn.put(f"{os.getpid()}-{n}".encode(), b"x")
            txnid = txn.id()
        barrier.wait()
        group.wait_durable(txnid)
        assert group.covered() >= txnid
        barrier.wait()
    out.put(syncs[0])


def test_processes_committing_together_share_one_fsync_per_round(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs, rounds = 4, 5
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(target=_committer, args=(str(tmp_path), rounds, barrier, out))
        for _ in range(procs)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    total = sum(out.get(timeout=10) for _ in workers)
    assert total == rounds  # 20 durable commits, 5 fsyncs: one per round, shared by all four


def test_deferred_durable_writes_share_one_sync_made_by_the_caller(tmp_path: Path) -> None:
    """What the namespace actor does for the calls it serves at once: durable writes inside
    deferred_sync() commit without an fsync each; one sync_committed() covers them all."""
    kv = LmdbKV(str(tmp_path))
    kv.sync_each_commit = True
    syncs: list[int] = []
    real = kv._group._sync
    kv._group._sync = lambda: (syncs.append(1), real())[1]  # type: ignore[method-assign]
    with kv.deferred_sync():
        for n in range(5):
            kv.write(lambda w, n=n: w.put(b"k%d" % n, b"v"))
    assert syncs == [] and kv._group.covered() < kv._committed
    kv.sync_committed()
    assert syncs == [1] and kv._group.covered() >= kv._committed
    kv.write(lambda w: w.put(b"after", b"v"))  # outside the block: synced at once, as before
    assert syncs == [1, 1] and kv._group.covered() >= kv._committed
    kv.close()


def committing_soon(theirs: GroupSync, disk: FakeDisk) -> threading.Thread:
    """Another process, about to get the write lock and commit: its commit's own fsync covers
    the commit before it."""

    def commit() -> None:
        time.sleep(0.001)
        theirs.holding_write()  # it gets the write lock
        disk.durable = disk.commit()
        theirs.covered_by_commit(disk.committed - 1)

    other = threading.Thread(target=commit)
    other.start()
    return other


def test_a_write_begun_after_a_commit_covers_it_with_its_own_fsync(tmp_path: Path) -> None:
    """LMDB's NOMETASYNC mode: every commit fsyncs, which makes the commit before it durable.
    A durable write that sees another write transaction begin after it waits for that commit
    instead of adding an fsync; with none begun, it syncs at once."""
    disk = FakeDisk()
    mine, theirs = group(tmp_path, disk), group(tmp_path, disk)  # two processes' handles
    mine.ride_for_ns = 60 * 10**9  # however slow the machine, it waits for their commit
    txn = disk.commit()
    committed_ns = time.monotonic_ns()
    theirs.begin_write()  # another process begins a write transaction
    other = committing_soon(theirs, disk)
    mine.wait_durable(txn, committed_ns)
    other.join()
    assert disk.syncs == 0 and mine.covered() >= txn

    alone = disk.commit()  # nobody begins a write after this one: it syncs itself
    mine.wait_durable(alone, time.monotonic_ns())
    assert disk.syncs == 1 and disk.durable >= alone


def test_a_writer_waiting_for_the_lock_when_a_commit_ends_covers_it(tmp_path: Path) -> None:
    """A writer that asked for LMDB's write lock while our commit held it gets the lock after
    us, so its commit's fsync covers ours: we wait for it, though it asked before we committed.
    Our own ask and hold alone (nobody waiting) do not make us wait."""
    disk = FakeDisk()
    mine, theirs = group(tmp_path, disk), group(tmp_path, disk)
    mine.ride_for_ns = 60 * 10**9
    mine.begin_write()
    mine.holding_write()  # our transaction holds the lock
    theirs.begin_write()  # theirs asks for it meanwhile, and waits
    txn = disk.commit()
    committed_ns = time.monotonic_ns()
    other = committing_soon(theirs, disk)
    mine.wait_durable(txn, committed_ns)
    other.join()
    assert disk.syncs == 0 and mine.covered() >= txn

    mine.begin_write()
    mine.holding_write()
    alone = disk.commit()
    mine.wait_durable(alone, time.monotonic_ns())
    assert disk.syncs == 1 and disk.durable >= alone
