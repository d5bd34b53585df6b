"""`raydo backup FOLDER` and `raydo restore BACKUP STORAGE` (docs/cluster.md, "Durability").

backup joins the project's Ray and storage like every command and backs up every raydo node,
each onto its own disk, while instances run. restore is offline: it needs no Ray, only the
backup folder of one node and a new storage folder on this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..bindings.backup import backup, restore
from . import render
from .app import JsonOpt, app, connected
from .exits import Exit, fail, handled


@app.command("backup")
@handled
def backup_command(
    folder: Annotated[
        Path, typer.Argument(help="Where backups go: FOLDER/<node id> on each node's disk.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Back up every raydo node's storage while instances run (a consistent snapshot each)."""
    with connected():
        taken = backup(folder)
    rows = [vars(node) for node in taken]
    if as_json:
        render.print_json(rows)
    else:
        for row in rows:
            line = (
                f"node {row['node']}: {row['bytes']} bytes in {row['folder']}"
                if row["error"] is None
                else f"node {row['node']}: NOT backed up: {row['error']}"
            )
            render.out.print(line, markup=False)
    missed = [row["node"] for row in rows if row["error"] is not None]
    if missed:
        raise fail(
            f"{render.plural(len(missed), 'node')} not backed up: {missed}",
            Exit.FAILED,
            "failed",
            as_json,
        )


@app.command("restore")
@handled
def restore_command(
    backup_folder: Annotated[
        Path, typer.Argument(help="One node's backup: the FOLDER/<node id> a backup wrote.")
    ],
    storage: Annotated[Path, typer.Argument(help="A new or empty storage folder to fill.")],
    as_json: JsonOpt = False,
) -> None:
    """Make STORAGE a copy of one node's backup (offline). Started as that node's storage, its
    instances go on from the backup's state: what ran after the backup runs again."""
    restore(backup_folder, storage)
    done = {"backup": str(backup_folder.resolve()), "storage": str(storage.resolve())}
    if as_json:
        render.print_json(done)
        return
    render.out.print(
        f"restored {done['backup']} into {done['storage']}; start raydo on it "
        "(RAYDO_NODE_STORAGE for `ray start`, or raydo.init(storage))",
        markup=False,
    )
