"""NamespaceActor: one per workflow name and node storage. A shell around
runtime.namespace.Namespace. It runs on the node whose storage it opens (pinned by handles.py),
and so do the instance actors and the timer actor it starts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from ..runtime import listing
from ..runtime.clock import clock_for
from ..runtime.model import InstanceStatus, WorkflowEntrypoint
from ..runtime.namespace import Namespace, Snapshot
from ..runtime.options import WorkflowOptions
from ..storage.instances import InstanceStore, check_schema, clock_offset
from ..storage.kv import open_lmdb
from . import handles
from .logs import forward_logs
from .nodes import node_storage
from .pool import ActorPool

log = logging.getLogger("raydo")


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
        storage = node_storage(storage)  # this node's folder (docs/cluster.md)
        kv = open_lmdb(storage)
        check_schema(kv)
        self.storage, self.workflow = storage, workflow
        self.cls, self.code = workflow_cls, code
        self.pool = ActorPool(
            lambda: handles.new_instance_actor(storage, workflow, self.cls, options, self.code),
            max_size=options.concurrency,
            warm=options.warm,
        )
        self.ns = Namespace(
            InstanceStore(kv, workflow),
            self.pool,
            clock_for(lambda: clock_offset(kv)),  # SystemClock outside raydo.testing
            self._schedule,
            options.concurrency,
            wake_lead=options.wake_lead,
        )
        self._timers: Any = None
        self._started = False
        # Recover at once, also after Ray restarts this actor: unfinished instances must not wait
        # for some client to call. (Ray runs an async actor's __init__ inside its event loop.)
        asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self.pool.prestart()
            self.ns.recover()

    def _schedule(self, iid: str, due: float) -> None:
        if self._timers is None:
            self._timers = handles.timer_actor(self.storage)
        self._timers.schedule.remote(self.workflow, iid, due)

    async def use_code(self, workflow_cls: type[WorkflowEntrypoint], code: str) -> str | None:
        """A binding with this class was made: new activations run it from now on (workers of
        the old class are retired). Returns the code it replaced, if it changed."""
        if code == self.code:
            return None
        old, self.cls, self.code = self.code, workflow_cls, code
        log.info("workflow %s now runs new code %s (was %s)", self.workflow, code, old)
        self.pool.retire_workers()
        return old

    async def create(self, items: list[tuple[str, bytes]], skip_existing: bool) -> list[str]:
        self._start()
        return self.ns.create(items, skip_existing)

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

    async def terminate(self, iid: str) -> None:
        self._start()
        self.ns.terminate(iid)

    async def restart(self, iid: str, from_step: Any) -> None:
        self._start()
        self.ns.restart(iid, from_step)

    async def delete(self, iid: str) -> None:
        self._start()
        self.ns.delete(iid)

    async def send_event(self, iid: str, type_: str, payload: bytes) -> None:
        self._start()
        self.ns.send_event(iid, type_, payload)

    async def wake(self, iids: list[str]) -> None:
        self._start()
        self.ns.wake(iids)

    async def wait(self, iid: str, timeout: float | None, steps: bool) -> Snapshot:
        self._start()
        await self.ns.wait(iid, timeout)
        return self.ns.snapshot(iid, steps)

    async def wait_all(self, iids: list[str], timeout: float | None) -> list[Snapshot]:
        self._start()
        await self.ns.wait_all(iids, timeout)
        return [self.ns.snapshot(iid) for iid in iids]

    async def stats(self) -> dict[str, Any]:
        return {**self.ns.stats(), "actors": self.pool.size}
