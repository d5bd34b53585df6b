"""What the CLI prints: rich tables in a terminal, plain columns when piped, JSON with --json."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..bindings.display import rollback_text
from ..bindings.events import AttemptInfo
from ..runtime.model import InstanceStatus, StatusInfo, StepInfo

STATUS_STYLE = {
    "queued": "grey62",
    "running": "bold blue",
    "waiting": "cyan",
    "waitingForPause": "yellow",
    "paused": "yellow",
    "complete": "green",
    "errored": "bold red",
    "terminated": "magenta",
    "unknown": "grey62",
}
COUNT_COLUMNS = ["queued", "running", "waiting", "paused", "complete", "errored", "terminated"]

out = Console(soft_wrap=False)
if not out.is_terminal:
    # Piped: one long line per row (never wrapped at 80 columns), so tools like grep and cut work.
    out = Console(soft_wrap=False, width=10_000)
err = Console(stderr=True)


def print_json(value: Any) -> None:
    """One JSON document on stdout, nothing else (scripts parse it)."""
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def table(*columns: str, title: str | None = None) -> Table:
    """A table that is boxed in a terminal and plain, uncoloured columns when piped."""
    boxed = out.is_terminal
    t = Table(
        *columns,
        title=title,
        box=box.ROUNDED if boxed else None,
        header_style="bold" if boxed else "",
        title_justify="left",
        pad_edge=boxed,
    )
    return t


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def clock(value: datetime | None) -> str:
    """Time of day only, for step rows (the header shows the dates)."""
    return "-" if value is None else when(value)[11:]


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    secs = (end - start).total_seconds()
    if secs < 1:
        return f"{secs * 1000:.0f} ms"
    if secs < 120:
        return f"{secs:.2f} s"
    minutes, secs = divmod(secs, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h {int(minutes)}m {secs:.0f}s" if hours else f"{int(minutes)}m {secs:.0f}s"


def truncate(value: Any, limit: int) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def status_text(status: InstanceStatus | str) -> Text:
    value = str(status)
    return Text(value, style=STATUS_STYLE.get(value, ""))


def add_row(t: Table, *cells: str | Text) -> None:
    """A row whose strings are shown as they are: user data (names, outputs, error messages)
    must never be read as rich markup."""
    t.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def workflows_table(rows: list[dict[str, Any]]) -> Table:
    t = table("workflow", "class", "concurrency", "total", *COUNT_COLUMNS)
    for row in rows:
        counts = row["counts"]
        cells = [str(counts.get(c, 0)) for c in COUNT_COLUMNS]
        add_row(t, row["name"], row["class"], str(row["concurrency"]), str(row["total"]), *cells)
    return t


def instances_table(instances: list[StatusInfo]) -> Table:
    t = table("id", "status", "created", "started", "ended", "duration", "error")
    for st in instances:
        error = f"{st.error.name}: {st.error.message}" if st.error else ""
        add_row(
            t,
            st.id,
            status_text(st.status),
            when(st.created_at),
            when(st.started_at),
            when(st.ended_at),
            duration(st.started_at, st.ended_at),
            truncate_text(error, 60),
        )
    return t


def truncate_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def last_success(steps: list[StepInfo]) -> str:
    done = [s for s in steps if s.state == "done" and s.error is None]
    if not done:
        return "-"
    last = max(done, key=lambda s: s.ended_at or s.started_at or datetime.min)
    return step_label(last)


def step_label(s: StepInfo) -> str:
    return s.name if s.count == 1 else f"{s.name} #{s.count}"


def instance_header(st: StatusInfo, params: Any, limit: int) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    add_row(t, "Workflow", st.workflow)
    add_row(t, "Instance", st.id)
    add_row(t, "Status", status_text(st.status))
    add_row(t, "Queued", when(st.created_at))
    add_row(t, "Start", when(st.started_at))
    add_row(t, "End", when(st.ended_at))
    add_row(t, "Duration", duration(st.started_at, st.ended_at))
    add_row(t, "Last successful step", last_success(st.steps))
    if st.wake_at is not None and not st.status.finished:
        add_row(t, "Wakes at", when(st.wake_at))
    add_row(t, "Params", truncate(params, limit))
    add_row(t, "Error", f"{st.error.name}: {st.error.message}" if st.error else "-")
    if st.rollback is not None:
        add_row(t, "Rollback", rollback_text(st.rollback))
    if st.status is InstanceStatus.COMPLETE:
        add_row(t, "Output", truncate(st.output, limit))
    return t


def steps_table(steps: list[StepInfo], show_output: bool, limit: int) -> Table:
    columns = ["#", "step", "type", "start", "end", "duration", "success", "attempts"]
    t = table(*columns, *(["output / error"] if show_output else ["error"]), title="Steps")
    for index, s in enumerate(steps, 1):
        add_row(
            t,
            str(index),
            step_label(s),
            s.type,
            clock(s.started_at),
            clock(s.ended_at),
            duration(s.started_at, s.ended_at),
            step_success(s),
            str(s.attempts) if s.type == "do" else "-",
            step_detail(s, show_output, limit),
        )
    return t


def attempts_table(attempts: list[AttemptInfo]) -> Table:
    """Every attempt of every do-step, from the instance's history, with its error."""
    columns = ("step", "attempt", "start", "end", "duration", "success", "error / retry", "emitted")
    t = table(*columns, title="Attempts")
    for a in attempts:
        ok = Text("…", style="cyan") if a.success is None else step_mark(a.success)
        retry = f" (retry at {clock(a.retry_at)})" if a.retry_at is not None else ""
        error = f"{a.error.name}: {a.error.message}{retry}" if a.error is not None else ""
        label = a.step if a.count == 1 else f"{a.step} #{a.count}"
        when = (clock(a.started_at), clock(a.ended_at), duration(a.started_at, a.ended_at))
        add_row(t, label, str(a.attempt), *when, ok, error, str(a.emitted))
    return t


def step_mark(success: bool) -> Text:
    return Text("✓", style="green") if success else Text("✗", style="bold red")


def step_success(s: StepInfo) -> Text:
    if s.state != "done":
        return Text("…", style="cyan")
    if s.error is not None:
        return Text("✗", style="bold red")
    return Text("✓", style="green")


def step_detail(s: StepInfo, show_output: bool, limit: int) -> str:
    """What a step is doing or did: its wait, its retry time, its error, its output."""
    if s.state == "retrying":
        last = f"{s.error.name}: {s.error.message}; " if s.error else ""
        return truncate_text(f"{last}retries at {clock(s.until)}", limit)
    if s.state == "pending" and s.type == "sleep":
        return f"sleeps until {clock(s.until)}"
    if s.state == "pending" and s.type == "waitForEvent":
        return f"waits for event {s.event_type!r} until {clock(s.until)}"
    if s.state == "running":
        return f"running attempt {s.attempts}"
    if s.error is not None:
        return truncate_text(f"{s.error.name}: {s.error.message}", limit)
    return truncate(s.output, limit) if show_output and s.type != "sleep" else ""


def plural(n: int, noun: str) -> str:
    """ "1 instance", "2 instances": every count the CLI prints with its noun."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def progress_line(st: StatusInfo) -> str:
    """One line for live progress: status, the step in flight and its attempt."""
    current = next((s for s in reversed(st.steps) if s.state != "done"), None)
    text = f"{st.id}: {st.status.value}"
    if current is not None:
        text += f" · {current.name} ({step_detail(current, False, 80)})"
    elif st.steps:
        text += f" · {plural(len(st.steps), 'step')} done"
    return text
