"""Your first workflow: Cloudflare's get-started guide ("Build your first Workflow"), in Python.

    fetch files -> sleep "pause" -> process files (retried: fails twice, then succeeds)

Run it, and watch the instance go through its statuses:

    python examples/get_started.py            # storage: $RAYDO_STORAGE, else ./.raydo
    python examples/get_started.py /tmp/wf    # or a storage folder of your choice

It prints one line per change (queued, running, waiting on the sleep, waiting on a retry, ...)
with `inst.wait(progress=True)`, then the final status, the output and a table of the steps with
`inst.describe()`, the way `wrangler workflows instances describe` does.
"""

from __future__ import annotations

import sys
from typing import Any

import raydo
from raydo import StatusInfo, StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

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


def main(storage: str | None = None, params: dict[str, Any] | None = None) -> StatusInfo:
    ctx = raydo.init(storage)
    print(f"raydo storage: {ctx.storage}")
    wf = raydo.workflow(MyWorkflow, name="my-workflow", concurrency=2)

    inst = wf.create(params=params or {"name": "ana"}).result()
    print(f"created instance {inst.id} of workflow {wf.name!r}")
    st = inst.wait(timeout=120, progress=True).result()  # one line per change

    print()
    print(inst.describe().result())  # status, output and the step table
    raydo.shutdown()
    return st


if __name__ == "__main__":
    final = main(sys.argv[1] if len(sys.argv) > 1 else None)
    sys.exit(0 if final.status == "complete" else 1)
