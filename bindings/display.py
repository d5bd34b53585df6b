"""Progress while an instance runs: a line per change in a terminal, or, in a notebook, the
instance's summary and step table redrawn in place (an IPython display handle: plain HTML, so it
needs no ipywidgets and still shows in a notebook saved with its outputs). What is drawn comes from
runtime/report.py, re-exported here.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidInputError, RaydoError, WaitTimeoutError
from ..runtime import report
from ..runtime.model import StatusInfo
from ..runtime.report import (
    InstanceDescription,
    attempt_rows,
    current_step,
    progress_line,
    rollback_text,
    status_html,
    step_rows,
    step_table,
    unavailable_html,
)
from ..runtime.rules import show, show_seconds
from . import client
from .pending import Pending

if TYPE_CHECKING:
    from .workflow import Workflow, WorkflowInstance

__all__ = [
    "InstanceDescription",
    "NotebookProgress",
    "ProgressPrinter",
    "ProgressWait",
    "attempt_rows",
    "in_notebook",
    "print_line",
    "progress_line",
    "rollback_text",
    "step_rows",
    "step_table",
]

POLL_EVERY = 0.05  # seconds between status calls while showing progress (one Ray call, ~1 ms)
REPR_TIMEOUT = 10.0  # seconds a notebook waits for the status it renders
REPR_INSTANCES = 10  # instances a workflow's notebook view lists


class Progress(Protocol):
    def update(self, st: StatusInfo) -> None: ...


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython, not a script). Never imports
    IPython: a process that has not loaded it is not a notebook."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython else None
    return shell is not None and getattr(shell, "kernel", None) is not None


class ProgressPrinter:
    """Reports a line whenever an instance's status or current step changes."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self._report = report
        self._started = time.monotonic()
        self._last: tuple[Any, ...] = ()

    def update(self, st: StatusInfo) -> None:
        current = current_step(st)
        key: tuple[Any, ...] = (st.status,)
        if current is not None:
            key = (st.status, current.name, current.count, current.state, current.attempts)
        if key != self._last:
            self._last = key
            self._report(f"  [{time.monotonic() - self._started:5.1f}s] {progress_line(st)}")


def print_line(line: str) -> None:
    print(line, flush=True)


def choose_progress(progress: Any, auto: bool = True) -> Progress | None:
    """What `wait(progress=...)` shows. None (the default): the notebook display inside a
    notebook (unless not `auto`), nothing elsewhere. True: the notebook display, or a line per
    change in a terminal. A callable receives the lines. False: nothing."""
    if progress is None and not auto:
        return None
    if progress is None or progress is True:
        if in_notebook():
            return NotebookProgress()
        return ProgressPrinter(print_line) if progress else None
    if progress is False:
        return None
    if callable(progress):
        return ProgressPrinter(progress)
    raise InvalidInputError(
        f"progress {show(progress)} must be None, True, False or a callable taking a line"
    )


def _not_started(wf: Workflow) -> bool:
    """Showing a binding must not start raydo (and Ray) as a side effect: after
    `raydo.shutdown()` a notebook shows that instead of a status."""
    return getattr(wf, "testing_backend", None) is None and client.current() is None


_NOT_STARTED = RaydoError("raydo is not initialized (raydo.init() starts it)")


def instance_html(inst: WorkflowInstance) -> str:
    """A notebook shows an instance handle as its current status and steps (one status call,
    bounded by REPR_TIMEOUT)."""
    what = f"instance {inst.id} of workflow {inst.workflow.name!r}"
    if _not_started(inst.workflow):
        return unavailable_html(what, _NOT_STARTED)
    try:
        st = inst.status(steps=True).result(timeout=REPR_TIMEOUT)
    except RaydoError as err:
        return unavailable_html(what, err)
    return status_html(st)


def workflow_html(wf: Workflow) -> str:
    """A notebook shows a workflow binding as its status counts and newest instances."""
    if _not_started(wf):
        return unavailable_html(f"workflow {wf.name!r}", _NOT_STARTED)
    try:
        counts = wf.counts().result(timeout=REPR_TIMEOUT)
        page = wf.list_instances(limit=REPR_INSTANCES).result(timeout=REPR_TIMEOUT)
    except RaydoError as err:
        return unavailable_html(f"workflow {wf.name!r}", err)
    return report.workflow_html(wf.name, wf.cls.__name__, counts, page.instances)


class NotebookProgress:
    """Redraws the instance's summary and step table in one notebook output, in place, on every
    change: one display handle, updated (not a new output per change)."""

    def __init__(self) -> None:
        # in_notebook() said IPython is loaded; untyped for mypy, hence Any
        shown: Any = importlib.import_module("IPython.display")
        self._html = shown.HTML
        self._handle = shown.display(
            self._html("<i>waiting for the first status...</i>"), display_id=True
        )
        self._started = time.monotonic()
        self._last = ""

    def update(self, st: StatusInfo) -> None:
        elapsed = f"<p><small>{time.monotonic() - self._started:.1f}s</small></p>"
        body = InstanceDescription(st)._repr_html_()
        if body != self._last:
            self._last = body
            self._handle.update(self._html(body + elapsed))


class ProgressWait(Pending[StatusInfo]):
    """`instance.wait(progress=True)`: polls the status (with steps), reports every change, and
    returns the final status once the instance is complete, errored or terminated."""

    def __init__(
        self,
        fetch: Callable[[], Pending[StatusInfo]],
        iid: str,
        timeout: float | None,
        progress: Progress,
    ) -> None:
        self._fetch, self._iid, self._timeout = fetch, iid, timeout
        self._printer = progress
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def __await__(self) -> Generator[Any, None, StatusInfo]:
        return self._await().__await__()

    async def _await(self) -> StatusInfo:
        while True:
            st = await self._fetch()
            if self._done(st):
                return st
            await asyncio.sleep(POLL_EVERY)

    def result(self, timeout: float | None = None) -> StatusInfo:
        if timeout is not None and (self._timeout is None or timeout < self._timeout):
            self._timeout, self._deadline = timeout, time.monotonic() + timeout
        while True:
            st = self._fetch().result()
            if self._done(st):
                return st
            time.sleep(POLL_EVERY)

    def _done(self, st: StatusInfo) -> bool:
        self._printer.update(st)
        if st.status.finished:
            return True
        if self._deadline is not None and time.monotonic() > self._deadline:
            shown = show_seconds(self._timeout if self._timeout is not None else 0.0)
            raise WaitTimeoutError(
                f"instance {self._iid!r} did not finish within {shown} seconds", id=self._iid
            )
        return False
