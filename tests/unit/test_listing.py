"""Listing rules: order, status filter, limit and cursor pages (pure, no Ray)."""

from __future__ import annotations

import pytest

from raydo.errors import InvalidInputError
from raydo.runtime import listing
from raydo.runtime.model import InstanceStatus
from raydo.runtime.namespace import Snapshot
from raydo.storage.instances import InstanceRecord


def snap(iid: str, created: float, status: str = "complete", pausing: bool = False) -> Snapshot:
    return Snapshot(InstanceRecord(iid, "wf", status, created), None, None, pausing)


SNAPS = [snap(f"i{n:02d}", float(n), "complete" if n % 3 else "errored") for n in range(10)]


def ids(page: listing.Page) -> list[str]:
    return [s.record.id for s in page.snapshots]


def walk(**kw: object) -> list[str]:
    """Every id, page by page, following cursors."""
    seen: list[str] = []
    cursor = None
    while True:
        page = listing.page(SNAPS, cursor=cursor, **kw)  # type: ignore[arg-type]
        seen += ids(page)
        if page.cursor is None:
            return seen
        cursor = page.cursor


def test_newest_first_and_reverse() -> None:
    assert ids(listing.page(SNAPS, limit=3)) == ["i09", "i08", "i07"]
    assert ids(listing.page(SNAPS, limit=3, reverse=True)) == ["i00", "i01", "i02"]


def test_cursor_walks_every_instance_once() -> None:
    assert walk(limit=3) == [f"i{n:02d}" for n in reversed(range(10))]
    assert walk(limit=4, reverse=True) == [f"i{n:02d}" for n in range(10)]
    assert walk(limit=10) == [f"i{n:02d}" for n in reversed(range(10))]
    assert listing.page(SNAPS, limit=10).cursor is None


def test_status_filter_and_counts() -> None:
    errored = walk(limit=2, status=InstanceStatus.ERRORED)
    assert errored == ["i09", "i06", "i03", "i00"]
    counts = listing.counts(SNAPS)
    assert counts["errored"] == 4 and counts["complete"] == 6 and counts["queued"] == 0
    assert set(counts) == {s.value for s in InstanceStatus}


def test_pausing_counts_as_waiting_for_pause() -> None:
    snaps = [snap("a", 1, "running", pausing=True), snap("b", 2, "complete", pausing=True)]
    page = listing.page(snaps, status=InstanceStatus.WAITING_FOR_PAUSE)
    assert ids(page) == ["a"]
    assert listing.counts(snaps)["waitingForPause"] == 1


def test_same_created_time_orders_by_id() -> None:
    snaps = [snap("b", 5), snap("a", 5), snap("c", 5)]
    assert walk_all(snaps) == ["c", "b", "a"]


def walk_all(snaps: list[Snapshot]) -> list[str]:
    out, cursor = [], None
    while True:
        page = listing.page(snaps, limit=1, cursor=cursor)
        out += ids(page)
        if page.cursor is None:
            return out
        cursor = page.cursor


@pytest.mark.parametrize(
    "bad", ["", "x", "!!!", "W10", "WyJhIiwgImIiXQ", "a" * 1000, 5, ["x"], "WzEsICIgIl0"]
)
def test_bad_cursor(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="not a cursor"):
        listing.decode_cursor(bad)


@pytest.mark.parametrize("bad", [0, -1, 1001, True, 2.0, "5", None])
def test_bad_limit(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        listing.check_limit(bad)


@pytest.mark.parametrize("bad", ["done", "", 3, "COMPLETE"])
def test_bad_status_filter(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="not a status"):
        listing.check_status_filter(bad)
