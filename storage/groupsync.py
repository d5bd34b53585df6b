"""Group commit: one fsync serves every commit made before it started, across all processes that
write to one storage (the namespace actor and every instance actor on the node).

With sync_commits on, LMDB runs in NOMETASYNC mode (storage/kv.py): a commit fsyncs its own
pages, then writes its meta page, the one that makes it current, without waiting. The commit is
durable once an fsync that *started* after it has covered that meta page: the next commit's own
fsync does, or a sync made here. The storage folder holds a shared state (`sync.state`, 24
bytes, mapped into every process): the newest transaction id known to be durable, and when a
writer last asked for LMDB's write lock and last got it. Every commit raises the first to the
transaction before it. A durable write whose transaction it does not cover yet first looks for
a writer that will commit after it: one that asked for the lock or got it since its commit, or
one waiting for it (asked later than the last one got it). That commit will fsync after its
meta page was written, so it waits for it (a few hundred microseconds while processes commit
one after another) instead of adding an fsync to the disk's queue. Otherwise it syncs,
one process at a time, holding an flock on `sync.lock` (plus a thread lock: flock does not
exclude threads sharing a file); one that waited for the lock usually finds that the sync it
waited for covered it too. So N processes committing at once pay about one fsync per commit,
and a lone committer pays two (its pages, then its meta page).

Crash safety: the counter is raised only after the fsync it records has completed, so it never
exceeds what is durable, and LMDB's transaction ids do not go back below what is durable. A
counter ahead of the environment (a storage folder restored from an older copy) is reset when
the storage is opened. A process that dies holding the flock releases it with its file.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable

STATE_FILE = "sync.state"
LOCK_FILE = "sync.lock"
_COUNTER = struct.Struct("<Q")
_BEGUN_AT = 8  # second field: when a writer last asked for LMDB's write lock
_HELD_AT = 16  # third field: when a writer last got it
_STATE_SIZE = 24
# A durable write whose meta page awaits an fsync waits this long at most for a write
# transaction begun after it (by any process) to commit: that commit's own fsync covers it.
_RIDE_FOR_NS = 3_000_000
_RIDE_POLL = 0.0001


class GroupSync:
    def __init__(
        self, folder: str, sync: Callable[[], None], last_txnid: Callable[[], int], mode: int
    ) -> None:
        self._sync, self._last_txnid = sync, last_txnid
        self.ride_for_ns = _RIDE_FOR_NS
        self._thread_lock = threading.Lock()
        self._lock_fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT, mode)
        state_fd = os.open(os.path.join(folder, STATE_FILE), os.O_RDWR | os.O_CREAT, mode)
        try:
            if os.fstat(state_fd).st_size < _STATE_SIZE:
                os.ftruncate(state_fd, _STATE_SIZE)
            self._map = mmap.mmap(state_fd, _STATE_SIZE)
        finally:
            os.close(state_fd)
        with self._exclusive():
            if self.covered() > last_txnid():
                self._set_covered(0)  # a counter from another copy of this storage

    def covered(self) -> int:
        """The newest transaction id known to be on disk."""
        return int(_COUNTER.unpack_from(self._map, 0)[0])

    def wait_durable(self, txnid: int, committed_ns: int = 0) -> None:
        """Return once transaction `txnid` (already committed, at time.monotonic_ns()
        `committed_ns`) is on disk. When a write transaction has begun since (any process's),
        its commit's own fsync will cover `txnid`: wait for it rather than add an fsync of our
        own (up to _RIDE_FOR_NS: it may fail and commit nothing)."""
        if self.covered() >= txnid:
            return
        if committed_ns and self._writer_follows(committed_ns):
            deadline = committed_ns + self.ride_for_ns
            while time.monotonic_ns() < deadline:
                time.sleep(_RIDE_POLL)
                if self.covered() >= txnid:
                    return
        with self._exclusive():
            if self.covered() >= txnid:
                return  # the sync we waited for covered us
            start = self._last_txnid()  # every commit up to here is in the page cache
            self._sync()
            if start > self.covered():
                self._set_covered(start)

    def begin_write(self) -> None:
        """A write transaction is about to begin: its commit will fsync (see wait_durable)."""
        _COUNTER.pack_into(self._map, _BEGUN_AT, time.monotonic_ns())

    def holding_write(self) -> None:
        """This process got LMDB's write lock (its transaction began)."""
        _COUNTER.pack_into(self._map, _HELD_AT, time.monotonic_ns())

    def _writer_follows(self, committed_ns: int) -> bool:
        """A write transaction will commit after the one committed at `committed_ns`: one asked
        for the write lock since, or one got it since, or one is waiting for it (it asked later
        than the last one got it; a writer that asked while that commit held the lock)."""
        begun_at, held_at = (
            _COUNTER.unpack_from(self._map, _BEGUN_AT)[0],
            _COUNTER.unpack_from(self._map, _HELD_AT)[0],
        )
        return begun_at > committed_ns or held_at > committed_ns or begun_at > held_at

    def covered_by_commit(self, txnid: int) -> None:
        """A commit's own fsync (LMDB's NOMETASYNC mode) made transaction `txnid`, the one before
        it, durable. Not under the lock: two processes racing here may lower the counter, which
        costs an fsync later, never a wrong answer (each writes a value that is true)."""
        if self.covered() < txnid:
            self._set_covered(txnid)

    def _set_covered(self, txnid: int) -> None:
        _COUNTER.pack_into(self._map, 0, txnid)

    def _exclusive(self) -> _Exclusive:
        return _Exclusive(self._thread_lock, self._lock_fd)

    def close(self) -> None:
        self._map.close()
        os.close(self._lock_fd)


class _Exclusive:
    """Held by one thread of one process at a time."""

    def __init__(self, thread_lock: threading.Lock, fd: int) -> None:
        self._thread_lock, self._fd = thread_lock, fd

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()
