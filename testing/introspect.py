"""Cloudflare's workflow introspection, in Python: `introspect(wf, id)` for one instance and
`introspect_workflow(wf)` for the instances a workflow creates next.

Modifiers are written to the instance's own storage namespace before (or while) it runs; the
engine reads them at the start of every activation (runtime/modifiers.py), so they reach the
instance wherever it runs: in this process (LocalEnv) or in a Ray actor (RayEnv). Set them before
`create`; set later, they apply from the instance's next activation. Steps already recorded keep
their record.

The waits return a Pending (await it, or `.result()`), give up after `timeout` real seconds
(WaitTimeoutError), let time skip while every instance waits on it (see LocalEnv and RayEnv), and
fail at once with UnreachableError when the instance ended in a way that rules out what they wait
for. Once the instance has ended, a modifier naming a step it never ran is an InvalidStepError:
a misspelt name would otherwise leave the test running the real step.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from ..bindings.pending import Pending
from ..bindings.workflow import Workflow
from ..errors import InvalidInputError, InvalidStepError, UnreachableError
from ..runtime.model import ErrorInfo, InstanceStatus, StatusInfo, StepInfo
from ..runtime.modifiers import Failure, Modifiers, Selection, StepKey
from ..runtime.rules import check_event_type, check_id, show
from ..storage.codec import encode
from .backend import NOT_YET, Backend
from .inputs import (
    DEFAULT_TIMEOUT,
    StepSelector,
    count_arg,
    error_record,
    status_arg,
    step_key,
    step_keys,
    timeout_arg,
    times_arg,
)


def introspect(workflow: Workflow, id: str) -> InstanceIntrospector:
    """Introspect and modify instance `id` of `workflow` (a binding of LocalEnv.workflow, or any
    raydo binding in Ray mode). Call it before `create`; use it as a context manager (or call
    `dispose()`) to remove its modifiers at the end."""
    return InstanceIntrospector(backend_of(workflow), workflow, check_id(id))


def introspect_workflow(workflow: Workflow) -> WorkflowIntrospector:
    """Introspect and modify every instance `workflow` creates from now on (also those created
    from inside another instance's run()), until `dispose()`; `get()` lists them."""
    return WorkflowIntrospector(backend_of(workflow), workflow)


def backend_of(workflow: Any) -> Backend:
    if not isinstance(workflow, Workflow):
        raise InvalidInputError(
            f"{show(workflow)} is not a workflow binding; give what raydo.workflow(...) or "
            "LocalEnv.workflow(...) returned",
            value=show(workflow),
        )
    local: Backend | None = getattr(workflow, "testing_backend", None)
    if local is not None:
        return local
    from .ray_env import RayBackend

    return RayBackend.of(workflow.storage)


class _Modifying(abc.ABC):
    """The seven modifiers (both introspectors have them). Each checks its input first, so a bad
    call changes nothing, then stores the whole set. Used as a (sync or async) context manager,
    it removes its modifiers on exit."""

    _mods: Modifiers

    @abc.abstractmethod
    def _save(self) -> None: ...

    @abc.abstractmethod
    def _close(self, failed: bool) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        self._close(failed=kind is not None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close(failed=kind is not None)

    def disable_sleeps(self, steps: list[StepSelector] | None = None) -> Self:
        """Sleeps (every one, or those listed) end at once."""
        _select(self._mods.sleeps, step_keys(steps, "disable_sleeps"))
        return self._saved()

    def disable_retry_delays(self, steps: list[StepSelector] | None = None) -> Self:
        """Failed attempts (of every step, or those listed) are retried at once."""
        _select(self._mods.retry_delays, step_keys(steps, "disable_retry_delays"))
        return self._saved()

    def mock_step_result(self, step: StepSelector, value: Any) -> Self:
        """The step returns `value` without running its function (recorded as its result)."""
        key = step_key(step, "mock_step_result step")
        self._mods.results[key] = encode(value, f"mocked result of step {key[0]!r}")
        return self._saved()

    def mock_step_error(
        self, step: StepSelector, error: BaseException | type[Exception], times: int | None = None
    ) -> Self:
        """Attempts of the step raise `error` (its first `times` attempts, or every one): the
        step's retry policy handles them as real failures. A NonRetryableError stops retries."""
        key = step_key(step, "mock_step_error step")
        failure = Failure(error_record(error), times_arg(times, "mock_step_error"))
        self._mods.failures[key] = failure
        return self._saved()

    def force_step_timeout(self, step: StepSelector, times: int | None = None) -> Self:
        """Attempts of the step time out at once (its first `times` attempts, or every one)."""
        key = step_key(step, "force_step_timeout step")
        self._mods.failures[key] = Failure(None, times_arg(times, "force_step_timeout"))
        return self._saved()

    def mock_event(self, type: str, payload: Any = None) -> Self:
        """A wait_for_event for `type` gets this event without anyone sending it. Mocked events
        go to the first waits of their type, in the order given, ahead of events sent for real."""
        check_event_type(type)
        self._mods.events.append((type, encode(payload, f"mocked payload of event {type!r}")))
        return self._saved()

    def force_event_timeout(self, step: StepSelector) -> Self:
        """The wait_for_event step times out at once (WaitForEventTimeoutError in run())."""
        self._mods.event_timeouts.add(step_key(step, "force_event_timeout step"))
        return self._saved()

    def _saved(self) -> Self:
        self._save()
        return self


class InstanceIntrospector(_Modifying):
    """One instance's modifiers and waits (see the module docstring)."""

    def __init__(
        self, backend: Backend, workflow: Workflow, iid: str, mods: Modifiers | None = None
    ) -> None:
        self._backend, self.workflow, self.id = backend, workflow, iid
        self._store = backend.store(workflow.name)
        if mods is None:
            raw = self._store.modifiers(iid)
            mods = Modifiers.unpack(raw) if raw is not None else Modifiers(uuid.uuid4().hex)
        self._mods = mods

    def _save(self) -> None:
        self._store.set_modifiers(self.id, self._mods.pack())

    # -- waits -------------------------------------------------------------------------------

    def wait_for_status(
        self, status: str, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Pending[StatusInfo]:
        """The status once the instance is in `status`; UnreachableError at once if it ended
        in another status."""
        target = status_arg(status)

        def probe() -> Any:
            st = self._status()
            if st is not None and (st.status == target or st.status.finished):
                self._check_named_steps(st)
                if st.status != target:
                    self._unreachable(st, f"status {target.value!r}")
                return st
            return NOT_YET

        return self._poll(probe, timeout)

    def wait_for_step_result(
        self, step: StepSelector, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Pending[Any]:
        """The step's result once it has one (a wait_for_event step's is {type, payload});
        UnreachableError at once if it failed for good or the instance ended without it."""
        name, count = step_key(step, "wait_for_step_result step")

        def probe() -> Any:
            st = self._status()
            if st is None:
                return NOT_YET
            found = _step_of(st, (name, count))
            expected = f"a result of step {name!r} #{count}"
            if found is not None and found.error is not None and found.state == "done":
                self._unreachable(st, expected, f"the step failed for good: {_error(found.error)}")
            if found is not None and found.state == "done":
                return found.output
            if st.status.finished:
                self._check_named_steps(st)
                self._unreachable(st, expected)
            return NOT_YET

        return self._poll(probe, timeout)

    def get_output(self, *, timeout: float | None = DEFAULT_TIMEOUT) -> Pending[Any]:
        """run()'s return value, once the instance is complete (UnreachableError if it ended
        otherwise)."""
        return self._when_finished(InstanceStatus.COMPLETE, lambda st: st.output, timeout)

    def get_error(self, *, timeout: float | None = DEFAULT_TIMEOUT) -> Pending[ErrorInfo]:
        """The error the instance ended with, once errored (UnreachableError if it ended
        otherwise)."""
        return self._when_finished(InstanceStatus.ERRORED, lambda st: st.error, timeout)

    def _when_finished(
        self, status: InstanceStatus, answer: Callable[[StatusInfo], Any], timeout: float | None
    ) -> Pending[Any]:
        def probe() -> Any:
            st = self._status()
            if st is None or not st.status.finished:
                return NOT_YET
            self._check_named_steps(st)
            if st.status != status:
                self._unreachable(st, f"status {status.value!r}")
            return answer(st)

        return self._poll(probe, timeout)

    # -- the end -----------------------------------------------------------------------------

    def dispose(self) -> None:
        """Remove the modifiers; when the instance has ended, check that each named a step it
        ran (InvalidStepError otherwise)."""
        self._store.set_modifiers(self.id, None)
        st = self._backend.poll(self._status, 0).result() if self._finished_in_storage() else None
        if st is not None:
            self._check_named_steps(st)

    def _close(self, failed: bool) -> None:
        if failed:  # the test's own error matters more than what dispose would find
            self._store.set_modifiers(self.id, None)
        else:
            self.dispose()

    # -- helpers -----------------------------------------------------------------------------

    def _poll(self, probe: Callable[[], Any], timeout: float | None) -> Pending[Any]:
        return self._backend.poll(probe, timeout_arg(timeout))

    def _status(self) -> StatusInfo | None:
        return self._backend.status(self.workflow, self.id)

    def _finished_in_storage(self) -> bool:
        rec = self._store.get(self.id)
        return rec is not None and rec.finished

    def _unreachable(self, st: StatusInfo, expected: str, why: str | None = None) -> None:
        ended = "is" if not st.status.finished else "ended"
        detail = why or (f"it errored with {_error(st.error)}" if st.error is not None else None)
        raise UnreachableError(
            f"instance {self.id!r} {ended} {st.status.value}"
            + (f" ({detail})" if detail else "")
            + f"; {expected} can never come",
            id=self.id,
            expected=expected,
            status=st.status.value,
        )

    def _check_named_steps(self, st: StatusInfo) -> None:
        if st.status.finished:
            check_named_steps(self._mods, st)

    def __repr__(self) -> str:
        return f"InstanceIntrospector({self.workflow.name!r}, {self.id!r})"


class WorkflowIntrospector(_Modifying):
    """Modifiers for every instance a workflow creates from now on, and those instances."""

    def __init__(self, backend: Backend, workflow: Workflow) -> None:
        self._backend, self.workflow = backend, workflow
        self._store = backend.store(workflow.name)
        self._mods = Modifiers(uuid.uuid4().hex)
        self._seen: dict[str, InstanceIntrospector] = {}
        self._save()  # from now on, new instances are this introspection's, modified or not

    def _save(self) -> None:
        self._store.set_workflow_modifiers(self._mods.pack())

    def get(self) -> list[InstanceIntrospector]:
        """The instances created since this introspection began, oldest first. Each has the
        modifiers set when it was created (later modifier calls reach only later instances)."""
        found = []
        for rec in sorted(self._store.records(), key=lambda r: (r.created_at, r.id)):
            intro = self._seen.get(rec.id)
            if intro is None:
                raw = self._store.modifiers(rec.id)
                mods = Modifiers.unpack(raw) if raw is not None else None
                if mods is None or mods.token != self._mods.token:
                    continue
                intro = self._seen[rec.id] = InstanceIntrospector(
                    self._backend, self.workflow, rec.id, mods
                )
            found.append(intro)
        return found

    def wait_for_instances(
        self, count: int, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Pending[list[InstanceIntrospector]]:
        """The instances once at least `count` were created (e.g. by a parent's run())."""
        wanted = count_arg(count)

        def probe() -> Any:
            found = self.get()
            return found if len(found) >= wanted else NOT_YET

        return self._backend.poll(probe, timeout_arg(timeout))

    def dispose(self) -> None:
        """Stop modifying new instances and remove the modifiers of those created; then check,
        for each that ended, that every modifier named a step it ran (InvalidStepError)."""
        self._store.set_workflow_modifiers(None)
        problems: list[InvalidStepError] = []
        for intro in self.get():
            try:
                intro.dispose()
            except InvalidStepError as exc:
                problems.append(exc)
        if problems:
            raise problems[0]

    def _close(self, failed: bool) -> None:
        if not failed:
            self.dispose()
            return
        self._store.set_workflow_modifiers(None)
        for intro in self.get():
            self._store.set_modifiers(intro.id, None)

    def __repr__(self) -> str:
        return f"WorkflowIntrospector({self.workflow.name!r})"


def check_named_steps(mods: Modifiers, st: StatusInfo) -> None:
    """InvalidStepError for the first modifier that names a step the ended instance never ran
    (as that kind of step)."""
    ran = {(s.name, s.count): s.type for s in st.steps}
    for kind, (name, count) in mods.selected():
        found = ran.get((name, count))
        if found == kind.display:
            continue
        as_what = f" (it is a {found} step)" if found is not None else ""
        raise InvalidStepError(
            f"a modifier names {kind.display} step {name!r} #{count}, but instance {st.id!r} "
            f"ended {st.status.value} without running one{as_what}; its steps: {_steps(st)}",
            value=show({"name": name, "count": count}),
        )


def _select(selection: Selection, keys: list[StepKey] | None) -> None:
    if keys is None:
        selection.every = True
    else:
        selection.steps.update(keys)


def _step_of(st: StatusInfo, key: StepKey) -> StepInfo | None:
    return next((s for s in st.steps if (s.name, s.count) == key), None)


def _steps(st: StatusInfo, limit: int = 20) -> str:
    shown = [f"{s.name!r} #{s.count} ({s.type})" for s in st.steps[:limit]]
    more = f", ... ({len(st.steps)} in all)" if len(st.steps) > limit else ""
    return (", ".join(shown) or "none") + more


def _error(error: ErrorInfo) -> str:
    return f"{error.name}: {error.message}"
