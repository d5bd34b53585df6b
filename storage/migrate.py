"""Bringing an older storage up to this raydo's schema, in place, once, when it is opened.

Version 1 -> 2 adds the listing index and the kept counters (storage/keys.py `C`, `S`, `K`).
The index is written in chunks of `CHUNK` records, each chunk its own transaction: index keys
are idempotent, so a crash part-way leaves a storage still marked version 1 that the next open
migrates again from the start. The counters are then counted from the status index and the
version stamped in one last transaction, so a storage marked 2 always has index and counters
that agree with its records.
"""

from __future__ import annotations

import functools

from ..errors import CorruptRecordError
from . import keys
from .kv import KV, Reader, Writer
from .records import InstanceStatus, unpack_instance

CHUNK = 20_000


def migrate_v1(kv: KV) -> int:
    """Index every record of a version-1 storage and stamp it version 2. Returns how many
    records were indexed (a corrupt record stays unindexed, as a listing would skip it)."""
    done, start = 0, None
    while True:
        written, start = kv.write(functools.partial(_index_chunk, start=start), durable=False)
        done += written
        if start is None:
            break
    kv.write(_count_and_stamp)
    return done


def _index_chunk(w: Writer, start: bytes | None) -> tuple[int, bytes | None]:
    """Index up to CHUNK records from `start`; returns how many, and where the next chunk
    starts (None when every record is indexed)."""
    written = 0
    for key, raw in w.scan(keys.ALL_INSTANCES, start):
        if written >= CHUNK:
            return written, key
        try:
            rec = unpack_instance(raw, f"instance {keys.instance_id_of(key)!r}")
        except CorruptRecordError:
            continue
        w.put(keys.by_created(rec.workflow, rec.created_at, rec.id), b"")
        w.put(keys.by_status(rec.workflow, str(rec.status), rec.created_at, rec.id), b"")
        written += 1
    return written, None


def _count_and_stamp(w: Writer) -> None:
    for (wf, status), n in _count_status_index(w).items():
        w.put(keys.count(wf, status), keys.encode_u64(n))
    w.put(keys.SCHEMA_KEY, keys.encode_u64(2))


def _count_status_index(r: Reader) -> dict[tuple[str, str], int]:
    """Instances per (workflow, status), counted from the `S` index (keys only)."""
    found: dict[tuple[str, str], int] = {}
    statuses = {s.value for s in InstanceStatus}
    for key, _ in r.scan(b"S\x00"):
        wf, status = key[2:].split(b"\x00", 2)[:2]
        pair = (wf.decode("utf-8"), status.decode("utf-8"))
        if pair[1] in statuses:
            found[pair] = found.get(pair, 0) + 1
    return found
