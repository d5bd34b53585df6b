"""Listing instances: status filter, newest or oldest first, pages with an opaque cursor.

Pure functions over snapshots (no Ray, no storage), so the rules are tested without either. The
order is (created_at, id): stable, and a cursor (the last key a page showed) resumes after it even
when instances are created or deleted between pages. Each page still scans every record of the
workflow; an index by creation time is the next step for very large workflows.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError
from .model import InstanceStatus
from .namespace import Snapshot
from .rules import check_id, show

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
_MAX_CURSOR = 400


@dataclass(frozen=True)
class Page:
    snapshots: list[Snapshot]
    cursor: str | None  # pass back to get the next page; None when this page is the last


def effective_status(snap: Snapshot) -> InstanceStatus:
    """The status status() reports: a pausing, unfinished instance is waitingForPause."""
    status = InstanceStatus(snap.record.status)
    if snap.pausing and not status.finished:
        return InstanceStatus.WAITING_FOR_PAUSE
    return status


def check_status_filter(value: Any) -> InstanceStatus | None:
    if value is None:
        return None
    try:
        return InstanceStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in InstanceStatus)
        raise InvalidInputError(
            f"status filter {show(value)} is not a status; use one of {allowed}", value=show(value)
        ) from None


def check_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidInputError(
            f"limit {show(value)} must be an int from 1 to {MAX_LIMIT}", value=show(value)
        )
    return value


def encode_cursor(snap: Snapshot) -> str:
    raw = json.dumps([snap.record.created_at, snap.record.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: Any) -> tuple[float, str] | None:
    """The key a cursor stands for; InvalidInputError for anything raydo did not give out."""
    if value is None:
        return None
    try:
        if len(value) <= _MAX_CURSOR:
            text = value + "=" * (-len(value) % 4)
            created, iid = json.loads(base64.urlsafe_b64decode(text.encode("ascii")))
            if _is_time(created):
                return float(created), check_id(iid)
    except (TypeError, ValueError, UnicodeError, RecursionError):
        pass
    raise InvalidInputError(
        f"cursor {show(value)} is not a cursor a listing gave out", value=show(value)
    )


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def page(
    snapshots: list[Snapshot],
    status: InstanceStatus | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    reverse: bool = False,
) -> Page:
    """Newest first (or oldest first with `reverse`), after `cursor`, at most `limit`."""
    after = decode_cursor(cursor)
    chosen = [s for s in snapshots if status is None or effective_status(s) == status]
    chosen.sort(key=_key, reverse=not reverse)
    if after is not None:
        chosen = [s for s in chosen if (_key(s) > after if reverse else _key(s) < after)]
    shown = chosen[:limit]
    more = len(chosen) > limit
    return Page(shown, encode_cursor(shown[-1]) if more and shown else None)


def counts(snapshots: list[Snapshot]) -> dict[str, int]:
    """How many instances are in each of the nine statuses (zeros included)."""
    found = dict.fromkeys((s.value for s in InstanceStatus), 0)
    for snap in snapshots:
        found[effective_status(snap).value] += 1
    return found


def _key(snap: Snapshot) -> tuple[float, str]:
    return (snap.record.created_at, snap.record.id)
