"""Driver for test_cluster: `create` starts instances and exits at once; `collect` waits for them
from a new process. Both join the cluster given in RAY_ADDRESS."""

from __future__ import annotations

import json
import sys
from typing import Any

import raydo


class Nightly(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        first = await step.do("first", lambda: event.payload * 2)
        await step.sleep("nap", "3 seconds")
        return await step.do("second", lambda: first + 1)


def main() -> None:
    storage, mode = sys.argv[1], sys.argv[2]
    ctx = raydo.init(storage)
    assert not ctx.started_ray, "should have joined the running cluster"
    wf = raydo.workflow(Nightly, name="nightly", concurrency=2)
    if mode == "create":
        for n in range(3):
            wf.create(id=f"n{n}", params=n).result()
        print("CREATED", flush=True)
    else:
        out = {f"n{n}": wf.get(f"n{n}").result().wait(timeout=60).result().output for n in range(3)}
        print("RESULT " + json.dumps(out), flush=True)
    raydo.shutdown()  # joined, not started: the cluster and raydo's actors keep running


if __name__ == "__main__":
    main()
