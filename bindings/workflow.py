"""What users hold: the `Workflow` binding and `WorkflowInstance` handles."""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict

from ..actors import handles
from ..errors import (
    InvalidIdError,
    InvalidInputError,
    InvalidStepError,
    InvalidWorkflowError,
    StorageMismatchError,
)
from ..runtime import listing, rollback
from ..runtime.compute import INFEASIBLE_AFTER
from ..runtime.engine import stop_if_running
from ..runtime.metrics import Report
from ..runtime.model import (
    REDACTED,
    ErrorInfo,
    InstanceStatus,
    RollbackInfo,
    StatusInfo,
    StepInfo,
    WorkflowEntrypoint,
)
from ..runtime.namespace import Snapshot
from ..runtime.options import HIBERNATE_AFTER, WorkflowOptions
from ..runtime.params import validated
from ..runtime.retention import parse_retention
from ..runtime.rules import (
    check_event_type,
    check_id,
    check_seconds_arg,
    check_step_name,
    show,
)
from ..storage.codec import decode, encode
from ..storage.records import StepKind, StepRecord, unpack_event
from . import client, cluster, events
from .batch import BatchItem, create_per_item
from .display import (
    InstanceDescription,
    ProgressWait,
    choose_progress,
    instance_html,
    workflow_html,
)
from .pending import Pending, submit
from .shipping import fingerprint, ship_by_value_if_needed

log = logging.getLogger("raydo")

MAX_BATCH = 100
MAX_WORKFLOW_NAME = 64


class Workflow:
    """The binding for one workflow: create instances and get handles to them.

    concurrency: instances of this workflow running at once; the rest are `queued`. actors:
    instance actors (processes) per node; default `concurrency`, one instance each; fewer share
    them, several instances each at once (their fsyncs shared too). env: bindings the workflow
    sees as `self.env` (e.g. other Workflows). hibernate_after:
    waits longer than this many seconds give the actor back. block_limit: seconds run() code
    outside steps may block the event loop before its worker is replaced (steps: their timeout).
    warm: instance actors kept started and idle (at most `concurrency`). storage: the storage this
    binding belongs to (default: the one raydo is initialized with, or starts with).

    A binding and its instance handles belong to one storage. After `raydo.shutdown()` and
    `raydo.init()` of the same storage they reconnect; while raydo is initialized with another
    storage, using them raises StorageMismatchError (make the binding again for that storage).
    """

    def __init__(
        self,
        cls: type[WorkflowEntrypoint],
        name: str | None = None,
        *,
        concurrency: int = 4,
        actors: int | None = None,
        env: Mapping[str, Any] | None = None,
        hibernate_after: float = HIBERNATE_AFTER,
        block_limit: float = 60.0,
        warm: int = 1,
        node_labels: Mapping[str, str] | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        infeasible_after: float = INFEASIBLE_AFTER,
        retention: Mapping[str, Any] | None = None,
        schedules: list[str] | None = None,
        storage: str | None = None,
        options: WorkflowOptions | None = None,
        code: str | None = None,
    ) -> None:
        _check_workflow_class(cls)
        client.check_code_policy(cls)
        ship_by_value_if_needed(cls)
        self.cls = cls
        self.name = check_id(cls.__name__ if name is None else name, "workflow name")
        if len(self.name) > MAX_WORKFLOW_NAME:
            raise InvalidIdError(f"workflow name {self.name!r} is longer than 64 characters")
        self.options = options or WorkflowOptions(
            concurrency=concurrency,
            actors=actors,
            env={} if env is None else env,
            hibernate_after=hibernate_after,
            block_limit=block_limit,
            warm=warm,
            node_labels={} if node_labels is None else node_labels,
            runtime_env=runtime_env,
            resources=resources,
            infeasible_after=infeasible_after,
            retention=retention,
            schedules=None if schedules is None else tuple(schedules),
        )
        self._storage = None if storage is None else str(storage)
        # A binding given its storage works beside raydo's current one (two apps on one Ray);
        # one that followed the context stays with the storage it first resolved to.
        self._explicit_storage = storage is not None
        self._actor: Any = None
        # when _connect last chose between one node and a cluster (None: it never did, e.g. an
        # actor handle given to the binding)
        self._mode_at: float | None = None
        # The raydo context the actor handle was made under; None when the binding does not
        # follow a context (rebuilt inside an actor, where there is no raydo.init).
        self._context: client.Context | None = None
        self._in_actor = False
        self.code = code or fingerprint(cls)
        """A short fingerprint of the class's code; `status().code` says which code ran."""
        self._registered = code is not None  # a copy of a binding that already registered

    def __reduce__(self) -> tuple[Any, ...]:
        # Crossing into an actor: carry the resolved storage, never a live handle.
        return (_rebuild, (self.cls, self.name, self.options, self.storage, self.code))

    @property
    def storage(self) -> str:
        if self._storage is None:
            self._storage = client.context().storage
        return self._storage

    @property
    def actor(self) -> Any:
        """The namespace actor's handle, made again when raydo was initialized again."""
        stale = self._context is not None and self._context is not client.current()
        if self._actor is None or stale or self._cluster_grew():
            self._actor = self._connect()
        return self._actor

    def _connect(self) -> Any:
        """The namespace actor on this node, or a Router over every node's on a cluster of
        several raydo nodes (docs/cluster.md)."""
        if not self._in_actor:
            client.check_code_policy(self.cls)  # init may have come after the binding
            self._context = self._check_context()
        self._mode_at = time.monotonic()
        view = cluster.view_of(self.storage)
        if not submit(view.is_single):
            return cluster.Router(self, view)
        node = submit(view.single_node, self._in_actor or self._context_started_ray())
        cluster.check_eligible(self.name, self.options.node_labels, node)
        actor = submit(
            handles.namespace_actor_on,
            node,
            self.storage,
            self.name,
            self.cls,
            self.options,
            self.code,
        )
        if not self._registered:
            self._register_code(actor)
        return actor

    def _context_started_ray(self) -> bool:
        return self._context is not None and self._context.started_ray

    def _cluster_grew(self) -> bool:
        """Holding one node's actor: has a second raydo node appeared? (Looked at every
        REFRESH_EVERY seconds, not per call.)"""
        if isinstance(self._actor, cluster.Router) or self._mode_at is None:
            return False
        if time.monotonic() - self._mode_at < cluster.REFRESH_EVERY:
            return False
        self._mode_at = time.monotonic()
        return not submit(cluster.view_of(self.storage).is_single)

    def _send_create(
        self,
        items: list[tuple[str, bytes]],
        skip_existing: bool,
        generated: bool,
        retention: Any = None,
    ) -> Any:
        """The create call; a cluster's router also learns whether raydo made the ids (they
        may go to any node that is up, without a uniqueness check across nodes). `retention`
        (given to this call) replaces the workflow's default."""
        kept = self.options.kept if retention is None else parse_retention(retention)
        actor = self.actor
        if isinstance(actor, cluster.Router):
            return submit(actor.create.remote, items, skip_existing, generated, kept)
        return submit(actor.create.remote, items, skip_existing, kept)

    def _register_code(self, actor: Any) -> None:
        """The newest binding's class is what new activations run (a notebook cell run again,
        a redeploy). Waited for, because Ray does not order calls to an async actor."""
        replaced: str | None = Pending(submit(actor.use_code.remote, self.cls, self.code)).result()
        if replaced is not None:
            log.info("workflow %r now runs new code %s (was %s)", self.name, self.code, replaced)
        if self.options.schedules is not None:
            Pending(submit(actor.use_schedules.remote, list(self.options.schedules))).result()
        self._registered = True

    def _check_context(self) -> client.Context:
        """The current raydo context, started on this binding's storage if there is none. A
        binding that followed the context (no `storage=`) raises StorageMismatchError under a
        context of another storage; one given its storage works beside it."""
        ctx = client.current() or client.init(self._storage)
        if self._storage is None:
            self._storage = ctx.storage
        elif ctx.storage != self._storage and not self._explicit_storage:
            raise StorageMismatchError(
                f"this binding of workflow {self.name!r} (and its instance handles) belongs to "
                f"storage {self._storage!r}, which is no longer initialized: raydo is now "
                f"initialized with {ctx.storage!r}. Make the binding again with "
                f"raydo.workflow(...) to use the current storage, or call raydo.shutdown() and "
                f"raydo.init({self._storage!r}) to use this one",
                storage=self._storage,
                current=ctx.storage,
            )
        return ctx

    def create(
        self, id: str | None = None, params: Any = None, retention: Any = None
    ) -> Pending[WorkflowInstance]:
        """Start a new instance. `id` defaults to a uuid4; a taken id raises InstanceExistsError
        (an id is free again once its instance is deleted, or expired by its retention).
        `retention`: {"success": duration, "error": duration}, how long the instance is kept
        once complete / errored or terminated (default: the workflow's, else kept)."""
        item = self._item(id, params)
        ref = self._send_create([item], False, id is None, retention)
        return Pending(ref, lambda ids: WorkflowInstance(self, ids[0]))

    @overload
    def create_batch(
        self,
        items: list[dict[str, Any]],
        retention: Any = None,
        *,
        per_item: Literal[False] = False,
    ) -> Pending[list[WorkflowInstance]]: ...

    @overload
    def create_batch(
        self, items: list[dict[str, Any]], retention: Any = None, *, per_item: Literal[True]
    ) -> Pending[list[BatchItem]]: ...

    def create_batch(
        self, items: list[dict[str, Any]], retention: Any = None, *, per_item: bool = False
    ) -> Any:
        """Create 1 to 100 instances in one durable write. Returns one handle per item, in the
        order given; an item whose id already exists is not created again, and its handle is
        the existing instance's. A bad item raises its typed error and nothing is created.
        `retention` applies to every item (as in `create`).

        `per_item=True` (the object form, bindings/batch.py): every good item is created, and
        the answer is one BatchItem per item: `created`, or `instance` of the one that existed,
        or the `error` that rejected it; a bad item no longer stops the others."""
        if per_item is not False and per_item is not True:
            raise InvalidInputError(f"per_item {show(per_item)} must be True or False")
        if per_item:
            self._check_batch_size(items)
            return create_per_item(
                self,
                items,
                lambda i, entry: self._item(*_batch_entry(i, entry)),
                lambda good: self._send_create(good, True, _all_generated(items), retention),
            )
        prepared = self._prepare_batch(items)
        ref = self._send_create(prepared, True, _all_generated(items), retention)
        return Pending(ref, lambda _created: [WorkflowInstance(self, iid) for iid, _ in prepared])

    def _create_new(self, items: list[dict[str, Any]]) -> Pending[list[str]]:
        """create_batch, answering the ids this call created (not those that existed): for
        tools that must tell the two apart, e.g. the crash tests' ledger."""
        return Pending(self._send_create(self._prepare_batch(items), True, _all_generated(items)))

    def _prepare_batch(self, items: Any) -> list[tuple[str, bytes]]:
        self._check_batch_size(items)
        return [self._item(*_batch_entry(i, entry)) for i, entry in enumerate(items)]

    def _check_batch_size(self, items: Any) -> None:
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            size = f"{len(items)} items" if isinstance(items, list) else show(items)
            raise InvalidInputError(
                f"create_batch takes a list of 1 to {MAX_BATCH} items, got {size}"
                + (" (an empty batch)" if items == [] else ""),
                value=show(items),
            )

    def get(self, id: str) -> Pending[WorkflowInstance]:
        """A handle to an existing instance; raises InstanceNotFoundError for an unknown id."""
        check_id(id)
        return Pending(submit(self.actor.exists.remote, id), lambda _: WorkflowInstance(self, id))

    def wait_all(
        self, instances: list[WorkflowInstance] | list[str], timeout: float | None = None
    ) -> Pending[list[StatusInfo]]:
        """Wait for many instances in one call (e.g. a create_batch); statuses in the same order.
        WaitTimeoutError if they are not all finished within `timeout` seconds."""
        if not isinstance(instances, (list, tuple)):
            raise InvalidInputError(
                f"wait_all takes a list of instances or ids, got {show(instances)}"
            )
        ids = [i.id if isinstance(i, WorkflowInstance) else check_id(i) for i in instances]
        ref = submit(
            self.actor.wait_all.remote, ids, check_seconds_arg(timeout, "wait_all timeout")
        )
        return Pending(ref, lambda snaps: [to_status(s) for s in snaps])

    def instances(
        self, *, created_after: Any = None, created_before: Any = None
    ) -> Pending[list[StatusInfo]]:
        """The status of every instance of this workflow (without outputs), oldest first; only
        those created within the dates if given (datetime, naive = UTC, or epoch seconds)."""
        q = listing.check_query(since=created_after, until=created_before)
        ref = submit(self.actor.instances.remote, q.since, q.until)
        return Pending(ref, lambda snaps: [to_status(s) for s in snaps])

    def list_instances(
        self,
        *,
        status: str | None = None,
        limit: int = listing.DEFAULT_LIMIT,
        cursor: str | None = None,
        reverse: bool = False,
        created_after: Any = None,
        created_before: Any = None,
    ) -> Pending[InstancePage]:
        """One page of instances (without outputs), newest first or, with `reverse`, oldest
        first; only those in `status` and created within the dates (inclusive; datetime, naive
        = UTC, or epoch seconds) if given. Pass the page's `cursor` to get the next one."""
        q = listing.check_query(status, limit, cursor, reverse, created_after, created_before)
        ref = self.actor.list_instances.remote(
            q.status, q.limit, q.cursor, q.reverse, q.since, q.until
        )
        return Pending(ref, _to_page)

    def metrics_report(self) -> Pending[Report]:
        """The workflow's metrics now: totals, histograms and gauges (runtime/metrics.py), as
        the raydo server's /metrics shows them; on a cluster, summed over the reachable nodes."""
        return Pending(self.actor.metrics_report.remote())

    def counts(self) -> Pending[dict[str, int]]:
        """How many instances are in each of the nine statuses."""
        return Pending(self.actor.counts.remote())

    def _item(self, id: str | None, params: Any) -> tuple[str, bytes]:
        iid = check_id(id) if id is not None else str(uuid.uuid4())
        what = f"params of instance {iid!r}"
        return iid, encode(validated(self.cls, self.name, what, params), what)

    def __repr__(self) -> str:
        return f"Workflow({self.cls.__name__}, name={self.name!r})"

    def _repr_html_(self) -> str:
        return workflow_html(self)


class InstancePage(BaseModel):
    """What `list_instances` returns: the instances and the cursor of the next page (or None)."""

    model_config = ConfigDict(frozen=True)
    instances: list[StatusInfo]
    cursor: str | None


def _to_page(page: listing.Page) -> InstancePage:
    return InstancePage(instances=[to_status(s) for s in page.snapshots], cursor=page.cursor)


def _check_workflow_class(cls: Any) -> None:
    """A workflow class must subclass WorkflowEntrypoint and define `async def run`: caught
    here, where the mistake is made, not when the first instance errors."""
    if not isinstance(cls, type) or not issubclass(cls, WorkflowEntrypoint):
        raise InvalidWorkflowError(
            f"{show(cls)} is not a subclass of raydo.WorkflowEntrypoint",
            workflow=getattr(cls, "__name__", show(cls)),
        )
    run: Any = getattr(cls, "run", None)
    if run is WorkflowEntrypoint.run:
        problem = "does not define run()"
    elif inspect.isasyncgenfunction(run):
        problem = "defines run() as an async generator (it yields)"
    elif not (inspect.iscoroutinefunction(run) or inspect.iscoroutinefunction(inspect.unwrap(run))):
        problem = "defines run() without async"
    else:
        return
    raise InvalidWorkflowError(
        f"workflow class {cls.__name__} {problem}; a workflow defines "
        "`async def run(self, event, step)`",
        workflow=cls.__name__,
    )


_STEP_TYPES = ("do", "sleep", "waitForEvent")


def _from_step(value: Any) -> tuple[str, int, str | None]:
    """restart(from_step=...): a step name, (name, count), (name, count, type), or a dict with
    keys name, count, type (Cloudflare's `from`). Count is per type and name, from 1; type is
    "do", "sleep" or "waitForEvent" (not given: the do-step, or the one type with that name)."""
    if isinstance(value, dict) and set(value) <= {"name", "count", "type"} and "name" in value:
        value = (value["name"], value.get("count", 1), value.get("type"))
    if isinstance(value, str):
        value = (value, 1)
    if isinstance(value, (tuple, list)) and len(value) in (2, 3):
        name, count, type_ = (*value, None)[:3]
        if (
            isinstance(count, int)
            and not isinstance(count, bool)
            and count >= 1
            and (type_ is None or type_ in _STEP_TYPES)
        ):
            return check_step_name(name), count, type_
    raise InvalidStepError(
        f"from_step {show(value)} is invalid; give a step name, (name, count[, type]) or "
        "{'name': ..., 'count': n, 'type': t} with count >= 1 and type 'do', 'sleep' or "
        "'waitForEvent'",
        value=show(value),
    )


def _rebuild(
    cls: type[WorkflowEntrypoint], name: str, options: WorkflowOptions, storage: str, code: str
) -> Workflow:
    wf = Workflow(cls, name, storage=storage, options=options, code=code)
    wf._in_actor = True
    return wf


def _all_generated(items: list[dict[str, Any]]) -> bool:
    return all(not isinstance(entry, dict) or entry.get("id") is None for entry in items)


def _batch_entry(index: int, entry: Any) -> tuple[str | None, Any]:
    if not isinstance(entry, dict) or not set(entry) <= {"id", "params"}:
        # Its type and keys, never its content: the item may hold params.
        shape = (
            f"a dict with keys {show(sorted(map(str, entry)))}"
            if isinstance(entry, dict)
            else (f"a {type(entry).__name__}")
        )
        raise InvalidInputError(
            f"create_batch item {index} is {shape}; each item is a dict with optional keys "
            "'id' and 'params'"
        )
    return entry.get("id"), entry.get("params")


class WorkflowInstance:
    """A handle to one instance. Every method returns a Pending: await it or call .result()."""

    def __init__(self, workflow: Workflow, id: str) -> None:
        self.workflow = workflow
        self.id = id

    @property
    def _actor(self) -> Any:
        return self.workflow.actor

    def status(self, *, steps: bool = False) -> Pending[StatusInfo]:
        """Status, output and error; with `steps=True` also every step in the order it first ran."""
        return Pending(submit(self._actor.snapshot.remote, self.id, steps), to_status)

    def params(self) -> Pending[Any]:
        """The params the instance was created with."""
        return Pending(self._actor.params.remote(self.id), _decode_params)

    def pause(self) -> Pending[None]:
        return Pending(submit(self._actor.pause.remote, self.id))

    def resume(self) -> Pending[None]:
        return Pending(submit(self._actor.resume.remote, self.id))

    def terminate(self, *, rollback: bool = False) -> Pending[None]:
        """Stop the instance for good. `rollback=True` first runs the rollback handlers of its
        finished steps (latest first), then stores `terminated`; status().rollback tells how
        they went."""
        if not isinstance(rollback, bool):
            raise InvalidInputError(f"terminate rollback {show(rollback)} must be True or False")
        call = self._actor.terminate.remote
        return Pending(submit(call, self.id, rollback), self._stop_if_self)

    def restart(
        self,
        from_step: str | tuple[str, int] | tuple[str, int, str] | dict[str, Any] | None = None,
    ) -> Pending[None]:
        """Run again from scratch, or keep the steps that ran before `from_step`: a name,
        (name, count), (name, count, type) or {"name", "count", "type"}; count is per type and
        name (from 1), type "do", "sleep" or "waitForEvent" (default: the do-step of that name,
        else the one type that has it)."""
        step = None if from_step is None else _from_step(from_step)
        return Pending(submit(self._actor.restart.remote, self.id, step), self._stop_if_self)

    def delete(self) -> Pending[None]:
        """Remove the instance and everything stored for it. Called by the instance on itself
        (from run()), its activation stops right there."""
        return Pending(submit(self._actor.delete.remote, self.id), self._stop_if_self)

    def _stop_if_self(self, _: Any) -> None:
        stop_if_running(self.workflow.name, self.id)

    def send_event(self, *, type: str, payload: Any = None) -> Pending[None]:
        check_event_type(type)
        raw = encode(payload, f"payload of event {type!r}")
        return Pending(submit(self._actor.send_event.remote, self.id, type, raw))

    def wait(
        self,
        timeout: float | None = None,
        *,
        steps: bool = False,
        progress: bool | Callable[[str], None] | None = None,
    ) -> Pending[StatusInfo]:
        """Wait until the instance is complete, errored or terminated; WaitTimeoutError if not in
        `timeout` seconds. `progress=True` prints a line whenever the status or the current step
        changes (a callable receives the lines instead); in a notebook (and there by default)
        the summary and step table are redrawn in place instead. With progress shown, the status
        includes the steps."""
        seconds_ = check_seconds_arg(timeout, "wait timeout")
        # raydo.testing's in-process waits skip time; polling for progress would not: no
        # progress unless asked for there
        shown = choose_progress(
            progress, auto=getattr(self.workflow, "testing_backend", None) is None
        )
        if shown is not None:
            return ProgressWait(lambda: self.status(steps=True), self.id, seconds_, shown)
        return Pending(submit(self._actor.wait.remote, self.id, seconds_, steps), to_status)

    def describe(self) -> Pending[InstanceDescription]:
        """The status, every step and every attempt, for people: prints as a plain-text
        summary and tables in a terminal, renders as HTML in a notebook (`.status` has the data,
        `.attempts` each attempt with its error, from the history)."""

        async def both() -> InstanceDescription:
            st = await self.status(steps=True)
            found = await self.history(filter=["attempt_", "step_emitted"])
            return InstanceDescription(st, events.attempts_of(found))

        return Pending(cluster.start(both()))

    def subscribe(
        self, cursor: int | str | None = None, filter: Iterable[str] | str | None = None
    ) -> AsyncIterator[events.InstanceEvent]:
        """The instance's events as they happen: `async for ev in inst.subscribe(): ...`.
        Replays the history after `cursor` (None: from the start), then follows live, and ends
        after workflow_completed/errored/terminated. Each event has a `cursor`: subscribe again
        with the last one seen to resume with no gap and no repeat. `filter`: event types, or
        prefixes such as "step_" (raydo.bindings.events lists them)."""
        after, types = events.check_cursor(cursor), events.check_filter(filter)
        return events.subscribe(self.workflow, self.id, after, types)

    def history(
        self,
        cursor: int | str | None = None,
        filter: Iterable[str] | str | None = None,
        limit: int = 100_000,
    ) -> Pending[list[events.InstanceEvent]]:
        """The events recorded so far after `cursor` (at most `limit`), without waiting."""
        after, types = events.check_cursor(cursor), events.check_filter(filter)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(f"history limit {show(limit)} must be an int >= 1")
        return Pending(
            cluster.start(events.read_history(self.workflow, self.id, after, types, limit))
        )

    def __repr__(self) -> str:
        return f"WorkflowInstance({self.workflow.name!r}, {self.id!r})"

    def _repr_html_(self) -> str:
        return instance_html(self)


def to_status(snap: Snapshot) -> StatusInfo:
    rec = snap.record
    status = rec.status
    if snap.pausing and not status.finished:
        status = InstanceStatus.WAITING_FOR_PAUSE
    return StatusInfo(
        id=rec.id,
        workflow=rec.workflow,
        status=status,
        output=decode(snap.output) if snap.output is not None else None,
        error=ErrorInfo(**rec.error) if rec.error else None,
        created_at=_dt(rec.created_at or None),  # 0: not known (status unknown)
        started_at=_dt(rec.started_at),
        ended_at=_dt(rec.ended_at),
        wake_at=_dt(rec.wake_at),
        code=rec.code,
        steps=[_step_info(n, c, s) for n, c, s in snap.steps or []],
        rollback=_rollback_info(rec.rollback),
    )


def _rollback_info(data: dict[str, Any] | None) -> RollbackInfo | None:
    if data is None:
        return None
    error = data.get("error")
    return RollbackInfo(outcome=data["outcome"], error=ErrorInfo(**error) if error else None)


def _step_info(name: str, count: int, step: StepRecord) -> StepInfo:
    output: Any = None
    if step.config and step.config.get("sensitive"):
        output = REDACTED  # the one place every view (status, describe, CLI, HTTP) reads
    elif step.value is not None:
        if step.kind is StepKind.WAIT:
            event = unpack_event(step.value, "event")
            output = {"type": event.type, "payload": decode(event.payload)}
        else:
            output = decode(step.value)
    error = step.error
    name, type_ = rollback.shown(name, step.kind)
    return StepInfo(
        name=name,
        count=count,
        type=type_,
        state=step.state,
        attempts=step.attempts,
        output=output,
        error=ErrorInfo(name=error["name"], message=error["message"]) if error else None,
        started_at=_dt(step.started_at),
        ended_at=_dt(step.ended_at),
        until=_dt(step.until),
        event_type=step.type,
    )


def _decode_params(raw: bytes | None) -> Any:
    return None if raw is None else decode(raw)


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


__all__ = ["InstancePage", "Workflow", "WorkflowInstance"]
