"""Routing a workflow's calls to the nodes of a multi-node Ray cluster (docs/cluster.md).

`Workflow.actor` is the namespace actor's handle on one node, and a `Router` with the same
methods (`router.snapshot.remote(iid, steps)`) when raydo runs on several nodes: each call goes
to the namespace actor on the instance's home node, found by the driver's cache, the placement
rule, or one question to every reachable node. Routed calls run on a private event loop thread,
so sync and async callers share one implementation; `Pending` takes their futures.

An instance whose home node is down reports status `unknown` with a `NodeUnavailableError`; its
controls raise that error. Nothing is ever started again elsewhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import ActorUnschedulableError, RayActorError

from ..actors import handles, nodes
from ..errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    NodeUnavailableError,
    NoEligibleNodeError,
)
from ..runtime import listing
from ..runtime.metrics import Report, merge_reports
from ..runtime.namespace import Snapshot
from ..runtime.placement import NodeInfo, home_of, matches
from ..storage.records import InstanceRecord, InstanceStatus
from .pending import unwrap

if TYPE_CHECKING:
    from .workflow import Workflow

log = logging.getLogger("raydo")

REFRESH_EVERY = 10.0  # seconds between looks at the cluster's membership (more often on a miss)
_PROBE_TIMEOUT = 60.0
_NODE_LOST = (RayActorError, ActorUnschedulableError)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def routing_loop() -> asyncio.AbstractEventLoop:
    """raydo's routing loop: one daemon thread per process, started on first use."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="raydo-routing", daemon=True).start()
        return _loop


def start(coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
    """Run `coro` on the routing loop now; its future goes into a Pending."""
    return asyncio.run_coroutine_threadsafe(coro, routing_loop())


class ClusterView:
    """The raydo nodes serving drivers of `storage` on this Ray cluster, by raydo node id."""

    def __init__(self, storage: str) -> None:
        self.storage = storage
        self.nodes: dict[str, NodeInfo] = {}
        self.alive: set[str] = set()  # Ray node ids Ray reports alive
        self._checked = -REFRESH_EVERY
        self._lock = asyncio.Lock()
        self._single: NodeInfo | None = None

    def single_node(self, local: bool) -> NodeInfo:
        """The one node, resolved where its storage is known for sure: in this process when
        it shares the raylet's environment (`local`: Ray was started here, or this is a raydo
        actor), else by a probe on the node (a driver that joined a `ray start` node, whose
        RAYDO_NODE_STORAGE it cannot see). Once per view."""
        if self._single is None:
            if local:
                self._single = nodes.local_node(self.storage)
            else:
                self._single = ray.get(nodes.probe(handles.here(), self.storage), timeout=60)
        return self._single

    def known_single(self) -> list[NodeInfo]:
        return [] if self._single is None else [self._single]

    def is_single(self) -> bool:
        """One alive Ray node and no other raydo node ever seen: today's single-node raydo."""
        return len(nodes.alive_ray_nodes()) <= 1 and len(nodes.registered(self.storage)) <= 1

    def is_up(self, node: NodeInfo) -> bool:
        return node.ray_node in self.alive

    async def refresh(self, force: bool = False) -> None:
        """Learn Ray's alive nodes; probe the ones not yet known (once each)."""
        async with self._lock:
            if not force and time.monotonic() - self._checked < REFRESH_EVERY:
                return
            alive = nodes.alive_ray_nodes()
            self.alive = set(alive)
            for info in nodes.registered(self.storage):
                self.nodes.setdefault(info.node, info)
            known = {n.ray_node for n in self.nodes.values()}
            new = [ray_node for ray_node in alive if ray_node not in known]
            found = await _probe_all(new, self.storage)
            for info in found:
                old = self.nodes.get(info.node)
                self.nodes[info.node] = info
                if old != info:
                    nodes.register(self.storage, info)
            self._checked = time.monotonic()

    def eligible(self, labels: Mapping[str, str], alive_only: bool) -> list[NodeInfo]:
        return [
            n
            for n in self.nodes.values()
            if matches(n.labels, labels) and (self.is_up(n) or not alive_only)
        ]

    def unavailable(self, node: NodeInfo, why: str | None = None) -> NodeUnavailableError:
        reason = why or nodes.dead_reason(node.ray_node)
        return NodeUnavailableError(
            f"{node.describe()} is unavailable: {reason}. Its instances are kept in its storage "
            "and resume when the node is back with that storage folder",
            node=node.node,
            reason=reason,
        )


async def _probe_all(ray_nodes: list[str], storage: str) -> list[NodeInfo]:
    refs = [nodes.probe(ray_node, storage) for ray_node in ray_nodes]
    results = await asyncio.gather(
        *(asyncio.wait_for(_awaited(ref), _PROBE_TIMEOUT) for ref in refs), return_exceptions=True
    )
    found = []
    for ray_node, result in zip(ray_nodes, results, strict=True):
        if isinstance(result, NodeInfo):
            found.append(result)
        else:  # a node that died or is starting: looked at again at the next refresh
            log.warning("could not reach Ray node %s: %s", ray_node[:12], result)
    return found


async def _awaited(ref: Any) -> Any:
    return await ref


_VIEWS: dict[str, ClusterView] = {}


def view_of(storage: str) -> ClusterView:
    """This process's view of the cluster for `storage` (one per storage, shared by bindings)."""
    view = _VIEWS.get(storage)
    if view is None:
        view = _VIEWS[storage] = ClusterView(storage)
    return view


def forget_views() -> None:
    """raydo shut down: the next init may join another cluster."""
    _VIEWS.clear()


def no_eligible_node(
    workflow: str, labels: Mapping[str, str], nodes: Iterable[NodeInfo]
) -> NoEligibleNodeError:
    return NoEligibleNodeError(
        f"no alive raydo node carries the labels {dict(labels)} that workflow {workflow!r} is "
        f"limited to (nodes: {[dict(n.labels) for n in nodes]})",
        labels=dict(labels),
    )


def check_eligible(workflow: str, labels: Mapping[str, str], node: NodeInfo) -> None:
    """One node: a workflow limited to labels it lacks can run nowhere (as on a cluster)."""
    if not matches(node.labels, labels):
        raise no_eligible_node(workflow, labels, [node])


class _Method:
    """`router.<name>.remote(*args)`, like an actor method: the call starts at once."""

    def __init__(self, fn: Callable[..., Coroutine[Any, Any, Any]]) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> concurrent.futures.Future[Any]:
        return start(self._fn(*args))


class Router:
    """One workflow's namespace actors on every node, behind the namespace actor's methods."""

    def __init__(self, workflow: Workflow, view: ClusterView) -> None:
        self.workflow, self.view = workflow, view
        self.labels = dict(workflow.options.node_labels)
        self._handles: dict[str, tuple[str, Any]] = {}  # raydo node -> (Ray node, handle)
        self.homes: dict[str, str] = {}  # instance id -> raydo node
        self.create = _Method(self._create)
        self.wait_all = _Method(self._wait_all)
        self.instances = _Method(self._instances)
        self.stats = _Method(self._stats)
        self.snapshot = _Method(self._snapshot)
        self.exists = _Method(self._exists)
        self.list_instances = _Method(self._list_instances)
        self.counts = _Method(self._counts)
        self.metrics_report = _Method(self._metrics_report)
        for name in ("params", "pause", "resume", "terminate", "restart", "delete"):
            setattr(self, name, _Method(self._by_id(name)))
        self.send_event = _Method(self._by_id("send_event"))
        self.wait = _Method(self._by_id("wait"))
        self.history = _Method(self._by_id("history"))

    # -- reaching a node -----------------------------------------------------------------------

    async def _handle(self, node: NodeInfo) -> Any:
        held = self._handles.get(node.node)
        if held is not None and held[0] == node.ray_node:
            return held[1]
        if not self.view.is_up(node):
            raise self.view.unavailable(node)
        wf = self.workflow
        handle = handles.namespace_actor_on(node, wf.storage, wf.name, wf.cls, wf.options, wf.code)
        await handle.use_code.remote(wf.cls, wf.code)
        if wf.options.schedules is not None:  # every node runs them; one claims each tick
            await handle.use_schedules.remote(list(wf.options.schedules))
        self._handles[node.node] = (node.ray_node, handle)
        return handle

    async def call(self, node: NodeInfo, method: str, *args: Any) -> Any:
        """`method(*args)` on the namespace actor of `node`. A node that restarted under a new
        Ray node id is found again; one that is gone raises NodeUnavailableError."""
        for attempt in range(2):
            try:
                handle = await self._handle(node)
                return await getattr(handle, method).remote(*args)
            except _NODE_LOST as exc:
                self._handles.pop(node.node, None)
                await self.view.refresh(force=True)
                fresh = self.view.nodes.get(node.node, node)
                if attempt == 1 or fresh.ray_node == node.ray_node or not self.view.is_up(fresh):
                    why = None if not self.view.is_up(fresh) else _ray_says(exc)
                    raise self.view.unavailable(fresh, why) from None
                node = fresh
        raise AssertionError("unreachable")

    # -- finding an instance's home ------------------------------------------------------------

    async def locate(self, iid: str) -> NodeInfo:
        """The home of `iid`: InstanceNotFoundError if no node has it, NodeUnavailableError if
        only an unreachable node may have it."""
        await self.view.refresh()
        known = self.homes.get(iid)
        if known is not None and known in self.view.nodes:
            return self.view.nodes[known]
        await self.view.refresh(force=True)
        every = list(self.view.nodes.values())
        ruled = home_of(iid, [n.node for n in every])
        order = sorted(every, key=lambda n: n.node != ruled)  # the rule's node first
        unreachable: list[tuple[NodeInfo, str | None]] = []
        for node in order[:1]:
            if await self._has(node, iid, unreachable):
                return self._found(iid, node)
        checks = [self._has(node, iid, unreachable) for node in order[1:]]
        for node, has in zip(order[1:], await asyncio.gather(*checks), strict=True):
            if has:
                return self._found(iid, node)
        if unreachable:
            node, why = unreachable[0]
            raise self.view.unavailable(node, why)
        raise InstanceNotFoundError(
            f"instance {iid!r} of workflow {self.workflow.name!r} does not exist on any of the "
            f"{len(every)} raydo nodes",
            id=iid,
        )

    async def _has(
        self, node: NodeInfo, iid: str, unreachable: list[tuple[NodeInfo, str | None]]
    ) -> bool:
        if not self.view.is_up(node):
            unreachable.append((node, None))
            return False
        try:
            await self.call(node, "exists", iid)
            return True
        except NodeUnavailableError as exc:
            unreachable.append((node, exc.reason))
            return False
        except Exception as exc:
            if isinstance(unwrap(exc), InstanceNotFoundError):
                return False
            raise

    def _found(self, iid: str, node: NodeInfo) -> NodeInfo:
        self.homes[iid] = node.node
        return node

    # -- the namespace actor's methods ---------------------------------------------------------

    def _by_id(self, method: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def routed(iid: str, *args: Any) -> Any:
            return await self.call(await self.locate(iid), method, iid, *args)

        return routed

    async def _exists(self, iid: str) -> None:
        """For `get`: an id that may live on an unreachable node gets its handle (its status
        says `unknown` and why); only an id no node can have is InstanceNotFoundError."""
        try:
            await self._by_id("exists")(iid)
        except NodeUnavailableError:
            return

    async def _snapshot(self, iid: str, steps: bool) -> Snapshot:
        try:
            return await self._by_id("snapshot")(iid, steps)
        except NodeUnavailableError as exc:
            rec = InstanceRecord(iid, self.workflow.name, InstanceStatus.UNKNOWN)
            rec.error = {"name": type(exc).__name__, "message": exc.message}
            return Snapshot(rec, None, [] if steps else None, False)

    async def _create(
        self,
        items: list[tuple[str, bytes]],
        skip_existing: bool,
        generated: bool = False,
        retention: dict[str, float] | None = None,
    ) -> list[str]:
        """Create on each item's home. Generated ids go to a home that is up; an explicit id
        goes to its rule's home (refused while that is down) once no other node has it."""
        await self.view.refresh()
        groups: dict[str, list[tuple[str, bytes]]] = {}
        for iid, raw in items:
            groups.setdefault(self._place(iid, generated).node, []).append((iid, raw))
        if not generated:
            items = await self._drop_existing_elsewhere(groups, skip_existing)
        done = await asyncio.gather(
            *(
                self._create_on(n, group, skip_existing, generated, retention)
                for n, group in groups.items()
                if group
            )
        )
        created = {iid for ids in done for iid in ids}
        return [iid for iid, _ in items if iid in created]

    async def _create_on(
        self,
        node: str,
        group: list[tuple[str, bytes]],
        skip_existing: bool,
        generated: bool,
        retention: dict[str, float] | None,
    ) -> list[str]:
        """One node's part of a create: one durable write there. A node found down meanwhile
        gets nothing; generated ids then go to the nodes that are up (explicit ids may not)."""
        try:
            ids: list[str] = await self.call(
                self.view.nodes[node], "create", group, skip_existing, retention
            )
        except NodeUnavailableError:
            if not generated:
                raise
            return await self._create(group, skip_existing, generated, retention)
        for iid, _ in group:  # created here, or (skip_existing) found here
            self.homes[iid] = node
        return ids

    def _place(self, iid: str, generated: bool) -> NodeInfo:
        up = self.view.eligible(self.labels, alive_only=True)
        if not up:
            raise no_eligible_node(self.workflow.name, self.labels, self.view.nodes.values())
        every = up if generated else self.view.eligible(self.labels, alive_only=False)
        home = self.view.nodes[home_of(iid, [n.node for n in every]) or up[0].node]
        if not self.view.is_up(home):
            raise self.view.unavailable(home)
        return home

    async def _drop_existing_elsewhere(
        self, groups: dict[str, list[tuple[str, bytes]]], skip_existing: bool
    ) -> list[tuple[str, bytes]]:
        """Ids stay unique across nodes: ask every other node which of these ids it has."""
        ids = [iid for group in groups.values() for iid, _ in group]
        others = [n for n in self.view.nodes.values() if self.view.is_up(n)]
        answers = await asyncio.gather(*(self.call(n, "known", ids) for n in others))
        elsewhere: dict[str, str] = {}
        for node, known in zip(others, answers, strict=True):
            for iid in known:
                elsewhere[iid] = node.node
        for home, group in groups.items():
            taken = [iid for iid, _ in group if elsewhere.get(iid, home) != home]
            if taken and not skip_existing:
                raise InstanceExistsError(
                    f"instance {taken[0]!r} of workflow {self.workflow.name!r} already exists "
                    f"(on {elsewhere[taken[0]]})",
                    id=taken[0],
                )
            for iid in taken:
                self.homes[iid] = elsewhere[iid]
            groups[home] = [(iid, raw) for iid, raw in group if iid not in taken]
        return [item for group in groups.values() for item in group]

    async def _wait_all(self, iids: list[str], timeout: float | None) -> list[Snapshot]:
        homes = await asyncio.gather(*(self.locate(iid) for iid in iids))
        groups: dict[str, list[str]] = {}
        for iid, node in zip(iids, homes, strict=True):
            groups.setdefault(node.node, []).append(iid)
        answers = await asyncio.gather(
            *(
                self.call(self.view.nodes[n], "wait_all", group, timeout)
                for n, group in groups.items()
            )
        )
        by_id = {snap.record.id: snap for snaps in answers for snap in snaps}
        return [by_id[iid] for iid in iids]

    async def _instances(
        self, since: float | None = None, until: float | None = None
    ) -> list[Snapshot]:
        """Every instance on the reachable nodes (an unreachable node's are left out, logged)."""
        answers = await self._from_every_node("instances", since, until)
        out = [snap for snaps in answers for snap in snaps]
        return sorted(out, key=lambda s: (s.record.created_at, s.record.id))

    async def _list_instances(
        self,
        status: InstanceStatus | None,
        limit: int,
        cursor: str | None,
        reverse: bool,
        since: float | None = None,
        until: float | None = None,
    ) -> listing.Page:
        """One page over every reachable node: each node's page after the same cursor, merged
        in the listing's (created_at, id) order, so a cursor means the same on any node."""
        args = (status, limit, cursor, reverse, since, until)
        pages = await self._from_every_node("list_instances", *args)
        merged = [snap for page in pages for snap in page.snapshots]
        more_on_a_node = any(page.cursor is not None for page in pages)
        shown = listing.page(merged, None, limit, None, reverse).snapshots
        more = more_on_a_node or len(merged) > len(shown)
        return listing.Page(shown, listing.encode_cursor(shown[-1]) if more and shown else None)

    async def _counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for counts in await self._from_every_node("counts"):
            for status, n in counts.items():
                total[status] = total.get(status, 0) + n
        return total

    async def _metrics_report(self) -> Report:
        """The workflow's metrics summed over the reachable nodes."""
        return merge_reports(self.workflow.name, await self._from_every_node("metrics_report"))

    async def _from_every_node(self, method: str, *args: Any) -> list[Any]:
        """`method` on every reachable node (an unreachable node's part is left out, logged)."""
        await self.view.refresh()
        up = [n for n in self.view.nodes.values() if self.view.is_up(n)]
        answers = await asyncio.gather(
            *(self.call(n, method, *args) for n in up), return_exceptions=True
        )
        found = []
        for node, answer in zip(up, answers, strict=True):
            if isinstance(answer, NodeUnavailableError):
                log.warning("%s of %s left out: %s", method, node.node, answer.reason)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                found.append(answer)
        for node in self.view.nodes.values():
            if not self.view.is_up(node):
                log.warning("%s of %s left out: it is down", method, node.node)
        return found

    async def _stats(self) -> dict[str, Any]:
        await self.view.refresh()
        up = [n for n in self.view.nodes.values() if self.view.is_up(n)]
        answers = await asyncio.gather(*(self.call(n, "stats") for n in up))
        return {n.node: a for n, a in zip(up, answers, strict=True)}


def _ray_says(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"Ray cannot reach its namespace actor ({type(exc).__name__}: {first})"
