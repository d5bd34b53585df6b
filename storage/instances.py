"""Typed storage operations on one workflow's instances. Each method is one transaction.

Two kinds of writer touch an instance: the namespace actor while the instance holds no actor, and
the instance actor while it runs it. Writes of a running instance are fenced by its lease: the
namespace bumps the lease each time it hands the instance to an actor, and a write carrying an old
lease is refused (`Fenced`): an activation that outlived its turn can never overwrite newer state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import (
    CorruptRecordError,
    InstanceExistsError,
    InstanceNotFoundError,
    SchemaVersionError,
)
from . import blobs, history, inflight, keys
from .kv import KV, MemoryKV, Reader, Staged, Writer
from .migrate import migrate_v1
from .records import (
    EventRecord,
    Fenced,
    InstanceRecord,
    InstanceStatus,
    StepRecord,
    StepState,
    StepWrites,
    pack_event,
    pack_instance,
    pack_step,
    unpack_event,
    unpack_instance,
    unpack_step,
)


@dataclass
class Loaded:
    record: InstanceRecord
    lease: int
    steps: dict[tuple[str, int], StepRecord]
    params: bytes | None
    modifiers: bytes | None = None  # raydo.testing's modifiers for this instance, if any


def set_sync_mode(kv: KV, each_commit: bool) -> None:
    """Choose this storage's durability: fsync every durable commit (default), or flush every
    50 ms (a process crash loses nothing; an OS crash may lose the last 50 ms and may leave the
    storage unreadable: storage/kv.py). Applies to processes that open the storage afterwards
    (and to `kv` once its `sync_each_commit` is set)."""
    kv.write(lambda w: w.put(keys.SYNC_KEY, keys.encode_u64(1 if each_commit else 0)))


def check_schema(kv: KV) -> None:
    """Stamp an empty store with our schema version and a secret identity; migrate a version-1
    store in place (storage/migrate.py); refuse one written by another version."""

    def apply(w: Writer) -> int:
        if w.get(keys.IDENTITY_KEY) is None:
            w.put(keys.IDENTITY_KEY, secrets.token_bytes(32))
        raw = w.get(keys.SCHEMA_KEY)
        if raw is None:
            w.put(keys.SCHEMA_KEY, keys.encode_u64(keys.SCHEMA_VERSION))
            return keys.SCHEMA_VERSION
        found = keys.decode_u64(raw)
        if found not in (1, keys.SCHEMA_VERSION):
            raise SchemaVersionError(
                f"storage at {kv.path!r} has schema version {found}; this raydo reads version "
                f"{keys.SCHEMA_VERSION} (and migrates version 1) only",
                found=found,
                expected=keys.SCHEMA_VERSION,
            )
        return found

    if kv.write(apply) == 1:
        migrate_v1(kv)


def storage_identity(kv: KV) -> bytes:
    """The storage's secret identity: random, made once with the storage, readable only by who
    can read the storage. Actor names derive from it, so a path alone does not find them."""
    raw = kv.read(lambda r: r.get(keys.IDENTITY_KEY))
    if raw is None:
        check_schema(kv)
        raw = kv.read(lambda r: r.get(keys.IDENTITY_KEY))
    assert raw is not None
    return raw


class InstanceStore:
    """All storage operations for the instances of one workflow."""

    def __init__(self, kv: KV, workflow: str) -> None:
        self.kv = kv
        self.workflow = workflow
        # Stamps history events that have no time of their own in the records; runtimes on a
        # fake clock set their clock's `now` here.
        self.now: Callable[[], float] = time.time
        self._inflight: inflight.InFlight | None = None  # this process's slots (inflight.py)
        self._no_slots = False

    # -- reading ------------------------------------------------------------------------------

    def _record(self, r: Reader, iid: str) -> InstanceRecord | None:
        raw = r.get(keys.instance(self.workflow, iid))
        return None if raw is None else unpack_instance(raw, f"instance {iid!r}")

    def _existing(self, r: Reader, iid: str) -> InstanceRecord:
        rec = self._record(r, iid)
        if rec is None:
            raise InstanceNotFoundError(
                f"instance {iid!r} of workflow {self.workflow!r} does not exist", id=iid
            )
        return rec

    def get(self, iid: str) -> InstanceRecord | None:
        return self.kv.read(lambda r: self._record(r, iid))

    def get_many(self, iids: list[str]) -> list[InstanceRecord | None]:
        """Several records in one read (a batch of fired timers)."""
        return self.kv.read(lambda r: [self._record(r, iid) for iid in iids])

    def require(self, iid: str) -> InstanceRecord:
        return self.kv.read(lambda r: self._existing(r, iid))

    def records(self) -> list[InstanceRecord]:
        """Every decodable record; a corrupt one is skipped here and reported by `get`."""
        prefix = keys.instances_of(self.workflow)

        def apply(r: Reader) -> list[InstanceRecord]:
            out = []
            for key, raw in r.scan(prefix):
                try:
                    out.append(unpack_instance(raw, f"instance {keys.instance_id_of(key)!r}"))
                except CorruptRecordError:
                    continue
            return out

        return self.kv.read(apply)

    def listed(
        self,
        status: str | None,
        reverse: bool,
        limit: int,
        after: tuple[float, str] | None = None,
        span: tuple[float | None, float | None] = (None, None),
    ) -> list[InstanceRecord]:
        """Up to `limit` records from the listing index, newest first (oldest first with
        `reverse`), only those in stored `status` if given, strictly past the (created_at, id)
        key `after`, created within `span` (since, until; inclusive). Reads only what it
        returns (and corrupt records it skips)."""
        prefix = (
            keys.by_created_of(self.workflow)
            if status is None
            else keys.by_status_of(self.workflow, status)
        )
        since, until = span

        def apply(r: Reader) -> list[InstanceRecord]:
            out: list[InstanceRecord] = []
            for key, _ in _walk(r, prefix, reverse, after, since if reverse else until):
                created, iid = keys.listed_of(prefix, key)
                if (created, iid) == after:
                    continue
                if (since is not None and created < since) or (
                    until is not None and created > until
                ):
                    break
                rec = _decoded(r.get(keys.instance(self.workflow, iid)), iid)
                if rec is not None:
                    out.append(rec)
                    if len(out) >= limit:
                        break
            return out

        return self.kv.read(apply)

    def counts(self) -> dict[str, int]:
        """How many instances are stored in each status (kept, never recounted)."""

        def apply(r: Reader) -> dict[str, int]:
            return {
                status.value: keys.decode_u64(r.get(keys.count(self.workflow, status.value)))
                for status in InstanceStatus
            }

        return self.kv.read(apply)

    def params(self, iid: str) -> bytes | None:
        return self.kv.read(lambda r: r.get(keys.params(self.workflow, iid)))

    def output(self, iid: str) -> bytes | None:
        return self.kv.read(lambda r: r.get(keys.output(self.workflow, iid)))

    def steps(self, iid: str) -> dict[tuple[str, int], StepRecord]:
        prefix = keys.steps_of(self.workflow, iid)

        def apply(r: Reader) -> dict[tuple[str, int], StepRecord]:
            found = {}
            for key, raw in r.scan(prefix):
                step_id = keys.step_id_of(key)
                step = unpack_step(raw, f"step {step_id} of instance {iid!r}")
                found[step_id] = blobs.filled(self.kv, self.workflow, iid, step)
            return found

        return self.kv.read(apply)

    def load(self, iid: str) -> Loaded:
        """What an activation starts from, in one read: record, current lease, steps, params."""
        prefix = keys.steps_of(self.workflow, iid)

        def apply(r: Reader) -> Loaded:
            rec = self._existing(r, iid)
            lease = keys.decode_u64(r.get(keys.lease(self.workflow, iid)))
            steps = {}
            for key, raw in r.scan(prefix):
                step_id = keys.step_id_of(key)
                step = unpack_step(raw, f"step {step_id} of instance {iid!r}")
                steps[step_id] = blobs.filled(self.kv, self.workflow, iid, step)
            params = r.get(keys.params(self.workflow, iid))
            return Loaded(rec, lease, steps, params, r.get(keys.modifiers(self.workflow, iid)))

        return self.kv.read(apply)

    def has_events(self, iid: str, types: Iterable[str]) -> bool:
        def apply(r: Reader) -> bool:
            for type_ in types:
                for _ in r.scan(keys.events_of(self.workflow, iid, type_)):
                    return True
            return False

        return self.kv.read(apply)

    # -- writing: shared pieces ---------------------------------------------------------------

    def _put_record(self, w: Writer, rec: InstanceRecord) -> None:
        """Write a record and keep the timer index (wake-up, or expiry once finished: its
        timer_due), the listing index, the counters and the history in step with it, in the
        same txn."""
        key = keys.instance(self.workflow, rec.id)
        old_raw = w.get(key)
        old = unpack_instance(old_raw, rec.id) if old_raw is not None else None
        self._record_history(w, old, rec)
        old_due = old.timer_due if old is not None else None
        new_due = rec.timer_due
        if old_due != new_due:
            if old_due is not None:
                w.delete(keys.timer(old_due, self.workflow, rec.id))
            if new_due is not None:
                w.put(keys.timer(new_due, self.workflow, rec.id), b"")
        if old is None:
            add_listed(w, self.workflow, rec)
        else:
            relist(w, self.workflow, old, rec)
        w.put(key, pack_instance(rec))

    def _record_history(self, w: Writer, old: InstanceRecord | None, rec: InstanceRecord) -> None:
        output = None
        if rec.status is InstanceStatus.COMPLETE and rec.has_output:
            output = w.get(keys.output(self.workflow, rec.id))
        found = history.instance_events(old, rec, self.now(), output)
        history.append(w, self.workflow, rec.id, found)

    def _check_lease(self, w: Reader, iid: str, lease: int) -> None:
        if keys.decode_u64(w.get(keys.lease(self.workflow, iid))) != lease:
            raise Fenced(iid)

    # -- writing: the namespace side ----------------------------------------------------------

    def create(
        self,
        items: list[tuple[str, bytes]],
        now: float,
        skip_existing: bool,
        retention: dict[str, float] | None = None,
        schedule: dict[str, Any] | None = None,
        also: Callable[[Writer], None] | None = None,
    ) -> list[InstanceRecord]:
        """Create instances in one durable txn. A taken id raises (and nothing is written) unless
        `skip_existing`, in which case it is left out of the result. `retention` (parsed, see
        runtime/retention.py) and `schedule` (the cron tick that created them) are kept in each
        record; `also` writes more in the same txn (a schedule's last tick)."""

        def apply(w: Writer) -> list[InstanceRecord]:
            created = []
            seen: set[str] = set()
            # raydo.testing's introspect_workflow: instances created now get its modifiers.
            introspected = w.get(keys.workflow_modifiers(self.workflow))
            for iid, params in items:
                if iid in seen or w.get(keys.instance(self.workflow, iid)) is not None:
                    if skip_existing:
                        continue
                    raise InstanceExistsError(
                        f"instance {iid!r} of workflow {self.workflow!r} already exists; "
                        "ids are unique per workflow",
                        id=iid,
                    )
                seen.add(iid)
                rec = InstanceRecord(
                    iid, self.workflow, created_at=now, retention=retention, schedule=schedule
                )
                w.put(keys.params(self.workflow, iid), params)
                if introspected is not None and w.get(keys.modifiers(self.workflow, iid)) is None:
                    w.put(keys.modifiers(self.workflow, iid), introspected)
                self._put_record(w, rec)
                created.append(rec)
            if also is not None:
                also(w)
            return created

        return self.kv.write(apply)

    def save(self, rec: InstanceRecord, durable: bool = True) -> None:
        self.kv.write(lambda w: self._put_record(w, rec), durable)

    def acquire(self, iids: list[str], now: float) -> dict[str, int]:
        """Hand instances to new activations: bump each lease and mark it running. Returns each
        new lease; instances gone, finished or paused are left out and left alone."""

        taken: dict[str, int] = {}  # running ones: the lease their last activation had

        def apply(w: Writer) -> dict[str, int]:
            leases = {}
            for iid in iids:
                rec = self._record(w, iid)
                if rec is None or rec.finished or rec.status is InstanceStatus.PAUSED:
                    continue
                lease_key = keys.lease(self.workflow, iid)
                held = keys.decode_u64(w.get(lease_key))
                if rec.status is InstanceStatus.RUNNING:
                    taken[iid] = held
                leases[iid] = held + 1
                w.put(lease_key, keys.encode_u64(leases[iid]))
                rec.status, rec.wake_at, rec.waiting_types = InstanceStatus.RUNNING, None, []
                rec.started_at = rec.started_at or now
                self._put_record(w, rec)
            return leases

        # Not synced: a lost acquire only means the activation is re-run after an OS crash.
        leases = self.kv.write(apply, durable=False)
        if taken:
            # Taken from an activation that did not end (its process died, or this is a new
            # namespace): its attempts in flight are counted. Read after the new lease is
            # committed: an attempt whose lease check passed recorded its slot before that.
            self._fold_in_flight(self._in_flight_of(set(taken)), taken)
        return leases

    def fence(self, iid: str) -> None:
        """Bump the lease so the activation holding the old one can write nothing more."""
        lease_key = keys.lease(self.workflow, iid)
        self.kv.write(
            lambda w: w.put(lease_key, keys.encode_u64(keys.decode_u64(w.get(lease_key)) + 1))
        )

    def add_event(self, iid: str, type_: str, payload: bytes, now: float) -> InstanceRecord:
        """Buffer an event durably (FIFO per type). Returns the instance record."""

        def apply(w: Writer) -> InstanceRecord:
            rec = self._existing(w, iid)
            seq_key = keys.event_seq(self.workflow, iid)
            seq = keys.decode_u64(w.get(seq_key))
            w.put(seq_key, keys.encode_u64(seq + 1))
            w.put(
                keys.event(self.workflow, iid, type_, seq),
                pack_event(EventRecord(type_, payload, now)),
            )
            return rec

        return self.kv.write(apply)

    def shift_pending(self, iid: str, since: float, delta: float) -> None:
        """After a pause: push every sleep/retry/wait deadline that was still ahead by `delta`."""
        prefix = keys.steps_of(self.workflow, iid)

        def apply(w: Writer) -> None:
            for key, raw in list(w.scan(prefix)):
                step = unpack_step(raw, "step")
                if (
                    step.state is not StepState.DONE
                    and step.until is not None
                    and step.until > since
                ):
                    step.until += delta
                    w.put(key, pack_step(step))

        self.kv.write(apply)

    def erase_steps(self, iid: str, from_seq: int | None) -> None:
        """Forget steps (all, or those first run at or after `from_seq`) and the output."""
        prefix = keys.steps_of(self.workflow, iid)

        erased: set[str] = set()  # blob files of erased steps
        kept: set[str] = set()  # ... and of the others (a file is named by its content)

        def apply(w: Writer) -> None:
            erased.clear()  # a write may be retried
            kept.clear()
            for key, raw in list(w.scan(prefix)):
                step = _step_or_none(raw)
                gone = from_seq is None or step is None or step.seq >= from_seq
                if gone:
                    w.delete(key)
                if step is not None and step.blob is not None:
                    (erased if gone else kept).add(step.blob)
            w.delete(keys.output(self.workflow, iid))

        self.kv.write(apply)
        blobs.delete_files(self.kv, self.workflow, iid, erased - kept)

    def delete(self, iid: str) -> None:
        def apply(w: Writer) -> None:
            rec = self._existing(w, iid)
            if rec.timer_due is not None:
                w.delete(keys.timer(rec.timer_due, self.workflow, iid))
            unlist(w, self.workflow, rec)
            w.delete(keys.instance(self.workflow, iid))
            for key, _ in list(w.scan(keys.namespace(self.workflow, iid))):
                w.delete(key)

        self.kv.write(apply)
        blobs.delete_instance(self.kv, self.workflow, iid)

    # -- history ----------------------------------------------------------------------------------

    def history(self, iid: str, after: int | None, limit: int) -> list[history.Event]:
        """Up to `limit` history events after cursor `after`; InstanceNotFoundError when the
        instance does not exist."""

        def apply(r: Reader) -> list[history.Event]:
            self._existing(r, iid)
            return history.read(r, self.workflow, iid, after, limit)

        return self.kv.read(apply)

    def append_emits(
        self, iid: str, lease: int, step_id: tuple[str, int], attempt: int, items: list[Any]
    ) -> None:
        """Record what an attempt emitted (`ctx.emit`), unsynced: the attempt's end is synced
        and carries these with it; a crash before it keeps them in the page cache. The step's
        stored config says whether it is sensitive (its emits are then redacted)."""
        key = keys.step(self.workflow, iid, *step_id)

        def apply(w: Writer) -> None:
            self._check_lease(w, iid, lease)
            raw = w.get(key)
            config = None if raw is None else unpack_step(raw, f"step {step_id}").config
            history.append(
                w, self.workflow, iid, history.emitted_events(step_id, attempt, items, config)
            )

        self.kv.write(apply, durable=False)

    # -- raydo.testing's modifiers -------------------------------------------------------------

    def modifiers(self, iid: str) -> bytes | None:
        return self.kv.read(lambda r: r.get(keys.modifiers(self.workflow, iid)))

    def set_modifiers(self, iid: str, raw: bytes | None) -> None:
        """Modifiers for instance `iid` (it may not exist yet); None removes them. Read by the
        instance's next activation."""
        self._put_or_delete(keys.modifiers(self.workflow, iid), raw)

    def set_workflow_modifiers(self, raw: bytes | None) -> None:
        """Modifiers every instance created from now on starts with; None stops that."""
        self._put_or_delete(keys.workflow_modifiers(self.workflow), raw)

    def _put_or_delete(self, key: bytes, raw: bytes | None) -> None:
        self.kv.write(lambda w: w.delete(key) if raw is None else w.put(key, raw))

    # -- writing: the running instance (fenced) -----------------------------------------------

    def save_step(
        self, iid: str, lease: int, step_id: tuple[str, int], step: StepRecord, durable: bool
    ) -> None:
        self.save_steps(iid, lease, [(step_id, step)], durable)

    def save_steps(self, iid: str, lease: int, writes: StepWrites, durable: bool) -> None:
        """Write step records in one transaction, in order (their history events too)."""
        self._write(self.stage_steps(iid, lease, writes), durable)

    def stage_steps(self, iid: str, lease: int, writes: StepWrites) -> Staged:
        """save_steps, made ready to be committed with other writes (write_staged)."""
        staged = [
            (step_id, keys.step(self.workflow, iid, *step_id), step) for step_id, step in writes
        ]
        raws = [pack_step(blobs.spill(self.kv, self.workflow, iid, step)) for *_, step in staged]
        now = self.now()

        def apply(w: Writer) -> None:
            self._check_lease(w, iid, lease)
            found: list[history.Event] = []
            for (step_id, key, step), raw in zip(staged, raws, strict=True):
                old = _stored_step(w, key, step_id)
                found += history.step_events(step_id, old, step, now)
                w.put(key, raw)
            history.append(w, self.workflow, iid, found)

        return Staged(apply)

    def write_staged(self, staged: list[Staged]) -> list[Exception | None]:
        """Writes of several activations in one transaction, committed and not synced (sync()
        makes them durable): they share its fsyncs (group commit). Each applies whole or not
        at all: the error of one that failed (Fenced: its lease is gone) is returned in its
        place; None where it was written."""
        errors = self.kv.write_each([each.apply for each in staged])
        for each, error in zip(staged, errors, strict=True):
            if error is None and each.after is not None:
                each.after()
        return errors

    def _write(self, staged: Staged, durable: bool) -> None:
        self.kv.write(staged.apply, durable)
        if staged.after is not None:
            staged.after()

    # -- attempts in flight (inflight.py) ------------------------------------------------------

    def begin_attempt(
        self, iid: str, lease: int, step_id: tuple[str, int], step: StepRecord
    ) -> int | None:
        """Record the start of an attempt (`step`, running) in this process's slot file, with no
        write transaction; returns its slot, or None when it was not recorded (memory storage,
        no slot free: the caller writes the step record instead). Raises Fenced, recording
        nothing, when `lease` is no longer the instance's."""
        if self._inflight is None:
            if self._no_slots or not _on_disk(self.kv):
                return None
            try:
                folder = inflight.folder_of(self.kv.path, self.workflow)
                self._inflight = inflight.InFlight(folder)
            except OSError:  # no slot file here: every start is a write, as before
                self._no_slots = True
                return None
        slot = self._inflight.begin(inflight.Entry(iid, lease, step_id, pack_step(step)))
        if slot is None:
            return None
        try:  # after the slot is written: see acquire()
            self.kv.read(lambda r: self._check_lease(r, iid, lease))
        except BaseException:
            self._inflight.end(slot)
            raise
        return slot

    def end_attempt(self, slot: int) -> None:
        """The attempt's outcome (or its running record) is written: free its slot."""
        assert self._inflight is not None
        self._inflight.end(slot)

    def fold_dead_attempts(self) -> int:
        """Write what dead processes' slot files hold (where the instance still has the lease
        of the activation that died), then remove those files. Returns the attempts written."""
        if not _on_disk(self.kv):
            return 0
        folder = inflight.folder_of(self.kv.path, self.workflow)
        dead = inflight.dead_files(folder)
        folded = self._fold_in_flight([e for path in dead for e in inflight.read(path)], None)
        for path in dead:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return folded

    def _in_flight_of(self, iids: set[str]) -> list[inflight.Entry]:
        """What every slot file of this workflow holds for `iids`, its owner alive or not."""
        if not _on_disk(self.kv):
            return []
        folder = inflight.folder_of(self.kv.path, self.workflow)
        return [e for path in inflight.files(folder) for e in inflight.read(path) if e.iid in iids]

    def _fold_in_flight(self, entries: list[inflight.Entry], leases: dict[str, int] | None) -> int:
        """Write the running records of attempts whose activation ended without writing them:
        only where the instance has (`leases`: had) the entry's lease, is unfinished, and its
        step record shows fewer attempts and no end. Unsynced, like the write they stand for."""
        if not entries:
            return 0
        now = self.now()

        def apply(w: Writer) -> int:
            written = 0
            for e in entries:
                if leases is not None:
                    held = leases.get(e.iid)
                else:
                    held = keys.decode_u64(w.get(keys.lease(self.workflow, e.iid)))
                rec = self._record(w, e.iid)
                if held != e.lease or rec is None or rec.finished:
                    continue
                key = keys.step(self.workflow, e.iid, *e.step)
                old = _stored_step(w, key, e.step)
                new = unpack_step(e.record, f"step {e.step}")
                if old is not None and (
                    old.state is StepState.DONE or old.attempts >= new.attempts
                ):
                    continue
                history.append(w, self.workflow, e.iid, history.step_events(e.step, old, new, now))
                w.put(key, e.record)
                written += 1
            return written

        return self.kv.write(apply, durable=False)

    def sync(self) -> None:
        """Make this process's commits so far durable (see LmdbKV.sync_committed)."""
        self.kv.sync_committed()

    def deferring_sync(self) -> contextlib.AbstractContextManager[None]:
        """Durable writes inside commit unsynced; call sync() before telling anyone (see
        LmdbKV.deferred_sync). A store without the means syncs each write as usual."""
        deferred = getattr(self.kv, "deferred_sync", None)
        return deferred() if deferred is not None else contextlib.nullcontext()

    @property
    def syncs_to_disk(self) -> bool:
        """sync() waits for an fsync (LMDB with sync_commits on), rather than returning at once."""
        return bool(getattr(self.kv, "sync_each_commit", False))

    def take_event(
        self, iid: str, lease: int, step_id: tuple[str, int], step: StepRecord
    ) -> EventRecord | None:
        """Consume the oldest buffered event of `step.type` and record it as the wait's result, in
        one txn, so an event is delivered once and never again."""
        assert step.type is not None
        type_ = step.type
        prefix = keys.events_of(self.workflow, iid, type_)

        def apply(w: Writer) -> EventRecord | None:
            self._check_lease(w, iid, lease)
            for key, raw in w.scan(prefix):
                event = unpack_event(raw, f"event of instance {iid!r}", type_)
                w.delete(key)
                old = dataclasses.replace(step)
                step.value, step.state = pack_event(event), StepState.DONE
                w.put(keys.step(self.workflow, iid, *step_id), pack_step(step))
                found = history.step_events(step_id, old, step, self.now())
                history.append(w, self.workflow, iid, found)
                return event
            return None

        return self.kv.write(apply)

    def settle(
        self, iid: str, lease: int, rec: InstanceRecord, output: bytes | None, durable: bool
    ) -> None:
        """Write the record an activation ends with (finished, waiting or paused)."""
        self._write(self.stage_settle(iid, lease, rec, output), durable)

    def stage_settle(
        self, iid: str, lease: int, rec: InstanceRecord, output: bytes | None
    ) -> Staged:
        """settle, made ready to be committed with other writes (write_staged)."""
        rec = dataclasses.replace(rec)  # as it is now: the activation may change its own

        def apply(w: Writer) -> None:
            self._check_lease(w, iid, lease)
            if output is not None:
                w.put(keys.output(self.workflow, iid), output)
            self._put_record(w, rec)

        return Staged(apply)


def _stored_step(r: Reader, key: bytes, step_id: tuple[str, int]) -> StepRecord | None:
    raw = r.get(key)
    return None if raw is None else unpack_step(raw, f"step {step_id}")


def _on_disk(kv: KV) -> bool:
    """A storage in a folder (LMDB), where attempts in flight can have slot files."""
    return not isinstance(kv, MemoryKV) and os.path.isdir(kv.path)


def add_listed(w: Writer, wf: str, rec: InstanceRecord) -> None:
    """Index `rec` for listings and count it in its status."""
    w.put(keys.by_created(wf, rec.created_at, rec.id), b"")
    w.put(keys.by_status(wf, str(rec.status), rec.created_at, rec.id), b"")
    _add_count(w, wf, str(rec.status), 1)


def relist(w: Writer, wf: str, old: InstanceRecord, rec: InstanceRecord) -> None:
    """Move `rec` in the listing indexes from where `old` (as stored) has it: only the keys
    that change are written (a status change leaves the by-creation index alone)."""
    if old.created_at != rec.created_at:
        w.delete(keys.by_created(wf, old.created_at, old.id))
        w.put(keys.by_created(wf, rec.created_at, rec.id), b"")
    if (old.status, old.created_at) != (rec.status, rec.created_at):
        w.delete(keys.by_status(wf, str(old.status), old.created_at, old.id))
        w.put(keys.by_status(wf, str(rec.status), rec.created_at, rec.id), b"")
    if old.status != rec.status:
        _add_count(w, wf, str(old.status), -1)
        _add_count(w, wf, str(rec.status), 1)


def unlist(w: Writer, wf: str, rec: InstanceRecord) -> None:
    """Undo add_listed for the record as it was stored."""
    w.delete(keys.by_created(wf, rec.created_at, rec.id))
    w.delete(keys.by_status(wf, str(rec.status), rec.created_at, rec.id))
    _add_count(w, wf, str(rec.status), -1)


def _add_count(w: Writer, wf: str, status: str, delta: int) -> None:
    key = keys.count(wf, status)
    w.put(key, keys.encode_u64(max(0, keys.decode_u64(w.get(key)) + delta)))


def _walk(
    r: Reader, prefix: bytes, reverse: bool, after: tuple[float, str] | None, edge: float | None
) -> Iterator[tuple[bytes, bytes]]:
    """Index keys from the cursor `after` (else the date edge, else the end), in listing order:
    oldest first when `reverse`, else newest first."""
    start = None
    if after is not None:
        start = prefix + keys.listed_key(*after)
    elif edge is not None:
        start = prefix + keys.listed_edge(edge, high=not reverse)
    return r.scan(prefix, start) if reverse else r.scan_back(prefix, start)


def _decoded(raw: bytes | None, iid: str) -> InstanceRecord | None:
    """A corrupt record is left out of listings (status() reports it)."""
    if raw is None:
        return None
    try:
        return unpack_instance(raw, f"instance {iid!r}")
    except CorruptRecordError:
        return None


def all_records(kv: KV) -> list[InstanceRecord]:
    """Every decodable instance record of every workflow in the storage (raydo.testing reads
    them to tell when every instance is waiting)."""

    def apply(r: Reader) -> list[InstanceRecord]:
        out = []
        for key, raw in r.scan(keys.ALL_INSTANCES):
            try:
                out.append(unpack_instance(raw, f"instance {keys.instance_id_of(key)!r}"))
            except CorruptRecordError:
                continue
        return out

    return kv.read(apply)


def _step_or_none(raw: bytes) -> StepRecord | None:
    try:
        return unpack_step(raw, "step")
    except CorruptRecordError:
        return None  # erased all the same; a blob it named is left to the sweep


def sweep_blobs(kv: KV, now: float, age: float = blobs.ORPHAN_AGE) -> int:
    """Remove the storage's blob files no step record points at (storage/blobs.py: sweep)."""
    if isinstance(kv, MemoryKV) or not os.path.isdir(os.path.join(kv.path, blobs.FOLDER)):
        return 0  # the usual case: no blob was ever written

    def apply(r: Reader) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for _, raw in r.scan(keys.ALL_INSTANCES):
            try:
                rec = unpack_instance(raw, "instance")
            except CorruptRecordError:
                continue
            for _, step_raw in r.scan(keys.steps_of(rec.workflow, rec.id)):
                blob = unpack_step(step_raw, "step").blob
                if blob is not None:
                    found.setdefault(blobs.folder_name(rec.workflow, rec.id), set()).add(blob)
        return found

    return blobs.sweep(kv.path, kv.read(apply), now, age)


def clock_offset(kv: KV) -> float | None:
    """Seconds raydo.testing adds to this storage's clock; None (production) when it never set
    one."""
    raw = kv.read(lambda r: r.get(keys.CLOCK_KEY))
    return None if raw is None else keys.decode_f64(raw)


def set_clock_offset(kv: KV, offset: float) -> None:
    """Make every raydo process that opens this storage from now on run on a clock `offset`
    seconds ahead (raydo.testing's time skipping across processes)."""
    kv.write(lambda w: w.put(keys.CLOCK_KEY, keys.encode_f64(offset)), durable=False)


class TimerIndex:
    """The durable timer index of a storage (every workflow's wake-ups), kept with the records."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def due(self, until: float) -> list[tuple[float, str, str]]:
        """Timers due at or before `until`, earliest first: (due, workflow, id). Reads only those:
        the cost follows the number due, not the number waiting."""
        limit = keys.timer(until, "", "")

        def apply(r: Reader) -> list[tuple[float, str, str]]:
            out = []
            for key, _ in r.scan(keys.TIMERS):
                if key[:10] > limit[:10]:
                    break
                out.append(keys.timer_of(key))
            return out

        return self.kv.read(apply)

    def is_empty(self) -> bool:
        """No wake-up or expiry is pending in this storage (reads one key at most)."""
        return self.kv.read(lambda r: next(iter(r.scan(keys.TIMERS)), None) is None)
