"""Operations on many instances of a workflow at once, through the binding a script holds (so
they work the same on one node and on a cluster): terminate every unfinished instance, delete
every instance, read a file of ids. Shared by the CLI and the HTTP API.

Each page of instances is listed, then its operations are sent together and collected (one Ray
round trip per page rather than per instance). An instance that finished or vanished between the
listing and the operation is left alone: another actor or its own run got there first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InstanceNotFoundError, InvalidInputError, InvalidStateError
from ..runtime import listing
from ..runtime.model import InstanceStatus, StatusInfo
from ..runtime.rules import check_id, show
from .pending import Pending
from .workflow import Workflow, WorkflowInstance

PAGE = 500
MAX_IDS_FILE = 10_000
MAX_IDS_FILE_BYTES = 4 << 20
UNFINISHED = (
    InstanceStatus.QUEUED,
    InstanceStatus.RUNNING,
    InstanceStatus.PAUSED,
    InstanceStatus.WAITING,
    InstanceStatus.WAITING_FOR_PAUSE,
)


def check_terminable(status: Any) -> InstanceStatus | None:
    """A status filter for terminate-all: none (every unfinished instance) or an unfinished one."""
    wanted = listing.check_status_filter(status)
    if wanted is not None and wanted not in UNFINISHED:
        allowed = ", ".join(s.value for s in UNFINISHED)
        raise InvalidInputError(
            f"status {show(status)} cannot be terminated; terminate-all takes one of {allowed} "
            "(or no status: every unfinished instance)",
            value=show(status),
        )
    return wanted


def terminate_all(wf: Workflow, status: Any = None) -> list[str]:
    """Terminate every unfinished instance of `wf` (only those in `status`, if given). Returns
    the ids terminated."""
    wanted = check_terminable(status)
    return _apply_to_pages(wf, wanted, lambda inst: inst.terminate(), _unfinished)


def _unfinished(st: StatusInfo) -> bool:
    return not st.status.finished


def delete_all(wf: Workflow) -> list[str]:
    """Delete every instance of `wf` with all its keys (running ones are stopped first)."""
    return _apply_to_pages(wf, None, lambda inst: inst.delete())


def _apply_to_pages(
    wf: Workflow,
    status: InstanceStatus | None,
    op: Callable[[WorkflowInstance], Pending[Any]],
    only: Callable[[StatusInfo], bool] = lambda st: True,
) -> list[str]:
    """`op` on every instance listed (oldest first), a page at a time."""
    done: list[str] = []
    cursor = None
    while True:
        page = wf.list_instances(status=status, limit=PAGE, cursor=cursor, reverse=True).result()
        chosen = [st.id for st in page.instances if only(st)]
        sent = [(iid, op(WorkflowInstance(wf, iid))) for iid in chosen]
        done += [iid for iid, pending in sent if _landed(pending)]
        if page.cursor is None:
            return done
        cursor = page.cursor


def _landed(pending: Pending[Any]) -> bool:
    try:
        pending.result()
    except (InvalidStateError, InstanceNotFoundError):
        return False  # finished or deleted since the listing
    return True


def read_ids_file(path: str | Path) -> list[str]:
    """Instance ids from a file: one per line (blank lines and lines starting with # are
    skipped), or a JSON array of strings. Every id is checked before anything is done."""
    source = Path(path)
    try:
        if source.stat().st_size > MAX_IDS_FILE_BYTES:
            raise InvalidInputError(
                f"ids file {str(source)!r} is over {MAX_IDS_FILE_BYTES} bytes", value=str(source)
            )
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"ids file {str(source)!r} cannot be read as UTF-8 text ({exc})", value=str(source)
        ) from None
    ids = _json_ids(text, source) if text.lstrip().startswith("[") else _line_ids(text)
    if not ids or len(ids) > MAX_IDS_FILE:
        raise InvalidInputError(
            f"ids file {str(source)!r} holds {len(ids)} ids; it must hold 1 to {MAX_IDS_FILE}",
            value=str(source),
        )
    return [check_id(i) for i in ids]


def _line_ids(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _json_ids(text: str, source: Path) -> list[str]:
    import json

    try:
        found = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"ids file {str(source)!r} starts with '[' but is not a JSON array ({exc})",
            value=str(source),
        ) from None
    if not isinstance(found, list) or not all(isinstance(i, str) for i in found):
        raise InvalidInputError(
            f"ids file {str(source)!r} must be a JSON array of strings", value=str(source)
        )
    return found
