"""Driver for test_recovery: `start` creates instances and idles until killed; `resume` starts
raydo again on the same storage and waits for every instance. Steps log each attempt to a sqlite
ledger outside raydo, so re-executions are visible."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from typing import Any

import raydo

STORAGE, LEDGER, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
N = 6


def log_attempt(iid: str, step: str, attempt: int) -> None:
    con = sqlite3.connect(LEDGER, timeout=30)
    con.execute("insert into ledger values (?, ?, ?, ?)", (iid, step, attempt, MODE))
    con.commit()
    con.close()


class Job(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        total = 0
        for i in range(4):

            def work(ctx: Any, i: int = i) -> int:
                log_attempt(event.instance_id, ctx.step.name, ctx.attempt)
                time.sleep(0.4)
                return i

            total += await step.do(f"s{i}", work, retries={"limit": 3, "delay": 0})
        await step.sleep("nap", "1 second")
        ev = await step.wait_for_event("go", type="go", timeout="5 minutes")
        return {"total": total, "event": ev.payload}


def main() -> None:
    raydo.init(STORAGE, num_cpus=2)
    wf = raydo.workflow(Job, name="job", concurrency=3)
    if MODE == "start":
        con = sqlite3.connect(LEDGER)
        con.execute("create table if not exists ledger (iid, step, attempt, phase)")
        con.commit()
        wf.create_batch([{"id": f"j{n}"} for n in range(N)]).result()
        for n in range(N):
            wf.get(f"j{n}").result().send_event(type="go", payload=n).result()
        print("READY", flush=True)
        time.sleep(600)
    else:
        out = {}
        for n in range(N):
            st = wf.get(f"j{n}").result().wait(timeout=120).result()
            out[st.id] = [st.status.value, st.output]
        print("RESULT " + json.dumps(out), flush=True)
        raydo.shutdown()


if __name__ == "__main__":
    main()
