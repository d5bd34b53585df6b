"""The listing index and kept counters (storage/keys.py `C`, `S`, `K`): always in step with the
records, through random create / status change / delete sequences, a SIGKILL mid-stream and the
version-1 migration; listings read through the index agree with the rules of runtime/listing.py."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from raydo.errors import CorruptRecordError, InvalidInputError
from raydo.runtime import listing
from raydo.runtime.model import InstanceStatus
from raydo.runtime.namespace import Snapshot
from raydo.storage import keys, migrate
from raydo.storage.instances import InstanceStore, check_schema
from raydo.storage.kv import KV, LmdbKV, MemoryKV, Reader
from raydo.storage.records import InstanceRecord, pack_instance, unpack_instance

STORED = [s for s in InstanceStatus if s.value not in ("waitingForPause", "unknown")]


def index_matches_records(kv: KV) -> None:
    """The `C` and `S` keys and the `K` counters are exactly what the records say."""

    def apply(r: Reader) -> None:
        recs = {}
        for _, raw in r.scan(keys.ALL_INSTANCES):
            with contextlib.suppress(CorruptRecordError):  # corrupt: never listed
                found = unpack_instance(raw, "r")
                recs[(found.workflow, found.id)] = found
        created = {(k, b"") for k, _ in r.scan(b"C\x00")}
        by_status = {(k, b"") for k, _ in r.scan(b"S\x00")}
        want_c = {(keys.by_created(w, x.created_at, i), b"") for (w, i), x in recs.items()}
        want_s = {
            (keys.by_status(w, str(x.status), x.created_at, i), b"") for (w, i), x in recs.items()
        }
        assert created == want_c
        assert by_status == want_s
        tally = Counter((w, str(x.status)) for (w, _), x in recs.items())
        for wf in {w for w, _ in recs} | {"a", "b"}:
            for status in STORED:
                assert (
                    keys.decode_u64(r.get(keys.count(wf, status.value)))
                    == tally[(wf, status.value)]
                ), (wf, status)

    kv.read(apply)


def random_ops(kv: KV, seed: int, steps: int) -> None:
    """Creates, status changes (finishing, pausing, waiting, restarting) and deletes."""
    rng = random.Random(seed)
    stores = {wf: InstanceStore(kv, wf) for wf in ("a", "b")}
    alive: dict[str, list[str]] = {"a": [], "b": []}
    for n in range(steps):
        wf = rng.choice("ab")
        store, ids = stores[wf], alive[wf]
        roll = rng.random()
        if roll < 0.4 or not ids:
            batch = [(f"{seed}-{n}-{k}", b"p") for k in range(rng.randint(1, 3))]
            store.create(batch, float(rng.randint(0, 50)), skip_existing=True)
            ids += [iid for iid, _ in batch]
        elif roll < 0.8:
            rec = store.require(rng.choice(ids))
            rec.status = rng.choice(STORED)
            rec.wake_at = float(n) if rec.status is InstanceStatus.WAITING else None
            store.save(rec, durable=False)
        else:
            iid = ids.pop(rng.randrange(len(ids)))
            store.delete(iid)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_index_and_counters_follow_random_sequences_in_memory(seed: int) -> None:
    kv = MemoryKV()
    check_schema(kv)
    random_ops(kv, seed, 400)
    index_matches_records(kv)


def test_index_and_counters_follow_random_sequences_on_lmdb(tmp_path: Path) -> None:
    kv = LmdbKV(str(tmp_path / "db"))
    check_schema(kv)
    random_ops(kv, 7, 600)
    index_matches_records(kv)
    kv.close()


_KILLED_WRITER = """
import sys
from raydo.storage.kv import LmdbKV
from raydo.storage.instances import check_schema
sys.path.insert(0, {tests!r})
from test_listing_index import random_ops
kv = LmdbKV({path!r})
check_schema(kv)
for seed in range(10_000):
    random_ops(kv, seed, 50)
    print(seed, flush=True)
"""


def test_index_survives_sigkill_mid_stream(tmp_path: Path) -> None:
    """A writer killed at a random point leaves index and counters in step with the records
    (they are written in the record's own transaction)."""
    path = str(tmp_path / "db")
    code = _KILLED_WRITER.format(tests=str(Path(__file__).parent), path=path)
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for _ in range(2 + round_):  # wait for progress, not for a time
            assert proc.stdout.readline(), "the writer died before it wrote"
        time.sleep(random.random() / 20)  # land the kill at a random point of a sequence
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kv = LmdbKV(path)
        index_matches_records(kv)
        kv.close()


def make_v1(kv: KV, count: int) -> list[InstanceRecord]:
    """A version-1 storage: records (and a timer) as version 1 wrote them, no index."""
    recs = []
    statuses = [InstanceStatus.COMPLETE, InstanceStatus.WAITING, InstanceStatus.QUEUED]
    for n in range(count):
        wf = "a" if n % 3 else "b"
        rec = InstanceRecord(f"i{n:04d}", wf, statuses[n % 3], float(n % 17))
        recs.append(rec)

    def apply(w: object) -> None:
        assert hasattr(w, "put")
        w.put(keys.SCHEMA_KEY, keys.encode_u64(1))
        w.put(keys.IDENTITY_KEY, b"x" * 32)
        for rec in recs:
            w.put(keys.instance(rec.workflow, rec.id), pack_instance(rec))
        w.put(keys.instance("a", "broken"), b"\xc1 not msgpack")

    kv.write(apply)  # type: ignore[arg-type]
    return recs


def test_v1_storage_is_migrated_once_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrate, "CHUNK", 7)  # several chunk transactions
    kv = LmdbKV(str(tmp_path / "db"))
    recs = make_v1(kv, 100)
    check_schema(kv)
    assert kv.read(lambda r: keys.decode_u64(r.get(keys.SCHEMA_KEY))) == keys.SCHEMA_VERSION
    # the corrupt record stays out of the index; every decodable one is in it
    store = InstanceStore(kv, "a")
    assert kv.read(lambda r: r.get(keys.by_created("a", 0.0, "broken"))) is None
    shown = store.listed(None, True, 1000)
    want = sorted((r for r in recs if r.workflow == "a"), key=lambda r: (r.created_at, r.id))
    assert [r.id for r in shown] == [r.id for r in want]
    counts = store.counts()
    assert counts["complete"] == sum(1 for r in want if r.status is InstanceStatus.COMPLETE)
    assert counts["queued"] == sum(1 for r in want if r.status is InstanceStatus.QUEUED)
    # opening again does not migrate again (counters are not doubled)
    check_schema(kv)
    assert store.counts() == counts
    kv.close()


def test_v1_migration_interrupted_is_redone_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrate, "CHUNK", 5)
    kv = MemoryKV()
    make_v1(kv, 40)
    calls = 0
    real = migrate._count_and_stamp

    def dies_at_the_end(w: object) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("killed before the stamp")

    monkeypatch.setattr(migrate, "_count_and_stamp", dies_at_the_end)
    with pytest.raises(RuntimeError):
        check_schema(kv)
    assert kv.read(lambda r: keys.decode_u64(r.get(keys.SCHEMA_KEY))) == 1
    monkeypatch.setattr(migrate, "_count_and_stamp", real)
    check_schema(kv)
    index_matches_records(kv)


# -- listings through the index agree with the pure rules ------------------------------------


def filled(count: int = 60) -> tuple[InstanceStore, list[Snapshot]]:
    kv = MemoryKV()
    check_schema(kv)
    store = InstanceStore(kv, "wf")
    rng = random.Random(5)
    for n in range(count):
        store.create([(f"i{n:03d}", b"")], float(rng.randint(0, 20)), skip_existing=False)
        rec = store.require(f"i{n:03d}")
        rec.status = rng.choice(STORED)
        store.save(rec)
    snaps = [Snapshot(rec, None, None, False) for rec in store.records()]
    return store, snaps


def walk_indexed(store: InstanceStore, pausing: set[str], q: listing.Query) -> list[str]:
    def report(rec: InstanceRecord) -> Snapshot:
        return Snapshot(rec, None, None, rec.id in pausing)

    seen: list[str] = []
    while True:
        page = listing.page_indexed(store, report, pausing, q)
        seen += [s.record.id for s in page.snapshots]
        if page.cursor is None:
            return seen
        q = listing.Query(q.status, q.limit, page.cursor, q.reverse, q.since, q.until)


def walk_pure(snaps: list[Snapshot], q: listing.Query) -> list[str]:
    inside = [
        s
        for s in snaps
        if (q.since is None or s.record.created_at >= q.since)
        and (q.until is None or s.record.created_at <= q.until)
    ]
    return [s.record.id for s in listing.page(inside, q.status, 10_000, None, q.reverse).snapshots]


@pytest.mark.parametrize("status", [None, *STORED, InstanceStatus.WAITING_FOR_PAUSE])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("span", [(None, None), (5.0, None), (None, 12.0), (4.0, 4.0)])
def test_indexed_pages_match_the_rules(
    status: InstanceStatus | None, reverse: bool, span: tuple[float | None, float | None]
) -> None:
    store, snaps = filled()
    pausing = {s.record.id for s in snaps[::7] if s.record.status == "running"}
    for s in snaps:
        s.pausing = s.record.id in pausing
    q = listing.Query(status, 4, None, reverse, *span)
    assert walk_indexed(store, pausing, q) == walk_pure(snaps, q)


def test_kept_counts_match_a_recount_with_pausing_laid_over() -> None:
    store, snaps = filled()
    pausing = {s.record.id for s in snaps if s.record.status == "running"}
    for s in snaps:
        s.pausing = s.record.id in pausing
    got = listing.kept_counts(store, lambda r: Snapshot(r, None, None, r.id in pausing), pausing)
    assert got == listing.counts(snaps)
    assert got["waitingForPause"] == len(pausing) > 0


def test_date_filters_are_checked() -> None:
    assert listing.check_query(since=10, until=20.5) == listing.Query(since=10.0, until=20.5)
    assert listing.parse_time("2026-01-01T00:00:00", "x") == 1767225600.0  # naive = UTC
    assert listing.parse_time("2026-01-01T01:00:00+01:00", "x") == 1767225600.0
    assert listing.parse_time("1767225600", "x") == 1767225600.0
    with pytest.raises(InvalidInputError, match="created_after 'yesterday'"):
        listing.check_query(since="yesterday")
    with pytest.raises(InvalidInputError, match="--until 'soon' is not an ISO 8601"):
        listing.parse_time("soon", "--until")
    with pytest.raises(InvalidInputError, match="created_before nan"):
        listing.check_query(until=float("nan"))


def test_backward_scan_edges_in_memory() -> None:
    kv = MemoryKV()
    kv.write(lambda w: [w.put(k, b"") for k in (b"a\x00", b"b\x00x", b"b\x00y", b"c")])
    assert kv.read(lambda r: [k for k, _ in r.scan_back(b"b\x00")]) == [b"b\x00y", b"b\x00x"]
    got = kv.read(lambda r: [k for k, _ in r.scan_back(b"b\x00", b"b\x00x")])
    assert got == [b"b\x00x"]


def test_backward_scan_edges_on_lmdb(tmp_path: Path) -> None:
    kv = LmdbKV(str(tmp_path / "db"))
    kv.write(lambda w: [w.put(k, b"") for k in (b"a\x00", b"b\x00x", b"b\x00y", b"c")])
    assert kv.read(lambda r: [k for k, _ in r.scan_back(b"b\x00")]) == [b"b\x00y", b"b\x00x"]
    assert kv.read(lambda r: [k for k, _ in r.scan_back(b"b\x00", b"b\x00xx")]) == [b"b\x00x"]
    assert kv.read(lambda r: [k for k, _ in r.scan_back(b"c")]) == [b"c"]
    assert kv.read(lambda r: [k for k, _ in r.scan_back(b"a\x00", b"a\x00")]) == [b"a\x00"]
    assert kv.read(lambda r: [k for k, _ in r.scan_back(b"d")]) == []
    kv.close()


def test_a_created_at_given_back_as_a_datetime_bound_includes_its_instance() -> None:
    # a stored creation time is a float finer than a datetime's microsecond (which rounds it)
    for k in range(2000):
        created = 1_763_900_000.0 + k * 0.1234567891
        shown = datetime.fromtimestamp(created, tz=UTC)
        since = listing.check_query(None, 10, None, False, shown, None).since
        until = listing.check_query(None, 10, None, False, None, shown).until
        assert since is not None and until is not None
        assert since <= created <= until, (k, created, shown)


def test_a_status_change_writes_only_the_index_keys_that_change() -> None:
    """Every key written costs its B-tree leaf a page write on commit: a status change moves
    the by-status key and the two counters, and leaves the by-creation key alone."""
    kv = MemoryKV()
    store = InstanceStore(kv, "a")
    store.create([("x", b"p")], 7.0, skip_existing=False)
    touched: list[bytes] = []

    def tracking(fn):  # type: ignore[no-untyped-def]
        def apply(w):  # type: ignore[no-untyped-def]
            put, delete = w.put, w.delete
            w.put = lambda k, v: (touched.append(k), put(k, v))[1]
            w.delete = lambda k: (touched.append(k), delete(k))[1]
            return fn(w)

        return apply

    write = kv.write
    kv.write = lambda fn, durable=True: write(tracking(fn), durable)  # type: ignore[method-assign]
    rec = store.require("x")
    rec.status = InstanceStatus.RUNNING
    store.save(rec, durable=False)
    regions = Counter(k[:1] for k in touched)
    assert regions[b"C"] == 0, touched
    assert regions[b"S"] == 2 and regions[b"K"] == 2 and regions[b"I"] == 1, touched
    index_matches_records(kv)
