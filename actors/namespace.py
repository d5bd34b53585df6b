"""NamespaceActor: one per workflow name and node storage. A shell around
runtime.namespace.Namespace. It runs on the node whose storage it opens (pinned by handles.py),
and so do the instance actors and the timer actor it starts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from ..runtime import listing, stream
from ..runtime.clock import clock_for
from ..runtime.engine import sync_shared
from ..runtime.metrics import Report
from ..runtime.model import InstanceStatus, WorkflowEntrypoint
from ..runtime.namespace import Namespace, Snapshot
from ..runtime.options import WorkflowOptions
from ..runtime.placement import node_id
from ..runtime.schedules import Scheduler
from ..runtime.tick_claims import TickClaims
from ..runtime.timers import HORIZON as TIMER_HORIZON
from ..storage.instances import (
    InstanceStore,
    TimerIndex,
    check_schema,
    clock_offset,
    storage_identity,
    sweep_blobs,
)
from ..storage.kv import open_lmdb
from ..storage.schedules import ScheduleStore
from . import handles
from .claims import GcsClaimStore
from .logs import forward_logs
from .metrics import WorkflowMetrics
from .nodes import node_storage
from .pool import ActorPool

log = logging.getLogger("raydo")


_OVERDUE_CHUNK = 2_000  # overdue instances woken per loop turn at start


class NamespaceActor:
    def __init__(
        self,
        storage: str,
        workflow: str,
        workflow_cls: type[WorkflowEntrypoint],
        options: WorkflowOptions,
        code: str | None = None,
    ) -> None:
        forward_logs()
        deployment, storage = storage, node_storage(storage)  # this node's folder (docs/cluster.md)
        kv = open_lmdb(storage)
        check_schema(kv)
        self.storage, self.workflow = storage, workflow
        self.cls, self.code = workflow_cls, code
        self.metrics = WorkflowMetrics(workflow)
        self.pool = ActorPool(
            lambda: handles.new_instance_actor(storage, workflow, self.cls, options, self.code),
            max_size=options.actors or options.concurrency,
            slots=-(-options.concurrency // (options.actors or options.concurrency)),
            warm=options.warm,
            on_metrics=self.metrics.add,
        )
        store = InstanceStore(kv, workflow)
        clock = clock_for(lambda: clock_offset(kv))  # SystemClock outside raydo.testing
        store.now = clock.now
        self.ns = Namespace(
            store,
            self.pool,
            clock,
            self._schedule,
            options.concurrency,
            wake_lead=options.wake_lead,
        )
        claims = TickClaims(GcsClaimStore(), deployment, workflow, node_id(storage_identity(kv)))
        self.scheduler = Scheduler(
            self.ns, ScheduleStore(kv, workflow), self.ns.clock, options.kept, claims.claim
        )
        self._timers: Any = None
        self._due_soon: list[tuple[str, float]] = []  # timers for the next schedule_many call
        self._index = TimerIndex(kv)
        self._started = False
        # Recover at once, also after Ray restarts this actor: unfinished instances must not wait
        # for some client to call. (Ray runs an async actor's __init__ inside its event loop.)
        asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self.pool.prestart()
            self.ns.recover()
            self._overdue = asyncio.ensure_future(self._wake_overdue())
            self.scheduler.start()
            self._exporter = asyncio.ensure_future(self.metrics.export_forever(self._report))
            self._sweeper = asyncio.ensure_future(asyncio.to_thread(self._sweep_blobs))

    def _sweep_blobs(self) -> None:
        """Orphan blob files go at start (storage/blobs.py); a failure only leaves them."""
        try:
            removed = sweep_blobs(self._index.kv, time.time())
        except Exception:
            log.exception("sweeping orphan blob files failed")
            return
        if removed:
            log.info("removed %d orphan blob files", removed)

    async def _wake_overdue(self) -> None:
        """Wake-ups and retention expiries that fell due while nothing ran (`wake` deletes a
        finished instance past its expiry), after the first call is answered, a chunk per loop
        turn (100,000 overdue sleepers took 5 s of reads on that call's path). Later ones need
        the timer actor, started after, if the index still holds anything (expired instances
        leave it; recovery reads unfinished instances only)."""
        await asyncio.sleep(0)
        due = self._index.due(self.ns.clock.now())
        mine = [iid for _, wf, iid in due if wf == self.workflow]
        for start in range(0, len(mine), _OVERDUE_CHUNK):
            self.ns.wake(mine[start : start + _OVERDUE_CHUNK])
            await asyncio.sleep(0)
        if self._timers is None and not self._index.is_empty():
            self._timers = handles.timer_actor(self.storage)

    def _schedule(self, iid: str, due: float) -> None:
        """A timer was written to the durable index. The timer actor reads the index itself for
        everything beyond its horizon; only timers due sooner are sent, gathered into one call
        per turn of the event loop (a batch of hibernations, or recovery, sends one)."""
        if self._timers is None:
            self._timers = handles.timer_actor(self.storage)
        if due - self.ns.clock.now() > TIMER_HORIZON:
            return
        if not self._due_soon:
            asyncio.get_running_loop().call_soon(self._send_timers)
        self._due_soon.append((iid, due))

    def _send_timers(self) -> None:
        batch, self._due_soon = self._due_soon, []
        self._timers.schedule_many.remote(self.workflow, batch)

    async def use_code(self, workflow_cls: type[WorkflowEntrypoint], code: str) -> str | None:
        """A binding with this class was made: new activations run it from now on (workers of
        the old class are retired). Returns the code it replaced, if it changed."""
        if code == self.code:
            return None
        old, self.cls, self.code = self.code, workflow_cls, code
        log.info("workflow %s now runs new code %s (was %s)", self.workflow, code, old)
        self.pool.retire_workers()
        return old

    async def use_schedules(self, crons: list[str]) -> None:
        """A binding declared these cron schedules: stored, and run from now on (and after
        any restart of this actor) in place of the ones declared before."""
        self._start()
        self.scheduler.use(crons)

    async def create(
        self,
        items: list[tuple[str, bytes]],
        skip_existing: bool,
        retention: dict[str, float] | None = None,
    ) -> list[str]:
        self._start()
        try:
            with self.ns.store.deferring_sync():
                ids = self.ns.create(items, skip_existing, retention)
        finally:
            await sync_shared(self.ns.store)  # durable before the caller hears of it
        self.metrics.count_created(len(ids))
        return ids

    async def metrics_report(self) -> Report:
        """The workflow's metrics now (runtime/metrics.py): the raydo server's /metrics."""
        self._start()
        return self._report()

    def _report(self) -> Report:
        return self.metrics.report(self.ns, self.pool.size, self.scheduler.fired)

    async def exists(self, iid: str) -> None:
        self._start()
        self.ns.store.require(iid)

    async def known(self, iids: list[str]) -> list[str]:
        """Which of `iids` exist here (a cluster keeps ids unique across nodes)."""
        self._start()
        return [iid for iid in iids if self.ns.store.get(iid) is not None]

    async def snapshot(self, iid: str, steps: bool) -> Snapshot:
        self._start()
        return self.ns.snapshot(iid, steps)

    async def instances(
        self, since: float | None = None, until: float | None = None
    ) -> list[Snapshot]:
        """Every instance (created within since..until), oldest first, read through the index
        a page at a time."""
        self._start()
        snaps: list[Snapshot] = []
        query = listing.Query(limit=listing.MAX_LIMIT, reverse=True, since=since, until=until)
        while True:
            page = self._page(query)
            snaps += page.snapshots
            if page.cursor is None:
                return snaps
            query = dataclasses.replace(query, cursor=page.cursor)

    async def list_instances(
        self,
        status: InstanceStatus | None,
        limit: int,
        cursor: str | None,
        reverse: bool,
        since: float | None = None,
        until: float | None = None,
    ) -> listing.Page:
        self._start()
        return self._page(listing.Query(status, limit, cursor, reverse, since, until))

    def _page(self, query: listing.Query) -> listing.Page:
        return listing.page_indexed(self.ns.store, self.ns.reported, self.ns.overlaid(), query)

    async def counts(self) -> dict[str, int]:
        self._start()
        return listing.kept_counts(self.ns.store, self.ns.reported, self.ns.overlaid())

    async def params(self, iid: str) -> bytes | None:
        self._start()
        self.ns.store.require(iid)
        return self.ns.store.params(iid)

    async def pause(self, iid: str) -> None:
        self._start()
        self.ns.pause(iid)

    async def resume(self, iid: str) -> None:
        self._start()
        self.ns.resume(iid)

    async def terminate(self, iid: str, rollback: bool = False) -> None:
        self._start()
        self.ns.terminate(iid, rollback)

    async def restart(self, iid: str, from_step: Any) -> None:
        self._start()
        self.ns.restart(iid, from_step)

    async def delete(self, iid: str) -> None:
        self._start()
        self.ns.delete(iid)

    async def send_event(self, iid: str, type_: str, payload: bytes) -> None:
        self._start()
        try:
            with self.ns.store.deferring_sync():
                self.ns.send_event(iid, type_, payload)
        finally:
            await sync_shared(self.ns.store)  # durable before the sender hears of it

    async def wake(self, iids: list[str]) -> None:
        self._start()
        self.ns.wake(iids)

    async def wake_now(self, iid: str) -> bool:
        self._start()
        return self.ns.wake_now(iid)

    async def wait(self, iid: str, timeout: float | None, steps: bool) -> Snapshot:
        self._start()
        await self.ns.wait(iid, timeout)
        return self.ns.snapshot(iid, steps)

    async def wait_all(self, iids: list[str], timeout: float | None) -> list[Snapshot]:
        self._start()
        await self.ns.wait_all(iids, timeout)
        return [self.ns.snapshot(iid) for iid in iids]

    async def history(
        self, iid: str, after: int | None, types: frozenset[str] | None, wait: float
    ) -> stream.Batch:
        """A subscriber's long-poll (runtime/stream.py)."""
        self._start()
        return await stream.poll(self.ns.store, iid, after, types, wait, fault=self.ns.fault)

    async def stats(self) -> dict[str, Any]:
        return {**self.ns.stats(), "actors": self.pool.size}
