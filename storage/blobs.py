"""Step results over the record limit, kept by reference. No Ray.

A step result whose encoding is over MAX_VALUE_BYTES (1 MiB) and at most MAX_RESULT_BYTES is
written to a file in the storage folder, and the step record in LMDB holds only the file's name
(`StepRecord.blob`); reading the steps of an instance reads the file back into the record, so the
runtime sees the value as if it were inline. Layout and order:

    <storage>/blobs/<hash of workflow and instance id>/<sha256 of the bytes>     folders 0700,
                                                                                  files 0600

- The file is written under a temporary name, fsynced, renamed and its folder fsynced BEFORE the
  step record that points at it is committed: a committed pointer never names a missing file.
  A crash in between leaves an unreferenced file, removed with the instance.
- Named by content: writing the same result again is a no-op.
- Deleted with the instance (InstanceStore.delete), and with the steps a restart erases (those
  no remaining step of the instance points at).
- Orphans (a crash between a delete's commit and the file's removal, or between a blob and its
  step record; a late write of a fenced activation) are swept when a namespace starts: files no
  record points at and untouched for ORPHAN_AGE are removed (`sweep`). `spill` touches a file it
  reuses, so a file about to be pointed at again is never old.
- A backup copies the blobs after LMDB's snapshot (storage/backup.py), so every pointer in the
  snapshot has its file (unless the instance was deleted meanwhile).
An in-memory storage keeps every value inline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil

from ..errors import CorruptRecordError, StorageError
from . import permissions
from .codec import MAX_VALUE_BYTES
from .kv import KV, MemoryKV
from .records import StepRecord

FOLDER = "blobs"
_PARTIAL = ".partial"
ORPHAN_AGE = 3600.0
"""Seconds an unreferenced blob file is left alone: far longer than the gap between writing a
blob and committing its record."""


def spill(kv: KV, workflow: str, iid: str, step: StepRecord) -> StepRecord:
    """The step record to commit: `step` itself, or, when its value is over the record limit,
    a copy pointing at the blob file written (durably) first."""
    value = step.value
    if value is None or len(value) <= MAX_VALUE_BYTES or isinstance(kv, MemoryKV):
        return step
    name = hashlib.sha256(value).hexdigest()
    folder = instance_folder(kv.path, workflow, iid)
    try:
        os.utime(os.path.join(folder, name))  # reused: not an old orphan for `sweep`
    except FileNotFoundError:
        write_private(folder, name, value)
    return dataclasses.replace(step, value=None, blob=name)


def filled(kv: KV, workflow: str, iid: str, step: StepRecord) -> StepRecord:
    """`step` as read from LMDB, with a blob's bytes put back as its value."""
    if step.blob is None or step.value is not None:
        return step
    path = os.path.join(instance_folder(kv.path, workflow, iid), step.blob)
    try:
        with open(path, "rb") as f:
            step.value = f.read()
    except OSError as exc:
        raise CorruptRecordError(
            f"step result of instance {iid!r} is stored in blob {path!r}, which cannot be read: "
            f"{exc.strerror}",
            what=f"blob of instance {iid!r}",
        ) from None
    return step


def delete_instance(kv: KV, workflow: str, iid: str) -> None:
    """Remove every blob of an instance (after its records were deleted)."""
    if not isinstance(kv, MemoryKV):
        shutil.rmtree(instance_folder(kv.path, workflow, iid), ignore_errors=True)


def delete_files(kv: KV, workflow: str, iid: str, names: set[str]) -> None:
    """Remove these blobs of an instance (after the records pointing at them were erased)."""
    if isinstance(kv, MemoryKV):
        return
    folder = instance_folder(kv.path, workflow, iid)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(folder, name))


def sweep(storage: str, referenced: dict[str, set[str]], now: float, age: float) -> int:
    """Remove the blob files (and partial writes) of `storage` that `referenced` (instance
    folder -> file names pointed at) does not name and that are older than `age`; empty
    instance folders go too. Returns how many files were removed."""
    root = os.path.join(storage, FOLDER)
    removed = 0
    for folder in os.listdir(root) if os.path.isdir(root) else []:
        path = os.path.join(root, folder)
        for name in os.listdir(path):
            if name not in referenced.get(folder, set()) and _older(path, name, now, age):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(path, name))
                    removed += 1
        with contextlib.suppress(OSError):
            os.rmdir(path)  # only when empty
    return removed


def _older(folder: str, name: str, now: float, age: float) -> bool:
    try:
        return now - os.stat(os.path.join(folder, name)).st_mtime > age
    except FileNotFoundError:
        return False


def folder_name(workflow: str, iid: str) -> str:
    """The folder of an instance's blobs, under <storage>/blobs."""
    # Hashed: ids may hold characters a file name must not, and names stay short.
    return hashlib.sha256(workflow.encode() + b"\x00" + iid.encode()).hexdigest()[:32]


def instance_folder(storage: str, workflow: str, iid: str) -> str:
    return os.path.join(storage, FOLDER, folder_name(workflow, iid))


def write_private(folder: str, name: str, data: bytes) -> None:
    """Write `folder`/`name` (0600, folders 0700) durably: temporary file, fsync, rename,
    fsync of the folder."""
    for level in (os.path.dirname(folder), folder):
        permissions.secure_folder(level)
    final, partial = os.path.join(folder, name), os.path.join(folder, name + _PARTIAL)
    flags = os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW
    try:
        fd = os.open(partial, flags, permissions.FILE_MODE)
        try:
            os.fchmod(fd, permissions.FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, final)
        sync_folder(folder)
    except OSError as exc:
        raise StorageError(f"cannot write blob {final!r}: {exc}") from exc


def sync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_all(storage: str, target: str) -> int:
    """Copy every blob of `storage` into storage folder `target` (backup and restore); returns
    the bytes copied."""
    source_root = os.path.join(storage, FOLDER)
    total = 0
    if not os.path.isdir(source_root):
        return 0
    for instance in sorted(os.listdir(source_root)):
        source = os.path.join(source_root, instance)
        for name in sorted(os.listdir(source)):
            if name.endswith(_PARTIAL):
                continue  # a write that never finished: no record points at it
            try:
                with open(os.path.join(source, name), "rb") as f:
                    data = f.read()
            except FileNotFoundError:  # its instance was deleted meanwhile
                continue
            write_private(os.path.join(target, FOLDER, instance), name, data)
            total += len(data)
    return total
