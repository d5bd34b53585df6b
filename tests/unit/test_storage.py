from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from raydo.errors import CorruptRecordError, PayloadError, SchemaVersionError
from raydo.runtime.timers import TimerQueue
from raydo.storage import keys
from raydo.storage.codec import decode, encode
from raydo.storage.instances import InstanceStore, TimerIndex, check_schema
from raydo.storage.kv import LmdbKV, MemoryKV


class Point(BaseModel):
    x: int
    at: datetime


def test_codec_round_trips_data_datetimes_and_models() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    value = {"a": [1, 2.5, "s", None, True, b"raw"], "when": now, "p": Point(x=1, at=now)}
    back = decode(encode(value))
    assert back["a"] == [1, 2.5, "s", None, True, b"raw"]
    assert back["when"] == now
    assert back["p"] == Point(x=1, at=now)


def test_codec_rejects_unstorable_and_oversized_naming_them() -> None:
    with pytest.raises(PayloadError, match=r"params of x.*not serializable"):
        encode({"f": object()}, "params of x")
    with pytest.raises(PayloadError, match="1 MiB"):
        encode("x" * (1 << 20), "result of step 'a'")
    with pytest.raises(PayloadError):
        encode(1 << 70, "huge int")


def test_decoding_never_runs_code() -> None:
    import pickle

    class Boom:
        def __reduce__(self) -> tuple[object, ...]:
            return (print, ("pwned",))

    with pytest.raises(CorruptRecordError):
        decode(pickle.dumps(Boom()))


def test_keys_sort_in_logical_order() -> None:
    assert keys.step("w", "i", "a", 2) < keys.step("w", "i", "a", 10)
    assert keys.event("w", "i", "t", 9) < keys.event("w", "i", "t", 256)
    assert keys.timer(10.0, "w", "b") < keys.timer(200.0, "w", "a")
    assert keys.step_id_of(keys.step("w", "i", "name with spaces", 7)) == ("name with spaces", 7)
    assert keys.timer_of(keys.timer(12.5, "wf", "id-1")) == (12.5, "wf", "id-1")


def test_lmdb_map_grows_when_full_and_keeps_everything(tmp_path: Path) -> None:
    kv = LmdbKV(str(tmp_path / "db"))
    start = kv.map_size()
    blob = b"x" * (1 << 20)
    for n in range(100):
        kv.write(lambda w, n=n: w.put(b"k%03d" % n, blob), durable=False)
    assert kv.map_size() > start
    assert kv.read(lambda r: sum(1 for _ in r.scan(b"k"))) == 100
    kv.close()


def test_lmdb_size_cap_raises_and_writes_nothing(tmp_path: Path) -> None:
    from raydo.errors import StorageFullError

    kv = LmdbKV(str(tmp_path / "db"), max_map_size=8 << 20)
    with pytest.raises(StorageFullError, match="size cap"):
        kv.write(lambda w: [w.put(b"k%d" % n, b"x" * (1 << 20)) for n in range(20)])
    assert kv.read(lambda r: r.get(b"k0")) is None
    kv.close()


def test_schema_version_guard(tmp_path: Path) -> None:
    kv = LmdbKV(str(tmp_path / "db"))
    check_schema(kv)
    check_schema(kv)
    kv.write(lambda w: w.put(keys.SCHEMA_KEY, keys.encode_u64(keys.SCHEMA_VERSION + 1)))
    with pytest.raises(SchemaVersionError, match=f"schema version {keys.SCHEMA_VERSION + 1}"):
        check_schema(kv)
    kv.close()


def test_timer_index_follows_the_record() -> None:
    kv = MemoryKV()
    store = InstanceStore(kv, "wf")
    (rec,) = store.create([("a", encode(None))], now=0.0, skip_existing=False)
    rec.wake_at = 100.0
    store.save(rec)
    assert TimerIndex(kv).due(150.0) == [(100.0, "wf", "a")]
    assert TimerIndex(kv).due(50.0) == []
    rec.wake_at = 300.0
    store.save(rec)
    assert TimerIndex(kv).due(1e9) == [(300.0, "wf", "a")]
    store.delete("a")
    assert TimerIndex(kv).due(1e9) == []


def test_corrupt_record_is_reported_for_that_instance_only() -> None:
    kv = MemoryKV()
    store = InstanceStore(kv, "wf")
    store.create([("a", encode(1)), ("b", encode(2))], now=0.0, skip_existing=False)
    kv.write(lambda w: w.put(keys.instance("wf", "a"), b"\xc1garbage"))
    with pytest.raises(CorruptRecordError, match="'a'"):
        store.require("a")
    assert [r.id for r in store.records()] == ["b"]


def test_timer_queue_keeps_latest_schedule_per_instance() -> None:
    q = TimerQueue()
    q.add(10.0, "w", "a")
    q.add(5.0, "w", "b")
    q.add(20.0, "w", "a")  # rescheduled: the 10.0 entry is stale
    assert q.next_due() == 5.0
    assert q.pop_due(15.0) == [("w", "b")]
    assert q.next_due() == 20.0
    assert q.pop_due(25.0) == [("w", "a")]
    assert len(q) == 0


def test_sync_mode_is_a_property_of_the_storage(tmp_path: Path) -> None:
    from raydo.storage.instances import set_sync_mode

    path = str(tmp_path / "db")
    kv = LmdbKV(path)
    assert kv.sync_each_commit
    set_sync_mode(kv, False)
    kv.close()
    again = LmdbKV(path)  # another process opening the storage sees the same mode
    assert not again.sync_each_commit
    again.write(lambda w: w.put(b"k", b"v"))  # flushed by the background flusher
    assert again.read(lambda r: r.get(b"k")) == b"v"
    again.close()


def test_sync_commits_on_keeps_the_storage_whole_through_a_power_loss(tmp_path: Path) -> None:
    """On (the default), every commit fsyncs its pages before LMDB writes the meta page that
    points at them (NOMETASYNC), so the meta page on disk never points at pages still in the page
    cache; off is LMDB's NOSYNC. Switching reopens the environment in the other mode."""
    path = str(tmp_path / "db")
    kv = LmdbKV(path)
    assert kv._env.flags()["sync"] and not kv._env.flags()["metasync"]
    kv.write(lambda w: w.put(b"a", b"1"))
    first = kv._committed
    kv.write(lambda w: w.put(b"b", b"2"), durable=False)
    # The second commit's own fsync covered the first one's meta page: durable without a sync.
    assert kv._group.covered() >= first
    kv.sync_each_commit = False
    assert not kv._env.flags()["sync"]
    assert kv.read(lambda r: (r.get(b"a"), r.get(b"b"))) == (b"1", b"2")
    kv.sync_each_commit = True
    assert kv._env.flags()["sync"]
    kv.close()
