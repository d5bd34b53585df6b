"""Listing instances: status filter, newest or oldest first, pages with an opaque cursor.

The order is (created_at, id): stable, and a cursor (the last key a page showed) resumes after it
even when instances are created or deleted between pages. A page walks storage's listing index
(storage/keys.py `C` and `S`) from the cursor and reads only the records it shows; counts come from
the kept counters. Statuses known only in memory (waitingForPause, an unwritable error) are laid
over both from the namespace's few such instances. `page` and `counts` over snapshots remain for
merging pages of several nodes and for tests.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..errors import InvalidInputError
from ..storage.records import InstanceRecord
from .model import InstanceStatus
from .namespace import Snapshot
from .rules import check_id, show

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
_MAX_CURSOR = 400


class Listable(Protocol):
    """What a listing reads from storage (storage.instances.InstanceStore)."""

    def get(self, iid: str) -> InstanceRecord | None: ...
    def listed(
        self,
        status: str | None,
        reverse: bool,
        limit: int,
        after: tuple[float, str] | None = None,
        span: tuple[float | None, float | None] = (None, None),
    ) -> list[InstanceRecord]: ...
    def counts(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class Query:
    """One listing request, checked (check_query)."""

    status: InstanceStatus | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    reverse: bool = False
    since: float | None = None  # created at or after (epoch seconds)
    until: float | None = None  # created at or before


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


def check_time(value: Any, what: str) -> float | None:
    """A date filter: None, epoch seconds, or a datetime (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    if _is_time(value):
        return float(value)
    raise InvalidInputError(
        f"{what} {show(value)} must be a datetime or epoch seconds (a finite number)",
        value=show(value),
    )


_HALF_US = 0.5e-6


def _bound(value: Any, what: str, upper: bool) -> float | None:
    """check_time, widened by half a microsecond when given a datetime: stored creation times are
    floats finer than a datetime, which rounds them to the microsecond, so an instance's own
    `created_at` given back as a bound must still include that instance."""
    bound = check_time(value, what)
    if bound is None or not isinstance(value, datetime):
        return bound
    return bound + _HALF_US if upper else bound - _HALF_US


def parse_time(value: str | None, what: str) -> float | None:
    """A date filter given as text (CLI, HTTP): ISO 8601 (naive means UTC) or epoch seconds."""
    if value is None:
        return None
    try:
        return (
            float(value) if _is_number(value) else check_time(datetime.fromisoformat(value), what)
        )
    except ValueError:
        raise InvalidInputError(
            f"{what} {show(value)} is not an ISO 8601 date/time or epoch seconds",
            value=show(value),
        ) from None


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def check_query(
    status: Any = None,
    limit: Any = DEFAULT_LIMIT,
    cursor: Any = None,
    reverse: Any = False,
    since: Any = None,
    until: Any = None,
) -> Query:
    """Every listing argument checked; InvalidInputError names the first one that is wrong."""
    decode_cursor(cursor)
    if not isinstance(reverse, bool):
        raise InvalidInputError(f"reverse {show(reverse)} must be a bool", value=show(reverse))
    return Query(
        check_status_filter(status),
        check_limit(limit),
        cursor,
        reverse,
        _bound(since, "created_after", upper=False),
        _bound(until, "created_before", upper=True),
    )


Report = Callable[[InstanceRecord], Snapshot]


def page_indexed(store: Listable, report: Report, overlaid: Iterable[str], q: Query) -> Page:
    """One page read through the listing index. `report` turns a stored record into what
    status() says; `overlaid` are the ids whose reported status may differ from the stored one."""
    shown = [] if q.status is InstanceStatus.WAITING_FOR_PAUSE else _from_index(store, report, q)
    if q.status is not None:
        shown += _overlaid(store, report, overlaid, q)
        shown.sort(key=_key, reverse=not q.reverse)
    more = len(shown) > q.limit
    shown = shown[: q.limit]
    return Page(shown, encode_cursor(shown[-1]) if more and shown else None)


def _from_index(store: Listable, report: Report, q: Query) -> list[Snapshot]:
    """Up to limit + 1 instances stored in q.status (any, if None) and reported in it."""
    stored = None if q.status is None else q.status.value
    after, shown = decode_cursor(q.cursor), list[Snapshot]()
    while len(shown) <= q.limit:
        recs = store.listed(stored, q.reverse, q.limit + 1, after, (q.since, q.until))
        for rec in recs:
            snap = report(rec)
            if q.status is None or effective_status(snap) == q.status:
                shown.append(snap)
        if len(recs) <= q.limit:
            break
        after = (recs[-1].created_at, recs[-1].id)
    return shown


def _overlaid(store: Listable, report: Report, ids: Iterable[str], q: Query) -> list[Snapshot]:
    """Instances reported in q.status though stored in another, inside the query's window."""
    after = decode_cursor(q.cursor)
    found = []
    for iid in ids:
        rec = store.get(iid)
        if rec is None or str(rec.status) == str(q.status):
            continue
        snap = report(rec)
        key = _key(snap)
        if effective_status(snap) != q.status or not _inside(key, after, q):
            continue
        found.append(snap)
    return found


def _inside(key: tuple[float, str], after: tuple[float, str] | None, q: Query) -> bool:
    if after is not None and (key <= after if q.reverse else key >= after):
        return False
    return (q.since is None or key[0] >= q.since) and (q.until is None or key[0] <= q.until)


def kept_counts(store: Listable, report: Report, overlaid: Iterable[str]) -> dict[str, int]:
    """The kept counters, with the overlaid instances moved to the status they are reported in."""
    found = {**dict.fromkeys((s.value for s in InstanceStatus), 0), **store.counts()}
    for iid in overlaid:
        rec = store.get(iid)
        if rec is not None:
            stored = str(rec.status)
            shown = effective_status(report(rec)).value
            if shown != stored and found[stored] > 0:
                found[stored] -= 1
                found[shown] += 1
    return found
