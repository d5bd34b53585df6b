"""Your first workflow: Cloudflare's get-started guide ("Build your first Workflow"), in Python.

    fetch files -> sleep "pause" -> process files (retried: fails twice, then succeeds)

Run it, and watch the instance go through its statuses:

    python examples/get_started.py            # storage: $RAYDO_STORAGE, else ./.raydo
    python examples/get_started.py /tmp/wf    # or a storage folder of your choice

It prints one line per change (queued, running, waiting on the sleep, waiting on a retry, ...),
then the final status, the output and a table of the steps, the way
`wrangler workflows instances describe` does.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import raydo
from raydo import StatusInfo, StepContext, StepInfo, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

# What the "storage API" lists (names from Cloudflare's workflows-starter template).
FILES = [
    {"name": "doc_7392_rev3.pdf", "size": 48_213},
    {"name": "report_x29_final.pdf", "size": 1_204_775},
    {"name": "memo_2024_05_12.docx", "size": 18_004},
    {"name": "file_089_update.pdf", "size": 351_870},
    {"name": "proj_alpha_v2.pdf", "size": 92_117},
]


class MyWorkflow(WorkflowEntrypoint):
    """params: {"name": str, "pause": duration (default "2 seconds"), "fail_attempts": int}"""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        params = event.payload or {}

        # Step results are stored: after a crash or a retry later on, this is not fetched again.
        files = await step.do("fetch files", lambda: [dict(f) for f in FILES])

        # "20 seconds" in the guide; shortened by a param so the example runs in seconds.
        await step.sleep("pause", params.get("pause", "2 seconds"))

        fail_attempts = params.get("fail_attempts", 2)

        def process(ctx: StepContext) -> dict[str, Any]:
            # A flaky dependency: the first `fail_attempts` attempts fail, then it works.
            # ctx.attempt is durable (1, 2, 3, ...), so this is deterministic across replays.
            if ctx.attempt <= fail_attempts:
                raise ConnectionError("storage API unavailable")
            return {
                "name": params.get("name", "world"),
                "fileCount": len(files),
                "totalBytes": sum(f["size"] for f in files),
                "attempts": ctx.attempt,
            }

        # Linear backoff: retry n waits n * delay (1 s, 2 s, 3 s).
        return await step.do(
            "process files",
            process,
            retries={"limit": 3, "delay": "1 second", "backoff": "linear"},
        )


# -- watching an instance ------------------------------------------------------------------------


def _clock(ts: datetime | None) -> str:
    return ts.astimezone().strftime("%H:%M:%S") if ts else "?"


def _in(ts: datetime | None) -> str:
    seconds = (ts - datetime.now(UTC)).total_seconds() if ts else 0.0
    return f"{max(0.0, seconds):.1f}s"


def _current(st: StatusInfo) -> StepInfo | None:
    """The step the instance is on: the last one not done yet."""
    return next((s for s in reversed(st.steps) if s.state != "done"), None)


def describe(st: StatusInfo) -> str:
    """One line for where an instance is: its status and what it is doing or waiting for."""
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
    if current.state == "retrying" and st.status == "waiting" and current.error is not None:
        return (
            f"{status} retry {current.name!r} in {_in(current.until)}; attempt "
            f"{current.attempts} failed: {current.error.name}: {current.error.message}"
        )
    # Running: a retrying step is about to start its next attempt.
    attempt = current.attempts + (current.state == "retrying")
    return f"{status} step {current.name!r}, attempt {attempt}"


def _progress_key(st: StatusInfo) -> tuple[Any, ...]:
    current = _current(st)
    if current is None:
        return (st.status,)
    return (st.status, current.name, current.count, current.state, current.attempts)


def watch(inst: raydo.WorkflowInstance, timeout: float = 120, interval: float = 0.05) -> StatusInfo:
    """Poll the instance, print a line whenever its status or current step changes, and return
    the final status (with steps) once it is complete, errored or terminated."""
    started = time.monotonic()
    last: tuple[Any, ...] = ()
    while True:
        st = inst.status(steps=True).result()
        if _progress_key(st) != last:
            last = _progress_key(st)
            print(f"  [{time.monotonic() - started:5.1f}s] {describe(st)}", flush=True)
        if st.status.finished:
            return st
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"instance {inst.id} still {st.status} after {timeout}s")
        time.sleep(interval)


def _short(value: Any, width: int) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 3] + "..."


def _took(s: StepInfo) -> str:
    if s.started_at is None or s.ended_at is None:
        return "-"
    return f"{(s.ended_at - s.started_at).total_seconds():.2f}s"


def step_table(steps: list[StepInfo], output_width: int = 48) -> str:
    """The steps as a table: #, name, type, state, attempts, time taken, output (truncated)."""
    header = ("#", "step", "type", "state", "attempts", "took", "output")
    rows = [
        (
            str(i),
            s.name if s.count == 1 else f"{s.name} #{s.count}",
            s.type,
            s.state,
            str(s.attempts) if s.type == "do" else "-",
            _took(s),
            f"{s.error.name}: {s.error.message}"
            if s.error and s.state == "done"
            else _short(s.output, output_width),
        )
        for i, s in enumerate(steps, 1)
    ]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    right = {0, 4, 5}  # numbers are right-aligned

    def fmt(row: tuple[str, ...]) -> str:
        cells = [
            v.rjust(w) if c in right else v.ljust(w)
            for c, (v, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  " + "  ".join(cells).rstrip()

    rule = "  " + "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(r) for r in rows)])


def main(storage: str | None = None, params: dict[str, Any] | None = None) -> StatusInfo:
    ctx = raydo.init(storage)
    print(f"raydo storage: {ctx.storage}")
    wf = raydo.workflow(MyWorkflow, name="my-workflow", concurrency=2)

    inst = wf.create(params=params or {"name": "ana"}).result()
    print(f"created instance {inst.id} of workflow {wf.name!r}")
    st = watch(inst)

    took = (st.ended_at - st.created_at).total_seconds() if st.ended_at else 0.0
    print()
    print(f"final status: {st.status.value} in {took:.1f}s")
    if st.error is not None:
        print(f"error: {st.error.name}: {st.error.message}")
    else:
        print(f"output: {json.dumps(st.output)}")
    print()
    print(step_table(st.steps))
    raydo.shutdown()
    return st


if __name__ == "__main__":
    final = main(sys.argv[1] if len(sys.argv) > 1 else None)
    sys.exit(0 if final.status == "complete" else 1)
