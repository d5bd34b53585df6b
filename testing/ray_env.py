"""RayEnv: the testing kit against real Ray and real LMDB, with time skipping across processes.

The namespace, instance and timer actors of a storage read their clock through
`runtime.clock.clock_for`: when the storage holds a test clock offset (storage/keys.py,
meta/clock), they run on a SkewedClock (system time plus that offset, read at every reading).
RayEnv writes the offset (0) into a fresh storage before any actor of it starts, and moves it
forward to skip time. Production storage has no offset: its actors read the key once when they
start and run on the system clock.

Time skips while the test waits through the kit (introspector waits) with `auto_skip` on, once
every instance of the storage waits on time: none is queued or running, none is due, and none has
an event waiting for it. Then the clock jumps to the nearest wake-up; the timer actor sees the
jump within its poll (10 ms) and wakes the instance as if its time had come. A plain
`instance.wait()` does not skip (it runs in the namespace actor): wait through the kit instead.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Self

from ..bindings import client
from ..bindings.pending import Pending
from ..bindings.workflow import Workflow, WorkflowInstance
from ..errors import InstanceNotFoundError, WaitTimeoutError
from ..runtime.model import StatusInfo, WorkflowEntrypoint
from ..runtime.options import WorkflowOptions
from ..runtime.rules import Duration, seconds, show_seconds
from ..storage.instances import (
    InstanceStore,
    all_records,
    check_schema,
    clock_offset,
    set_clock_offset,
)
from ..storage.kv import KV, open_lmdb
from ..storage.records import InstanceStatus
from .backend import NOT_YET, Binds, Probe
from .inputs import DEFAULT_TIMEOUT

_POLL = 0.01  # real seconds between looks at the instances
_PAST = 0.001  # a skip lands this far past the wake-up, so it is due on every clock reading


class RayBackend:
    """Introspection of a storage's instances on Ray: modifiers written to its LMDB, status
    through the bindings, waits in a thread pool; time skipping when the storage has a test
    clock (made by RayEnv) and `auto_skip` is on."""

    _by_storage: ClassVar[dict[str, RayBackend]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, storage: str, auto_skip: bool = True) -> None:
        self.storage = os.path.abspath(storage)
        self.kv: KV = open_lmdb(self.storage)
        self.auto_skip = auto_skip
        self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="raydo-testing")

    @classmethod
    def of(cls, storage: str) -> RayBackend:
        """The storage's backend (one per storage, made on first use)."""
        path = os.path.abspath(storage)
        with cls._lock:
            found = cls._by_storage.get(path)
            if found is None:
                found = cls._by_storage[path] = cls(path)
            return found

    @classmethod
    def forget(cls, storage: str) -> None:
        with cls._lock:
            found = cls._by_storage.pop(os.path.abspath(storage), None)
        if found is not None:
            found._pool.shutdown(wait=False, cancel_futures=True)

    # -- Backend -----------------------------------------------------------------------------

    def store(self, workflow: str) -> InstanceStore:
        return InstanceStore(self.kv, workflow)

    def status(self, workflow: Workflow, iid: str) -> StatusInfo | None:
        try:
            return WorkflowInstance(workflow, iid).status(steps=True).result()
        except InstanceNotFoundError:
            return None

    def poll(self, probe: Probe, timeout: float | None) -> Pending[Any]:
        return Pending(self._pool.submit(self.until, probe, timeout))

    # -- time ----------------------------------------------------------------------------------

    @property
    def skewed(self) -> bool:
        """The storage has a test clock (its actors skip time with it)."""
        return clock_offset(self.kv) is not None

    def now(self) -> float:
        return time.time() + (clock_offset(self.kv) or 0.0)

    def until(self, probe: Probe, timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            value = probe()
            if value is not NOT_YET:
                return value
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"not reached within {show_seconds(timeout or 0.0)} real seconds"
                )
            if not (self.auto_skip and self.skewed and self.skip_once()):
                time.sleep(_POLL)

    def skip_once(self) -> bool:
        """Jump to the nearest wake-up if every instance waits on time; True if it jumped."""
        quiet, due = self.survey()
        if not quiet or due is None:
            return False
        self.set_now(due + _PAST)
        return True

    def survey(self) -> tuple[bool, float | None]:
        """(every instance waits on time, the nearest wake-up)."""
        now, wakes = self.now(), []
        for rec in all_records(self.kv):
            if rec.finished or rec.status is InstanceStatus.PAUSED:
                continue
            if rec.status is not InstanceStatus.WAITING or (
                rec.wake_at is not None and rec.wake_at <= now
            ):
                return False, None  # queued, running, or being woken
            if rec.waiting_types and self.store(rec.workflow).has_events(rec.id, rec.waiting_types):
                return False, None  # an event is on its way in
            if rec.wake_at is not None:
                wakes.append(rec.wake_at)
        return True, min(wakes, default=None)

    def set_now(self, when: float) -> None:
        """Move the storage's clock forward to `when` (never back)."""
        ahead = when - self.now()
        if ahead > 0:
            set_clock_offset(self.kv, (clock_offset(self.kv) or 0.0) + ahead)

    def settle(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while not self.survey()[0]:
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"instances still queued or running after {show_seconds(limit)} real seconds"
                )
            time.sleep(_POLL)

    def advance(self, secs: float, limit: float) -> None:
        target = self.now() + secs
        while True:
            self.settle(limit)
            due = self.survey()[1]
            if due is None or due > target:
                break
            self.set_now(due + _PAST)
        self.set_now(target)
        self.settle(limit)


class RayEnv(Binds):
    """The testing kit on real Ray and LMDB (see the module docstring).

    storage: a fresh folder (its actors must start after the env prepared its clock). auto_skip:
    skip time while the test waits through the kit and every instance waits on time. limit: real
    seconds `advance` waits for instances to settle. Joins the Ray already running in this
    process, or starts a local one (`close` stops only what it started).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        storage: str | os.PathLike[str],
        *,
        auto_skip: bool = True,
        limit: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.storage = os.path.abspath(os.fspath(storage))
        kv = open_lmdb(self.storage)
        check_schema(kv)
        if clock_offset(kv) is None:
            set_clock_offset(kv, 0.0)  # before any actor of this storage reads its clock
        self.limit = limit
        client.init(self.storage, sync_commits=False)
        self.backend = RayBackend.of(self.storage)
        self.backend.auto_skip = auto_skip

    @property
    def auto_skip(self) -> bool:
        return self.backend.auto_skip

    @auto_skip.setter
    def auto_skip(self, value: bool) -> None:
        self.backend.auto_skip = value

    def _bind(
        self, cls: type[WorkflowEntrypoint], name: str | None, options: WorkflowOptions
    ) -> Workflow:
        return Workflow(cls, name, options=options, storage=self.storage)

    def now(self) -> datetime:
        """The storage's (skewed) time, as its actors see it."""
        return datetime.fromtimestamp(self.backend.now(), tz=UTC)

    def advance(self, duration: Duration) -> Pending[None]:
        """Move time forward by `duration`, waking what falls due in order and letting each wake
        play out before time moves on."""
        secs = seconds(duration, "advance duration")
        return Pending(self.backend._pool.submit(self.backend.advance, secs, self.limit))

    def close(self) -> None:
        """Kill this storage's actors and leave raydo (Ray keeps running if it was up)."""
        RayBackend.forget(self.storage)
        client.shutdown(kill_actors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
