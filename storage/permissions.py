"""Who may touch a storage folder: its owner only.

Params, step results and events are often personal data, tokens or payment details, and they stay
in storage as long as an instance is kept. So a new folder is made 0700 and LMDB's files 0600,
whatever the umask. An existing folder that other users can write is refused: they could swap
raydo's files for their own (ssh refuses a writable key folder for the same reason). One they can
read is used, with a warning that names the fix.

What is checked is the mode bits, not what the kernel would allow: root passes every permission
check, and no mode keeps root out.
"""

from __future__ import annotations

import os
import shlex
import stat
import warnings

from ..errors import StorageError, StoragePermissionError, StoragePermissionWarning

FOLDER_MODE = 0o700
FILE_MODE = 0o600
LMDB_FILES = ("data.mdb", "lock.mdb")
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
_OTHERS_ACCESS = stat.S_IRWXG | stat.S_IRWXO


def secure_folder(path: str) -> None:
    """Create the storage folder `path` private (0700), or check that an existing one is private
    enough: refuse it if other users can write it, warn if they can read it."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    try:
        # The umask can only narrow FOLDER_MODE, so the folder is never wider than 0700, not even
        # for a moment; the chmod restores owner bits a strict umask took away.
        os.mkdir(path, FOLDER_MODE)
    except FileExistsError:
        check_folder(path)
        return
    os.chmod(path, FOLDER_MODE)


def check_folder(path: str) -> None:
    """Refuse a folder other users can write (StoragePermissionError); warn about one they can
    read or enter (StoragePermissionWarning)."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StorageError(f"storage path {path!r} exists and is not a folder")
    mode = stat.S_IMODE(st.st_mode)
    if mode & _OTHERS_WRITE:
        raise StoragePermissionError(
            f"storage folder {path!r} has mode {mode:#o}: other users can write it and could "
            f"replace its data, so raydo refuses to use it; fix: chmod 700 {shlex.quote(path)}",
            path=path,
            mode=mode,
        )
    if mode & _OTHERS_ACCESS:
        warnings.warn(
            f"storage folder {path!r} has mode {mode:#o}: other users can read it (workflow "
            f"params, step results and events); fix: chmod 700 {shlex.quote(path)}",
            StoragePermissionWarning,
            stacklevel=2,
        )


def secure_files(path: str) -> None:
    """Give LMDB's files mode 0600 before LMDB opens them. Missing ones are created empty (LMDB
    starts a new environment in an empty file) so no umask ever applies to them; existing ones
    that others can reach are narrowed: they are raydo's own, so narrowing cannot break anyone."""
    for name in LMDB_FILES:
        file = os.path.join(path, name)
        try:
            fd = os.open(file, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, FILE_MODE)
        except FileExistsError:
            _narrow(file)
            continue
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)


def _narrow(file: str) -> None:
    st = os.lstat(file)
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & _OTHERS_ACCESS:
        os.chmod(file, FILE_MODE)
