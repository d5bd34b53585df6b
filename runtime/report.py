"""How an instance looks to a person: a progress line, a step table, and `InstanceDescription`,
which prints as plain text in a terminal and renders as HTML in a notebook; the HTML of a status
and of a workflow's instances (what a notebook shows for StatusInfo, WorkflowInstance, Workflow).

Plain Python on purpose (no rich): it ships with the core install and works in any terminal, log
file or notebook. `wrangler workflows instances describe` is the model. Pure: it renders what it is
given, and the bindings fetch it.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from .model import InstanceStatus, RollbackInfo, StatusInfo, StepInfo, StepState

OUTPUT_WIDTH = 48
_HEADER = ("#", "step", "type", "state", "attempts", "took", "output")
_RIGHT = {0, 4, 5}  # numeric columns


def _clock(ts: datetime | None) -> str:
    return ts.astimezone().strftime("%H:%M:%S") if ts else "?"


def _date(ts: datetime | None) -> str:
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S") if ts else "?"


def _in(ts: datetime | None) -> str:
    left = (ts - datetime.now(UTC)).total_seconds() if ts else 0.0
    return f"{max(0.0, left):.1f}s"


def current_step(st: StatusInfo) -> StepInfo | None:
    """The step the instance is on: the last one not done yet."""
    return next((s for s in reversed(st.steps) if s.state is not StepState.DONE), None)


def progress_line(st: StatusInfo) -> str:
    """Where an instance is, in one line: its status and what it is doing or waiting for
    (needs the steps: `status(steps=True)`)."""
    current = current_step(st)
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


def attempt_rows(attempts: list[Any]) -> list[tuple[str, ...]]:
    """One row per attempt (bindings/events.py's AttemptInfo): step, attempt, start, took,
    result (ok, error, retry time), emits."""
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


def _attempt_result(a: Any) -> str:
    if a.success is None:
        return "running"
    if a.success:
        return "ok"
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


def _html_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    if not rows:
        return ""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class InstanceDescription:
    """What `instance.describe()` returns: the status with its steps, shown for people.

    `print()` it (or let a terminal REPL show it) for a plain-text summary and step table; a
    notebook renders it as an HTML table. `.status` is the StatusInfo it shows."""

    def __init__(self, status: StatusInfo, attempts: list[Any] | None = None) -> None:
        self.status = status
        self.attempts = attempts or []  # bindings/events.py's AttemptInfo rows

    def _summary(self) -> list[tuple[str, str]]:
        st = self.status
        took = _took(st.started_at or st.created_at, st.ended_at)
        fields = [
            ("status", progress_line(st) if not st.status.finished else st.status.value),
            ("created", _date(st.created_at)),
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


def status_html(st: StatusInfo) -> str:
    """A status as a notebook shows it: the summary, and the compact step table when the
    status carries its steps."""
    return InstanceDescription(st)._repr_html_()


_WORKFLOW_HEADER = ("id", "status", "created", "took", "output / error")


def _instance_row(st: StatusInfo) -> tuple[str, ...]:
    outcome = f"{st.error.name}: {st.error.message}" if st.error else _short(st.output, 60)
    created = _date(st.created_at)
    took = _took(st.started_at or st.created_at, st.ended_at)
    return (st.id, st.status.value, created, took, outcome)


def workflow_html(
    name: str, class_name: str, counts: dict[str, int], recent: list[StatusInfo]
) -> str:
    """A workflow as a notebook shows it: how many instances are in each status, and the most
    recent ones."""
    esc = html.escape
    total = sum(counts.values())
    tally = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no instances"
    head = "".join(f"<th>{esc(h)}</th>" for h in _WORKFLOW_HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in _instance_row(st)) + "</tr>"
        for st in recent
    )
    shown = f"newest {len(recent)} of {total}" if total > len(recent) else f"{total}"
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" if recent else ""
    return (
        f"<div class='raydo-workflow'><p>workflow <code>{esc(name)}</code> (class "
        f"<code>{esc(class_name)}</code>): {esc(tally)}</p>"
        f"<p><small>instances: {esc(shown)}</small></p>{table}</div>"
    )


def unavailable_html(what: str, err: BaseException) -> str:
    """What a notebook shows for a handle whose status could not be read (raydo stopped, a
    node down): the handle, and why."""
    esc = html.escape
    return (
        f"<div class='raydo-unavailable'><p>{esc(what)}</p><p><small>status unavailable: "
        f"{esc(type(err).__name__)}: {esc(str(err))}</small></p></div>"
    )
