"""Step attempts in flight, kept outside LMDB: an attempt's start costs no write transaction.

An attempt must be known to have started before its body runs: when its process dies, the next
activation counts it (it retries as attempt k+1, and a step that kills its process every time
runs out of attempts). A write transaction per start cost a step about a third of its fsync
(the pages it dirtied) and a third of its commits. Instead each process that runs attempts of a
workflow holds one small file, `<storage>/inflight/<workflow digest>/<random>`, mapped into
memory, with one slot per attempt it runs: the step record the start would have written, with
the instance's id and lease. A slot is written before the body runs and freed once the attempt's
outcome is committed, so what a dead process leaves in its file are the attempts it had running.
Its writes sit in the page cache: a process crash cannot lose them, as it could not lose the
unsynced commit they replace (an OS crash loses both, and then the attempt runs under the same
number again).

The owner holds an flock on its file while it lives, so a file nobody holds is a dead process's.
Slots are folded back into LMDB, only where the instance still has (had, when taken over) the
lease of the activation that wrote them: anything else is an attempt of an activation that was
fenced, or of a run since restarted. The namespace folds dead processes' files when a worker
dies and at start, then removes them; `InstanceStore.acquire` of an instance whose last
activation did not end folds that activation's slots from every file, its process alive or not
(a new namespace while the old worker still runs). A slot is 1 KiB; a record that does not fit,
or a process with every slot taken, falls back to the write transaction.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import secrets
import struct
from dataclasses import dataclass

from . import permissions
from .codec import pack, unpack

SLOT = 1024
SLOTS = 128
_LEN = struct.Struct("<I")  # a slot: payload length (0: free), then the payload
FOLDER = "inflight"
_MAKING = ".new"


@dataclass(frozen=True)
class Entry:
    iid: str
    lease: int
    step: tuple[str, int]
    record: bytes  # the packed step record (state running, its attempt number)


def folder_of(storage: str, workflow: str) -> str:
    digest = hashlib.sha256(workflow.encode()).hexdigest()[:24]
    return os.path.join(storage, FOLDER, digest)


class InFlight:
    """This process's slots for one workflow. Used from the activation's event loop only."""

    def __init__(self, folder: str) -> None:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self.path = os.path.join(folder, secrets.token_hex(8))
        # Made under another name and renamed once locked: a file in place is never one whose
        # owner merely has not locked it yet (it would pass for a dead process's).
        making = self.path + _MAKING
        fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL, permissions.FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until this process ends
            os.ftruncate(fd, SLOT * SLOTS)
            self._map = mmap.mmap(fd, SLOT * SLOTS)
            os.rename(making, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(making)
            raise
        self._fd = fd  # kept open: closing it would drop the lock
        self._free = list(range(SLOTS - 1, -1, -1))

    def begin(self, entry: Entry) -> int | None:
        """Record an attempt's start; returns its slot, or None when it does not fit."""
        payload = pack(
            {
                "i": entry.iid,
                "l": entry.lease,
                "s": entry.step[0],
                "n": entry.step[1],
                "r": entry.record,
            }
        )
        if not self._free or len(payload) > SLOT - _LEN.size:
            return None
        slot = self._free.pop()
        at = slot * SLOT
        self._map[at + _LEN.size : at + _LEN.size + len(payload)] = payload
        _LEN.pack_into(self._map, at, len(payload))  # the length last: a slot is whole or free
        return slot

    def end(self, slot: int) -> None:
        _LEN.pack_into(self._map, slot * SLOT, 0)
        self._free.append(slot)


def read(path: str) -> list[Entry]:
    """The attempts a file holds (a slot caught mid-write, or damaged, is skipped)."""
    try:
        with open(path, "rb") as f:
            data = f.read(SLOT * SLOTS)
    except FileNotFoundError:
        return []
    found = []
    for at in range(0, len(data) - _LEN.size + 1, SLOT):
        (size,) = _LEN.unpack_from(data, at)
        if not 0 < size <= SLOT - _LEN.size:
            continue
        with contextlib.suppress(Exception):
            e = unpack(data[at + _LEN.size : at + _LEN.size + size], "attempt in flight")
            found.append(Entry(str(e["i"]), int(e["l"]), (str(e["s"]), int(e["n"])), bytes(e["r"])))
    return found


def files(folder: str) -> list[str]:
    """Every slot file of a workflow, its owner alive or not."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [os.path.join(folder, name) for name in names if not name.endswith(_MAKING)]


def dead_files(folder: str) -> list[str]:
    """The slot files whose owner is gone (nobody holds their lock)."""
    return [path for path in files(folder) if _unheld(path)]


def _unheld(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    finally:
        os.close(fd)  # closing drops the lock taken just now
    return True
