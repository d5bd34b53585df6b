"""Ordered key-value stores: LMDB for real use, memory for unit tests.

Both offer the same two calls: `read(fn)` runs `fn` against a consistent snapshot and `write(fn)`
runs it in one atomic write transaction (synced to disk when `durable`). Keys scan in byte order.
Everything above this module speaks only this interface.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import lmdb

from ..errors import StorageError, StorageFullError
from . import keys, permissions
from .groupsync import GroupSync

T = TypeVar("T")

_INITIAL_MAP_SIZE = 64 << 20
_DEFAULT_MAX_MAP_SIZE = 1 << 40
_LOW_DISK = 16 << 20
_FLUSH_EVERY = 0.05


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]: ...
    def scan_back(
        self, prefix: bytes, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]: ...


class Writer(Reader, Protocol):
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...


@dataclass
class Staged:
    """A write made ready ahead of its transaction (InstanceStore.stage_steps, stage_settle), so
    several can be committed in one (KV.write_each). `after` runs once it is written."""

    apply: Callable[[Writer], None]
    after: Callable[[], None] | None = None


class KV(Protocol):
    @property
    def path(self) -> str: ...
    def read(self, fn: Callable[[Reader], T]) -> T: ...
    def write(self, fn: Callable[[Writer], T], durable: bool = True) -> T: ...
    def write_each(self, fns: Sequence[Callable[[Writer], object]]) -> list[Exception | None]: ...
    def sync_committed(self) -> None: ...


class _LmdbTxn:
    def __init__(self, txn: lmdb.Transaction) -> None:
        self._txn = txn

    def get(self, key: bytes) -> bytes | None:
        value = self._txn.get(key)
        return None if value is None else bytes(value)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        cursor = self._txn.cursor()
        if not cursor.set_range(start if start is not None else prefix):
            return
        for key, value in cursor:
            if not bytes(key).startswith(prefix):
                return
            yield bytes(key), bytes(value)

    def scan_back(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Keys under `prefix`, at or below `start` (all when None), highest first."""
        cursor = self._txn.cursor()
        top = start if start is not None else _after_prefix(prefix)
        if top is None or not cursor.set_range(top):
            placed = cursor.last()
        elif start is None or bytes(cursor.key()) > top:  # past the range: step back into it
            placed = cursor.prev()
        else:
            placed = True
        if not placed:
            return
        for key, value in cursor.iterprev():
            if not bytes(key).startswith(prefix):
                return
            yield bytes(key), bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        self._txn.put(key, value)

    def delete(self, key: bytes) -> None:
        self._txn.delete(key)


class LmdbKV:
    """One LMDB environment per storage folder, shared by every raydo process on the node.

    How a commit reaches the disk depends on the storage's durability (set_sync_mode):
    - sync_commits on (default): LMDB's NOMETASYNC mode. A commit writes its pages, fsyncs
      them, then writes its meta page (the root that makes it the newest) without waiting. So the
      meta page on disk always points at pages already on disk: an OS crash or power loss at any
      moment leaves the storage whole, at this commit or the one before. A durable write returns
      once a second fsync has covered its meta page; that one is shared by every process
      committing meanwhile (group commit, groupsync.py), and any later commit's own fsync covers
      it too.
    - sync_commits off: LMDB's NOSYNC mode, flushed every 50 ms. A process crash loses nothing
      (commits sit in the page cache, applied in order); an OS crash or power loss may lose the
      last commits and, as LMDB warns for file systems that reorder writes (ext4 does), may leave
      the storage unreadable.
    """

    def __init__(self, path: str, max_map_size: int = _DEFAULT_MAX_MAP_SIZE) -> None:
        self._path = os.path.abspath(path)
        self._max_map_size = max_map_size
        try:
            permissions.secure_folder(self._path)  # 0700; refuses a folder others can write
            permissions.secure_files(self._path)
        except OSError as exc:
            raise StorageError(f"cannot prepare storage at {self._path!r}: {exc}") from exc
        self._each_commit = True  # until the stored mode is read: never less safe than asked
        self._env = self._open_env()
        self._lock = threading.Lock()
        self._committed = 0  # the newest transaction this process committed
        self._committed_ns = 0  # when (time.monotonic_ns())
        self._deferring = threading.local()  # deferred_sync() is on in this thread
        self._dirty = threading.Event()
        self._flusher: threading.Thread | None = None
        self._closed = False
        try:
            self._group = GroupSync(
                self._path,
                lambda: self._env.sync(True),
                lambda: int(self._env.info()["last_txnid"]),
                permissions.FILE_MODE,
            )
        except OSError as exc:
            raise StorageError(f"cannot prepare storage at {self._path!r}: {exc}") from exc
        self.sync_each_commit = (
            self.read(lambda r: keys.decode_u64(r.get(keys.SYNC_KEY) or keys.encode_u64(1))) != 0
        )

    def _open_env(self) -> lmdb.Environment:
        try:
            env = lmdb.open(
                self._path,
                map_size=min(_INITIAL_MAP_SIZE, self._max_map_size),
                mode=permissions.FILE_MODE,
                sync=self._each_commit,  # each commit fsyncs its pages before its meta page
                metasync=False,  # the meta page's fsync is shared (GroupSync)
                max_readers=1024,
            )
            env.reader_check()  # free reader slots left by killed processes
        except lmdb.Error as exc:
            raise StorageError(f"cannot open storage at {self._path!r}: {exc}") from exc
        return env

    @property
    def sync_each_commit(self) -> bool:
        """Durable writes are fsynced before they return (sync_commits on), rather than flushed
        every 50 ms. Setting it reopens the environment in the matching LMDB mode: do it before
        this process starts using the storage (raydo.init and set_sync_mode do)."""
        return self._each_commit

    @sync_each_commit.setter
    def sync_each_commit(self, each_commit: bool) -> None:
        with self._lock:
            if each_commit == self._each_commit:
                return
            self._env.sync(True)
            self._env.close()
            self._each_commit = each_commit
            self._env = self._open_env()
            if not each_commit and self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="raydo-lmdb-flush", daemon=True
                )
                self._flusher.start()

    @property
    def path(self) -> str:
        return self._path

    def _flush_loop(self) -> None:
        """sync_commits=False: durable commits are flushed together every _FLUSH_EVERY seconds."""
        while not self._closed:
            self._dirty.wait()
            if self._each_commit:
                self._dirty.clear()
                continue  # every commit is synced now
            time.sleep(_FLUSH_EVERY)
            self._dirty.clear()
            try:
                with self._lock:
                    if not self._closed:
                        self._env.sync(True)
            except lmdb.Error:
                self._dirty.set()  # retried at the next round

    def read(self, fn: Callable[[Reader], T]) -> T:
        while True:
            try:
                with self._env.begin(write=False) as txn:
                    return fn(_LmdbTxn(txn))
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)  # another process grew the map: adopt its size

    def write(self, fn: Callable[[Writer], T], durable: bool = True) -> T:
        with self._lock:
            if self._each_commit:
                self._group.begin_write()
            result, txnid = self._commit(fn)
            self._committed, self._committed_ns = max(self._committed, txnid), time.monotonic_ns()
            if self._each_commit:
                # This commit's fsync, made after the last commit wrote its meta page, covers it.
                self._group.covered_by_commit(txnid - 1)
        if durable and not getattr(self._deferring, "on", False):
            self._make_durable(txnid, self._committed_ns)
        return result

    def write_each(self, fns: Sequence[Callable[[Writer], object]]) -> list[Exception | None]:
        """Run every fn of `fns` in one write transaction, each in a nested transaction of its
        own: one that raises is undone alone, and its exception is returned in its place (None:
        applied). One commit, not synced (sync_committed() makes it durable): the writes of
        several callers share its fsyncs (group commit)."""

        def apply(w: Writer) -> list[Exception | None]:
            assert isinstance(w, _LmdbTxn)
            errors: list[Exception | None] = []
            for fn in fns:
                try:
                    with self._env.begin(write=True, parent=w._txn) as child:
                        fn(_LmdbTxn(child))
                except lmdb.Error:
                    raise  # the storage's own failure (map full, I/O): the whole commit
                except Exception as exc:
                    errors.append(exc)
                else:
                    errors.append(None)
            return errors

        return self.write(apply, durable=False)

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Durable writes of this thread inside the block commit without waiting for their
        fsync: the caller calls sync_committed() before it tells anyone they are done (the
        namespace actor shares one fsync among the calls it serves at once)."""
        self._deferring.on = True
        try:
            yield
        finally:
            self._deferring.on = False

    def committed(self) -> int:
        """The newest transaction this process committed (for sync_to)."""
        return self._committed

    def sync_to(self, txnid: int) -> None:
        """Make this process's commits up to transaction `txnid` durable (a later commit by
        anyone already has: its own fsync covers the commits before it)."""
        self._make_durable(txnid, self._committed_ns)

    def sync_committed(self) -> None:
        """Make every commit this process has made durable: a write made with durable=False
        becomes what a durable one is. Callers that commit several writes before anyone sees
        them (the activations of one worker process) wait once for all of them, sharing one
        fsync (group commit)."""
        self.sync_to(self._committed)

    def _make_durable(self, txnid: int, committed_ns: int) -> None:
        if self.sync_each_commit:
            try:
                # an fsync begun after the commit (shared; maybe another commit's own)
                self._group.wait_durable(txnid, committed_ns)
            except lmdb.Error as exc:
                raise self._write_failed(exc) from exc
        elif not self._dirty.is_set():
            self._dirty.set()

    def _commit(self, fn: Callable[[Writer], T]) -> tuple[T, int]:
        """One write transaction, committed without sync; returns its result and id."""
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    if self._each_commit:
                        self._group.holding_write()  # a durable write committed before waits
                    result = fn(_LmdbTxn(txn))
                    txnid = int(txn.id())
                return result, txnid
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except lmdb.MapFullError:
                self._grow()
            except lmdb.Error as exc:
                raise self._write_failed(exc) from exc

    def _write_failed(self, exc: lmdb.Error) -> StorageError:
        """A commit failed and wrote nothing. A nearly full disk is the usual cause (LMDB reports
        it as an I/O error), so say so when it is true."""
        free = shutil.disk_usage(self._path).free
        if free < _LOW_DISK:
            return StorageFullError(
                f"storage at {self._path!r} could not commit: the disk is full ({free} bytes "
                f"free); nothing of this change was written ({exc})",
                free=free,
            )
        return StorageError(f"storage at {self._path!r} could not commit: {exc}")

    def _grow(self) -> None:
        size = int(self._env.info()["map_size"])
        if size >= self._max_map_size:
            raise StorageFullError(
                f"storage at {self._path!r} reached its size cap of {self._max_map_size} bytes"
            )
        self._env.set_mapsize(min(size * 2, self._max_map_size))

    def copy_to(self, fd: int) -> None:
        """Write a compacted copy of the environment to the open file `fd`: one read
        transaction, so a consistent snapshot of a live storage whose writers go on."""
        try:
            self._env.copyfd(fd, compact=True)
        except lmdb.Error as exc:
            raise StorageError(f"cannot copy storage at {self._path!r}: {exc}") from exc

    def map_size(self) -> int:
        return int(self._env.info()["map_size"])

    def used_bytes(self) -> int:
        """Bytes of the file in use: up to the highest page ever allocated. Freed pages below it
        are reused before it grows, so this stops growing when deletes keep up with writes."""
        return (int(self._env.info()["last_pgno"]) + 1) * int(self._env.stat()["psize"])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._env.close()
            self._group.close()
        self._dirty.set()  # lets the flusher see it is closed


class _MemoryTxn:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        low = start if start is not None else prefix
        for key in sorted(k for k in self.data if k.startswith(prefix) and k >= low):
            yield key, self.data[key]

    def scan_back(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        chosen = (k for k in self.data if k.startswith(prefix) and (start is None or k <= start))
        for key in sorted(chosen, reverse=True):
            yield key, self.data[key]

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)


class MemoryKV:
    """The same interface over a dict, for unit tests. A write that raises changes nothing."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._lock = threading.RLock()

    @property
    def path(self) -> str:
        return ":memory:"

    def read(self, fn: Callable[[Reader], T]) -> T:
        with self._lock:
            return fn(_MemoryTxn(dict(self._data)))

    def write(self, fn: Callable[[Writer], T], durable: bool = True) -> T:
        with self._lock:
            txn = _MemoryTxn(dict(self._data))
            result = fn(txn)
            self._data = txn.data
            return result

    def write_each(self, fns: Sequence[Callable[[Writer], object]]) -> list[Exception | None]:
        """Each fn in a write of its own (memory has no fsync to share)."""
        errors: list[Exception | None] = []
        for fn in fns:
            try:
                self.write(fn, durable=False)
            except Exception as exc:
                errors.append(exc)
            else:
                errors.append(None)
        return errors

    def sync_committed(self) -> None:
        """Nothing to make durable in memory."""


def _after_prefix(prefix: bytes) -> bytes | None:
    """The lowest key above every key that starts with `prefix` (None: there is none)."""
    body = prefix.rstrip(b"\xff")
    return body[:-1] + bytes([body[-1] + 1]) if body else None


_OPEN: dict[str, LmdbKV] = {}
_OPEN_LOCK = threading.Lock()


def open_lmdb(path: str) -> LmdbKV:
    """The process-wide handle for `path`: LMDB allows one open per environment and process."""
    key = os.path.abspath(path)
    with _OPEN_LOCK:
        kv = _OPEN.get(key)
        if kv is None:
            kv = _OPEN[key] = LmdbKV(key)
        return kv


def close(path: str) -> None:
    """Close this process's handle for `path`, if it has one."""
    with _OPEN_LOCK:
        kv = _OPEN.pop(os.path.abspath(path), None)
    if kv is not None:
        kv.close()
