"""The LMDB key layout. This is the only module that builds or parses keys.

Components are joined by NUL, which ids, workflow names, step names and event types can never hold
(the id rule and the no-control-characters rule forbid it). Numbers are fixed-width big-endian, so
keys sort in logical order and a timer queue or an event FIFO is a prefix scan.

    meta/schema                              -> schema version
    meta/sync                                -> durability mode of this storage
    meta/identity                            -> random secret made with the storage (actor names)
    meta/clock                               -> test clock offset (f64 seconds; raydo.testing only)
    I  wf  id                                -> instance record          (one per instance)
    N  wf  id  P                             -> params                   \
    N  wf  id  O                             -> output                    |
    N  wf  id  L                             -> lease (activation number) |  the instance's private
    N  wf  id  S  name  count(u32)           -> step record               |  namespace: only its
    N  wf  id  E  type  seq(u64)             -> buffered event            |  own actor (or the
    N  wf  id  Q                             -> next event sequence       |  namespace actor while
    N  wf  id  M                             -> test modifiers            |   it holds no actor)
    N  wf  id  H  seq(u64)                   -> history event            /
    M  wf                                    -> test modifiers for instances created next
    T  due_ms(u64)  wf  id                   -> timer (empty value): a wake-up, or the expiry of
                                                a finished instance past its retention
    C  wf  created(f64s)  id                 -> listing index by creation time (empty value)
    S  wf  status  created(f64s)  id         -> listing index by status, then creation time
    K  wf  status                            -> how many instances are stored in that status (u64)
    Y  wf                                    -> the workflow's cron schedules (storage/schedules.py)
    Y  wf  cron                              -> the last tick of that schedule fired (f64)

`C`, `S` and `K` are written in the same transaction as the record they reflect (create, status
change, delete: storage/instances.py `_put_record` and `delete`), so no crash leaves them out of
step. `f64s` is the creation time as a float made byte-sortable (sign bit flipped for >= 0, every
bit flipped below 0), so a forward scan is oldest first and a backward scan newest first, in
exactly the listing's (created_at, id) order; the id runs to the end of the key. Schema version 2
added them; a version-1 storage is migrated in place when first opened (storage/migrate.py).

The `M` keys and meta/clock exist only where raydo.testing wrote them: production storage has none.
A history event's sequence number is one past the newest `H` key's (storage/history.py); storages
written before 2026-11-24 also hold `N wf id h` (the next one, kept apart), which is no longer read
or written and goes with its instance.
"""

from __future__ import annotations

import functools
import struct

SCHEMA_KEY = b"meta\x00schema"
SCHEMA_VERSION = 2
SYNC_KEY = b"meta\x00sync"  # u64: 1 = fsync every durable commit, 0 = fsync on an interval
IDENTITY_KEY = b"meta\x00identity"  # 32 random bytes, written once
CLOCK_KEY = b"meta\x00clock"  # f64: seconds added to the system clock (raydo.testing)

_SEP = b"\x00"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")


def _enc(text: str) -> bytes:
    return text.encode("utf-8")


def instance(wf: str, iid: str) -> bytes:
    return b"I" + _SEP + _enc(wf) + _SEP + _enc(iid)


def instances_of(wf: str) -> bytes:
    return b"I" + _SEP + _enc(wf) + _SEP


ALL_INSTANCES = b"I" + _SEP


def instance_id_of(key: bytes) -> str:
    return key.rsplit(_SEP, 1)[1].decode("utf-8")


@functools.lru_cache(maxsize=4096)
def namespace(wf: str, iid: str) -> bytes:
    """The prefix of every key of one instance (cached: the step path builds ~10 per step)."""
    return b"N" + _SEP + _enc(wf) + _SEP + _enc(iid) + _SEP


def params(wf: str, iid: str) -> bytes:
    return namespace(wf, iid) + b"P"


def output(wf: str, iid: str) -> bytes:
    return namespace(wf, iid) + b"O"


def lease(wf: str, iid: str) -> bytes:
    return namespace(wf, iid) + b"L"


def event_seq(wf: str, iid: str) -> bytes:
    return namespace(wf, iid) + b"Q"


def modifiers(wf: str, iid: str) -> bytes:
    return namespace(wf, iid) + b"M"


def workflow_modifiers(wf: str) -> bytes:
    return b"M" + _SEP + _enc(wf)


def history_of(wf: str, iid: str) -> bytes:
    return namespace(wf, iid) + b"H" + _SEP


def history_event(wf: str, iid: str, seq: int) -> bytes:
    return history_of(wf, iid) + _U64.pack(seq)


def history_seq_of(key: bytes) -> int:
    return int(_U64.unpack(key[-8:])[0])


def steps_of(wf: str, iid: str) -> bytes:
    return namespace(wf, iid) + b"S" + _SEP


def step(wf: str, iid: str, name: str, count: int) -> bytes:
    return steps_of(wf, iid) + _enc(name) + _SEP + _U32.pack(count)


def step_id_of(key: bytes) -> tuple[str, int]:
    body, count = key[:-5], key[-4:]
    return body.rsplit(_SEP, 1)[1].decode("utf-8"), _U32.unpack(count)[0]


def events_of(wf: str, iid: str, type_: str) -> bytes:
    return namespace(wf, iid) + b"E" + _SEP + _enc(type_) + _SEP


def event(wf: str, iid: str, type_: str, seq: int) -> bytes:
    return events_of(wf, iid, type_) + _U64.pack(seq)


TIMERS = b"T" + _SEP


def schedules(wf: str) -> bytes:
    return b"Y" + _SEP + _enc(wf)


def schedule_tick(wf: str, cron: str) -> bytes:
    return schedules(wf) + _SEP + _enc(cron)


_U64_MAX = (1 << 64) - 1


def timer(due: float, wf: str, iid: str) -> bytes:
    due_ms = _U64_MAX if due * 1000 >= _U64_MAX else max(0, int(due * 1000))
    return TIMERS + _U64.pack(due_ms) + _enc(wf) + _SEP + _enc(iid)


def timer_of(key: bytes) -> tuple[float, str, str]:
    due = _U64.unpack(key[2:10])[0] / 1000
    wf, iid = key[10:].split(_SEP, 1)
    return due, wf.decode("utf-8"), iid.decode("utf-8")


def _sortable(value: float) -> bytes:
    (bits,) = _U64.unpack(_F64.pack(value))
    return _U64.pack(bits ^ (1 << 63) if bits >> 63 == 0 else bits ^ _U64_MAX)


def _unsortable(raw: bytes) -> float:
    (bits,) = _U64.unpack(raw)
    bits = bits ^ (1 << 63) if bits >> 63 == 1 else bits ^ _U64_MAX
    return float(_F64.unpack(_U64.pack(bits))[0])


def by_created_of(wf: str) -> bytes:
    return b"C" + _SEP + _enc(wf) + _SEP


def by_status_of(wf: str, status: str) -> bytes:
    return b"S" + _SEP + _enc(wf) + _SEP + _enc(status) + _SEP


def listed_key(created: float, iid: str) -> bytes:
    """The part of a `C` or `S` key after its prefix."""
    return _sortable(created) + _enc(iid)


def listed_edge(created: float, high: bool) -> bytes:
    """A key part below (or, `high`, above) every listed key of that creation time: 0xff never
    occurs in UTF-8."""
    return _sortable(created) + (b"\xff" if high else b"")


def by_created(wf: str, created: float, iid: str) -> bytes:
    return by_created_of(wf) + listed_key(created, iid)


def by_status(wf: str, status: str, created: float, iid: str) -> bytes:
    return by_status_of(wf, status) + listed_key(created, iid)


def listed_of(prefix: bytes, key: bytes) -> tuple[float, str]:
    """(created_at, id) of a `C` or `S` index key under `prefix`."""
    body = key[len(prefix) :]
    return _unsortable(body[:8]), body[8:].decode("utf-8")


def count(wf: str, status: str) -> bytes:
    return b"K" + _SEP + _enc(wf) + _SEP + _enc(status)


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(raw: bytes | None) -> int:
    return 0 if raw is None else _U64.unpack(raw)[0]


def encode_f64(value: float) -> bytes:
    return _F64.pack(value)


def decode_f64(raw: bytes) -> float:
    return float(_F64.unpack(raw)[0])
