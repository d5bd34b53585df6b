"""How an instance looks to a person: a progress line per change, a step table, and
`InstanceDescription`, which prints as plain text in a terminal and renders as HTML in a notebook.

Plain Python on purpose (no rich): it ships with the core install and works in any terminal, log
file or notebook. `wrangler workflows instances describe` is the model.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import WaitTimeoutError
from ..runtime.model import InstanceStatus, RollbackInfo, StatusInfo, StepInfo, StepState
from ..runtime.rules import show_seconds
from .pending import Pending

if TYPE_CHECKING:
    from .events import AttemptInfo

POLL_EVERY = 0.05  # seconds between status calls while showing progress (one Ray call, ~1 ms)
OUTPUT_WIDTH = 48
_HEADER = ("#", "step", "type", "state", "attempts", "took", "output")
_RIGHT = {0, 4, 5}  # numeric columns


def _clock(ts: datetime | None) -> str:
    return ts.astimezone().strftime("%H:%M:%S") if ts else "?"


def _in(ts: datetime | None) -> str:
    left = (ts - datetime.now(UTC)).total_seconds() if ts else 0.0
    return f"{max(0.0, left):.1f}s"


def _current(st: StatusInfo) -> StepInfo | None:
    """The step the instance is on: the last one not done yet."""
    return next((s for s in reversed(st.steps) if s.state is not StepState.DONE), None)


def progress_line(st: StatusInfo) -> str:
    """Where an instance is, in one line: its status and what it is doing or waiting for
    (needs the steps: `status(steps=True)`)."""
    current = _current(st)
    status = f"{st.status.value:<9}"
    if st.status.finished or current is None:
        if st.error is not None:
            return f"{status} {st.error.name}: {st.error.message}"
        return status.rstrip()
    if current.type == "sleep":
        until = current.until
        return f"{status} sleep {current.name!r} until {_clock(until)} (in {_in(until)})"
    if current.type == "waitForEvent":
        return f"{status} wait_for_event {current.name!r}, timeout at {_clock(current.until)}"
    if current.state is StepState.RETRYING and current.error is not None:
        failed = f"attempt {current.attempts} failed: {current.error.name}: {current.error.message}"
        if st.status is InstanceStatus.WAITING:
            return f"{status} retry {current.name!r} in {_in(current.until)}; {failed}"
        return f"{status} step {current.name!r}: {failed}; retrying"
    return f"{status} step {current.name!r}, attempt {current.attempts}"


def _short(value: Any, width: int) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 3] + "..."


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.2f}s"


def step_rows(steps: list[StepInfo], output_width: int = OUTPUT_WIDTH) -> list[tuple[str, ...]]:
    """One row of cells per step: #, step, type, state, attempts, took, output (or error)."""
    return [
        (
            str(i),
            s.name if s.count == 1 else f"{s.name} #{s.count}",
            s.type,
            s.state,
            str(s.attempts) if s.type == "do" else "-",
            _took(s.started_at, s.ended_at),
            f"{s.error.name}: {s.error.message}"
            if s.error and s.state == "done"
            else _short(s.output, output_width),
        )
        for i, s in enumerate(steps, 1)
    ]


def rollback_text(rollback: RollbackInfo) -> str:
    """status().rollback in one line: "completed", or "failed (Name: message)"."""
    error = rollback.error
    return rollback.outcome + (f" ({error.name}: {error.message})" if error else "")


def step_table(steps: list[StepInfo], output_width: int = OUTPUT_WIDTH) -> str:
    """The steps as an aligned plain-text table (outputs truncated to `output_width`)."""
    return _table(_HEADER, step_rows(steps, output_width), _RIGHT)


_ATTEMPT_HEADER = ("step", "attempt", "start", "took", "result", "emitted")


def attempt_rows(attempts: list[AttemptInfo]) -> list[tuple[str, ...]]:
    """One row per attempt: step, attempt, start, took, result (ok, error, retry time), emits."""
    return [
        (
            a.step if a.count == 1 else f"{a.step} #{a.count}",
            str(a.attempt),
            _clock(a.started_at),
            _took(a.started_at, a.ended_at),
            _attempt_result(a),
            str(a.emitted),
        )
        for a in attempts
    ]


def _attempt_result(a: AttemptInfo) -> str:
    if a.success is None:
        return "running"
    if a.success:
        return "ok"
    assert a.error is not None
    retry = f"; retry at {_clock(a.retry_at)}" if a.retry_at is not None else ""
    return f"{a.error.name}: {a.error.message}"[:120] + retry


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> str:
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [
            v.rjust(w) if c in right else v.ljust(w)
            for c, (v, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  " + "  ".join(cells).rstrip()

    rule = "  " + "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


class InstanceDescription:
    """What `instance.describe()` returns: the status with its steps, shown for people.

    `print()` it (or let a terminal REPL show it) for a plain-text summary and step table; a
    notebook renders it as an HTML table. `.status` is the StatusInfo it shows."""

    def __init__(self, status: StatusInfo, attempts: list[AttemptInfo] | None = None) -> None:
        self.status = status
        self.attempts = attempts or []

    def _summary(self) -> list[tuple[str, str]]:
        st = self.status
        took = _took(st.started_at or st.created_at, st.ended_at)
        fields = [
            ("status", progress_line(st) if not st.status.finished else st.status.value),
            ("created", st.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")),
        ]
        if st.ended_at is not None:
            fields.append(("ended", f"{_clock(st.ended_at)} (took {took})"))
        if st.error is not None:
            fields.append(("error", f"{st.error.name}: {st.error.message}"))
        elif st.status.finished:
            fields.append(("output", _short(st.output, 200)))
        if st.rollback is not None:
            fields.append(("rollback", rollback_text(st.rollback)))
        return fields

    def __str__(self) -> str:
        st = self.status
        head = [f"instance {st.id} of workflow {st.workflow!r}"]
        head += [f"  {name + ':':<8} {value}" for name, value in self._summary()]
        steps = step_table(st.steps) if st.steps else "  (no steps yet)"
        if not self.attempts:
            return "\n".join([*head, "", steps])
        attempts = _table(_ATTEMPT_HEADER, attempt_rows(self.attempts), {1, 3, 5})
        return "\n".join([*head, "", steps, "", "  attempts:", attempts])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        st = self.status
        esc = html.escape
        summary = "".join(
            f"<tr><th style='text-align:left'>{esc(name)}</th><td><code>{esc(value)}</code></td>"
            "</tr>"
            for name, value in self._summary()
        )
        return (
            f"<div class='raydo-instance'><p>instance <code>{esc(st.id)}</code> of workflow "
            f"<code>{esc(st.workflow)}</code></p><table>{summary}</table>"
            f"{_html_table(_HEADER, step_rows(st.steps))}"
            f"{_html_table(_ATTEMPT_HEADER, attempt_rows(self.attempts))}</div>"
        )


def _html_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    if not rows:
        return ""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class ProgressPrinter:
    """Reports a line whenever an instance's status or current step changes."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self._report = report
        self._started = time.monotonic()
        self._last: tuple[Any, ...] = ()

    def update(self, st: StatusInfo) -> None:
        current = _current(st)
        key: tuple[Any, ...] = (st.status,)
        if current is not None:
            key = (st.status, current.name, current.count, current.state, current.attempts)
        if key != self._last:
            self._last = key
            self._report(f"  [{time.monotonic() - self._started:5.1f}s] {progress_line(st)}")


def print_line(line: str) -> None:
    print(line, flush=True)


class ProgressWait(Pending[StatusInfo]):
    """`instance.wait(progress=True)`: polls the status (with steps), reports every change, and
    returns the final status once the instance is complete, errored or terminated."""

    def __init__(
        self,
        fetch: Callable[[], Pending[StatusInfo]],
        iid: str,
        timeout: float | None,
        report: Callable[[str], None],
    ) -> None:
        self._fetch, self._iid, self._timeout = fetch, iid, timeout
        self._printer = ProgressPrinter(report)
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
