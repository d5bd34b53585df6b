"""Chunk processor: work through a large listing one chunk per instance.

Cloudflare's "It's just code" example processes one page of an R2 listing per run and, when the
listing was truncated, starts over for the next page. Here each instance handles one chunk:

    list files (one page from the cursor) -> process file: <key> (one step per file)
    -> continue (if the page was truncated: create the next instance, with the cursor moved on)

Keeping each instance small keeps its step history small and lets finished chunks be inspected
on their own. The workflow reaches itself through `self.env.SELF`, a binding to its own workflow.

Creating the next instance happens inside a step, and the next id is derived from the job and the
cursor, so the chain is exactly-once: if "continue" is retried or replayed after creating the
instance, `create` raises InstanceExistsError and the step just returns the same id.

(Cloudflare's example calls `instance.restart()` on itself instead and keeps the cursor in a
bucket; `await (await self.env.SELF.get(event.instance_id)).restart()` works here too.)

    python examples/chunk_processor.py [STORAGE_DIR]
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import uuid
from functools import partial
from typing import Any

import raydo
from raydo import InstanceExistsError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

NAME = "chunk-processor"


# -- the outside world (fakes) -------------------------------------------------------------------


def list_files(prefix: str, total: int, cursor: int, limit: int) -> dict[str, Any]:
    """One page of a bucket listing, like R2's list(): keys, truncated, and the next cursor."""
    end = min(cursor + limit, total)
    keys = [f"{prefix}part-{i:04d}.csv" for i in range(cursor, end)]
    return {"keys": keys, "truncated": end < total, "cursor": end}


def process_file(key: str) -> dict[str, Any]:
    """Stand-in for real work on one file: a deterministic row count."""
    rows = int(hashlib.sha256(key.encode()).hexdigest()[:4], 16) % 1000
    return {"key": key, "rows": rows}


# -- the workflow --------------------------------------------------------------------------------


class ChunkProcessor(WorkflowEntrypoint):
    """params: {"job": str, "prefix": str, "total": int, "chunk_size": int, "cursor": int}"""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        p = event.payload
        page = await step.do(
            "list files", lambda: list_files(p["prefix"], p["total"], p["cursor"], p["chunk_size"])
        )

        rows = 0
        for key in page["keys"]:
            # A step function takes no argument (or the step context): bind the key with partial.
            done = await step.do(f"process file: {key}", partial(process_file, key))
            rows += done["rows"]

        async def carry_on() -> str | None:
            if not page["truncated"]:
                return None
            next_id = chunk_id(p["job"], page["cursor"])
            # If an earlier attempt of this step already created it, there is nothing more to do.
            with contextlib.suppress(InstanceExistsError):
                await self.env.SELF.create(id=next_id, params={**p, "cursor": page["cursor"]})
            return next_id

        next_id = await step.do("continue", carry_on)
        return {"files": len(page["keys"]), "rows": rows, "next": next_id}


def chunk_id(job: str, cursor: int) -> str:
    return f"{job}-from-{cursor}"


def bind(concurrency: int = 2) -> raydo.Workflow:
    """The chunk-processor binding, with a binding to itself in its env as SELF.

    A binding is an address (workflow name + storage), not a connection, so the inner one reaches
    the same workflow; it is only used from inside running instances, when the workflow is up.
    """
    return raydo.workflow(
        ChunkProcessor,
        name=NAME,
        concurrency=concurrency,
        env={"SELF": raydo.workflow(ChunkProcessor, name=NAME)},
    )


def run_job(
    wf: raydo.Workflow, total: int, chunk_size: int, job: str | None = None
) -> list[raydo.StatusInfo]:
    """Start a job and follow its chain of instances to the end; returns their final statuses."""
    job = job or f"job-{uuid.uuid4().hex[:6]}"
    params = {
        "job": job,
        "prefix": "exports/2025/",
        "total": total,
        "chunk_size": chunk_size,
        "cursor": 0,
    }
    inst = wf.create(id=chunk_id(job, 0), params=params).result()
    chain = []
    while True:
        st = inst.wait(timeout=60).result()
        chain.append(st)
        print(f"{st.id}: {st.status} {st.output if st.status == 'complete' else st.error}")
        if st.status != "complete" or st.output["next"] is None:
            return chain
        inst = wf.get(st.output["next"]).result()


def main(storage: str | None = None) -> list[raydo.StatusInfo]:
    raydo.init(storage)
    chain = run_job(bind(), total=10, chunk_size=4)
    files = sum(st.output["files"] for st in chain if st.output)
    rows = sum(st.output["rows"] for st in chain if st.output)
    print(f"final status: {chain[-1].status}; {len(chain)} instances, {files} files, {rows} rows")
    raydo.shutdown()
    return chain


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
