"""What users hold: the `Workflow` binding and `WorkflowInstance` handles."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..actors import handles
from ..errors import InvalidIdError, InvalidInputError, InvalidStepError
from ..runtime import listing
from ..runtime.model import (
    ErrorInfo,
    InstanceStatus,
    StatusInfo,
    StepInfo,
    WorkflowEntrypoint,
)
from ..runtime.namespace import Snapshot
from ..runtime.rules import (
    check_event_type,
    check_id,
    check_seconds_arg,
    check_step_name,
    show,
)
from ..storage.codec import decode, encode, unpack
from ..storage.instances import StepRecord
from . import client
from .pending import Pending
from .shipping import ship_by_value_if_needed

MAX_BATCH = 100
MAX_WORKFLOW_NAME = 64
_KIND_NAMES = {"do": "do", "sleep": "sleep", "wait": "waitForEvent"}


class Workflow:
    """The binding for one workflow: create instances and get handles to them.

    concurrency: instances of this workflow running at once (each holds one actor); the rest are
    `queued`. env: bindings the workflow sees as `self.env` (e.g. other Workflows). hibernate_after:
    waits longer than this many seconds give the actor back. block_limit: seconds run() code
    outside steps may block the event loop before its worker is replaced (steps: their timeout).
    """

    def __init__(
        self,
        cls: type[WorkflowEntrypoint],
        name: str | None = None,
        *,
        concurrency: int = 4,
        env: dict[str, Any] | None = None,
        hibernate_after: float = 0.25,
        block_limit: float = 60.0,
        warm: int = 1,
        storage: str | None = None,
    ) -> None:
        if not (isinstance(cls, type) and issubclass(cls, WorkflowEntrypoint)):
            raise InvalidInputError(f"{cls!r} is not a subclass of raydo.WorkflowEntrypoint")
        ship_by_value_if_needed(cls)
        self.cls = cls
        self.name = check_id(cls.__name__ if name is None else name, "workflow name")
        if len(self.name) > MAX_WORKFLOW_NAME:
            raise InvalidIdError(f"workflow name {self.name!r} is longer than 64 characters")
        if env is not None and (
            not isinstance(env, dict) or not all(isinstance(k, str) for k in env)
        ):
            raise InvalidInputError(f"env {show(env)} must be a dict with str keys, or None")
        self.options = {
            "concurrency": _int_option("concurrency", concurrency, 1),
            "env": dict(env or {}),
            "hibernate_after": _seconds_option("hibernate_after", hibernate_after),
            "block_limit": _seconds_option("block_limit", block_limit),
            "warm": _int_option("warm", warm, 0),
        }
        self._storage = storage
        self._actor: Any = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Crossing into an actor: carry the resolved storage, never a live handle.
        return (_rebuild, (self.cls, self.name, self.options, self.storage))

    @property
    def storage(self) -> str:
        if self._storage is None:
            self._storage = client.context().storage
        return self._storage

    @property
    def actor(self) -> Any:
        if self._actor is None:
            if self._storage is None:
                client.context()
            self._actor = handles.namespace_actor(self.storage, self.name, self.cls, self.options)
        return self._actor

    def create(self, id: str | None = None, params: Any = None) -> Pending[WorkflowInstance]:
        """Start a new instance. `id` defaults to a uuid4; a taken id raises InstanceExistsError."""
        item = self._item(id, params)
        ref = self.actor.create.remote([item], False)
        return Pending(ref, lambda ids: WorkflowInstance(self, ids[0]))

    def create_batch(self, items: list[dict[str, Any]]) -> Pending[list[WorkflowInstance]]:
        """Create up to 100 instances in one durable write; ids that already exist are skipped."""
        if not isinstance(items, list) or len(items) > MAX_BATCH:
            raise InvalidInputError(
                f"create_batch takes a list of at most {MAX_BATCH} items, got "
                f"{len(items) if isinstance(items, list) else type(items).__name__}"
            )
        prepared = [self._item(*_batch_entry(i, entry)) for i, entry in enumerate(items)]
        ref = self.actor.create.remote(prepared, True)
        return Pending(ref, lambda ids: [WorkflowInstance(self, iid) for iid in ids])

    def get(self, id: str) -> Pending[WorkflowInstance]:
        """A handle to an existing instance; raises InstanceNotFoundError for an unknown id."""
        check_id(id)
        return Pending(self.actor.exists.remote(id), lambda _: WorkflowInstance(self, id))

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
        ref = self.actor.wait_all.remote(ids, check_seconds_arg(timeout, "wait_all timeout"))
        return Pending(ref, lambda snaps: [to_status(s) for s in snaps])

    def instances(self) -> Pending[list[StatusInfo]]:
        """The status of every instance of this workflow (without outputs)."""
        return Pending(self.actor.instances.remote(), lambda snaps: [to_status(s) for s in snaps])

    def list_instances(
        self,
        *,
        status: str | None = None,
        limit: int = listing.DEFAULT_LIMIT,
        cursor: str | None = None,
        reverse: bool = False,
    ) -> Pending[InstancePage]:
        """One page of instances (without outputs), newest first or, with `reverse`, oldest
        first; only those in `status` if given. Pass the page's `cursor` to get the next one."""
        wanted = listing.check_status_filter(status)
        listing.check_limit(limit)
        listing.decode_cursor(cursor)
        if not isinstance(reverse, bool):
            raise InvalidInputError(f"reverse {show(reverse)} must be a bool")
        ref = self.actor.list_instances.remote(wanted, limit, cursor, reverse)
        return Pending(ref, _to_page)

    def counts(self) -> Pending[dict[str, int]]:
        """How many instances are in each of the nine statuses."""
        return Pending(self.actor.counts.remote())

    def _item(self, id: str | None, params: Any) -> tuple[str, bytes]:
        iid = check_id(id) if id is not None else str(uuid.uuid4())
        return iid, encode(params, f"params of instance {iid!r}")

    def __repr__(self) -> str:
        return f"Workflow({self.cls.__name__}, name={self.name!r})"


class InstancePage(BaseModel):
    """What `list_instances` returns: the instances and the cursor of the next page (or None)."""

    model_config = ConfigDict(frozen=True)
    instances: list[StatusInfo]
    cursor: str | None


def _to_page(page: listing.Page) -> InstancePage:
    return InstancePage(instances=[to_status(s) for s in page.snapshots], cursor=page.cursor)


def _int_option(what: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{what} {show(value)} must be an int >= {low}")
    return value


def _seconds_option(what: str, value: Any) -> float:
    seconds_ = check_seconds_arg(value, what)
    if seconds_ is None:
        raise InvalidInputError(f"{what} must be a number of seconds, not None")
    return seconds_


def _from_step(value: Any) -> str | tuple[str, int]:
    """restart(from_step=...): a step name, or (name, count) with count >= 1."""
    if isinstance(value, str):
        return check_step_name(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
        and value[1] >= 1
    ):
        return check_step_name(value[0]), value[1]
    raise InvalidStepError(
        f"from_step {show(value)} is invalid; give a step name or (name, count) with count >= 1"
    )


def _rebuild(
    cls: type[WorkflowEntrypoint], name: str, options: dict[str, Any], storage: str
) -> Workflow:
    wf = Workflow(cls, name, storage=storage)
    wf.options = options
    return wf


def _batch_entry(index: int, entry: Any) -> tuple[str | None, Any]:
    if not isinstance(entry, dict) or not set(entry) <= {"id", "params"}:
        raise InvalidInputError(
            f"create_batch item {index} is {entry!r}; each item is a dict with optional keys "
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
        return Pending(self._actor.snapshot.remote(self.id, steps), to_status)

    def params(self) -> Pending[Any]:
        """The params the instance was created with."""
        return Pending(self._actor.params.remote(self.id), _decode_params)

    def pause(self) -> Pending[None]:
        return Pending(self._actor.pause.remote(self.id))

    def resume(self) -> Pending[None]:
        return Pending(self._actor.resume.remote(self.id))

    def terminate(self) -> Pending[None]:
        return Pending(self._actor.terminate.remote(self.id))

    def restart(self, from_step: str | tuple[str, int] | None = None) -> Pending[None]:
        """Run again from scratch, or keep the steps before `from_step` (name or (name, count))."""
        step = None if from_step is None else _from_step(from_step)
        return Pending(self._actor.restart.remote(self.id, step))

    def delete(self) -> Pending[None]:
        return Pending(self._actor.delete.remote(self.id))

    def send_event(self, *, type: str, payload: Any = None) -> Pending[None]:
        check_event_type(type)
        raw = encode(payload, f"payload of event {type!r}")
        return Pending(self._actor.send_event.remote(self.id, type, raw))

    def wait(self, timeout: float | None = None, *, steps: bool = False) -> Pending[StatusInfo]:
        """Wait until the instance is complete, errored or terminated; WaitTimeoutError if not in
        `timeout` seconds."""
        seconds_ = check_seconds_arg(timeout, "wait timeout")
        return Pending(self._actor.wait.remote(self.id, seconds_, steps), to_status)

    def __repr__(self) -> str:
        return f"WorkflowInstance({self.workflow.name!r}, {self.id!r})"


def to_status(snap: Snapshot) -> StatusInfo:
    rec = snap.record
    status = InstanceStatus(rec.status)
    if snap.pausing and not status.finished:
        status = InstanceStatus.WAITING_FOR_PAUSE
    return StatusInfo(
        id=rec.id,
        workflow=rec.workflow,
        status=status,
        output=decode(snap.output) if snap.output is not None else None,
        error=ErrorInfo(**rec.error) if rec.error else None,
        created_at=_dt(rec.created_at),
        started_at=_dt(rec.started_at),
        ended_at=_dt(rec.ended_at),
        wake_at=_dt(rec.wake_at),
        steps=[_step_info(n, c, s) for n, c, s in snap.steps or []],
    )


def _step_info(name: str, count: int, step: StepRecord) -> StepInfo:
    output = None
    if step.value is not None:
        if step.kind == "wait":
            body = unpack(step.value, "event")
            output = {"type": body["y"], "payload": decode(body["p"])}
        else:
            output = decode(step.value)
    error = step.error
    return StepInfo(
        name=name,
        count=count,
        type=_KIND_NAMES[step.kind],
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
