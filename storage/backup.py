"""Online backup of one node's storage, and restore. No Ray.

A backup is a folder holding one compacted LMDB file, copied inside one read transaction: a
consistent snapshot of the live storage, taken while instances keep running, and the blob files
of big step results (storage/blobs.py), copied after it. It carries the
storage's identity, so a storage restored from it is the same raydo node (same node id, same
actor names) wherever it is restored. It has the storage's own modes: folder 0700, file 0600
(permissions.py), written under a temporary name and renamed, so a half-written backup never
looks whole.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import BinaryIO

import lmdb

from ..errors import InvalidInputError, SchemaVersionError, StorageError
from . import blobs, keys, permissions
from .kv import LmdbKV

DATA = "data.mdb"
_PARTIAL = "data.mdb.partial"


def backup(kv: LmdbKV, folder: str) -> int:
    """Copy the live storage `kv` into `folder` (new, or an empty folder). Returns its size."""
    folder = os.path.abspath(folder)
    _require_new(folder, "backup folder")
    permissions.secure_folder(folder)
    _write_private(os.path.join(folder, _PARTIAL), kv.copy_to)
    os.replace(os.path.join(folder, _PARTIAL), os.path.join(folder, DATA))
    blobs.sync_folder(folder)
    # after the snapshot: every blob it points at was written before its pointer
    copied = blobs.copy_all(kv.path, folder)
    return os.path.getsize(os.path.join(folder, DATA)) + copied


def restore(backup_folder: str, storage: str) -> None:
    """Make `storage` (a new or empty folder) a copy of the backup in `backup_folder`. No raydo
    may be using `storage`; instances go on from the state the backup holds."""
    source = os.path.join(os.path.abspath(backup_folder), DATA)
    check_backup(source)
    storage = os.path.abspath(storage)
    _require_new(storage, "storage folder to restore into")
    permissions.secure_folder(storage)
    with open(source, "rb") as src:
        _write_private(os.path.join(storage, _PARTIAL), lambda fd: _copy(src, fd))
    os.replace(os.path.join(storage, _PARTIAL), os.path.join(storage, DATA))
    blobs.sync_folder(storage)
    blobs.copy_all(os.path.dirname(source), storage)


def check_backup(data_file: str) -> None:
    """Refuse what is not a whole raydo backup of this schema version."""
    if not os.path.isfile(data_file):
        raise InvalidInputError(
            f"{os.path.dirname(data_file)!r} is not a raydo backup: it has no {DATA}",
            value=os.path.dirname(data_file),
        )
    try:
        env = lmdb.open(data_file, subdir=False, readonly=True, lock=False)
    except lmdb.Error as exc:
        raise InvalidInputError(f"{data_file!r} is not an LMDB file: {exc}") from exc
    try:
        with env.begin() as txn:
            version, identity = txn.get(keys.SCHEMA_KEY), txn.get(keys.IDENTITY_KEY)
    finally:
        env.close()
    if identity is None or version is None:
        raise InvalidInputError(f"{data_file!r} is an LMDB file but not a raydo storage")
    if keys.decode_u64(bytes(version)) not in (1, keys.SCHEMA_VERSION):  # 1: migrated at open
        found = keys.decode_u64(bytes(version))
        raise SchemaVersionError(
            f"backup {data_file!r} has schema version {found}; this raydo restores version "
            f"{keys.SCHEMA_VERSION} only",
            found=found,
            expected=keys.SCHEMA_VERSION,
        )


def _require_new(folder: str, what: str) -> None:
    if os.path.lexists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        raise InvalidInputError(
            f"{what} {folder!r} already exists and is not empty; give a new or empty folder "
            "(nothing was written)",
            value=folder,
        )


def _write_private(path: str, fill: Callable[[int], None]) -> None:
    """Create `path` 0600 whatever the umask (it must not exist), fill it, sync it; on failure
    remove it again."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, permissions.FILE_MODE)
    try:
        os.fchmod(fd, permissions.FILE_MODE)
        fill(fd)
        os.fsync(fd)
    except (OSError, StorageError) as exc:
        os.unlink(path)
        raise StorageError(f"cannot write {path!r}: {exc}") from exc
    finally:
        os.close(fd)


def _copy(src: BinaryIO, fd: int) -> None:
    with os.fdopen(os.dup(fd), "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
