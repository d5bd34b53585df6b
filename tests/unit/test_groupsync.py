"""Group commit (storage/groupsync.py): one fsync serves every commit made before it started."""

from __future__ import annotations

import threading
from pathlib import Path

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
