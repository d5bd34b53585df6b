"""Emits per second reaching a live subscriber: one step emits N small records as fast as it can;
a subscriber (another process: this driver, through the namespace actor's long-poll) counts them
as they arrive. Real Ray and LMDB.

    .venv/bin/python benchmarks/stream_emit.py [N] [storage folder]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from typing import Any

import raydo


class Chatty(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def talk(ctx: Any) -> int:
            for k in range(event.payload["n"]):
                ctx.emit({"token": k})
                if k % 100 == 0:
                    await asyncio.sleep(0)  # an agent awaits its model between tokens
            return event.payload["n"]

        return await step.do("talk", talk)


async def measure(n: int) -> None:
    wf = raydo.workflow(Chatty, name="chatty")
    inst = await wf.create(params={"n": n})
    first = last = None
    got = 0
    async for _ in inst.subscribe(filter=["step_emitted"]):
        last = time.perf_counter()
        first = first or last
        got += 1
    assert got == n, (got, n)
    assert first is not None and last is not None
    span = last - first
    print(f"{n} emits reached the subscriber in {span:.3f} s: {n / span:,.0f} emits/s")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    storage = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="raydo-emit-")
    raydo.init(storage)
    try:
        asyncio.run(measure(n))
    finally:
        raydo.shutdown(kill_actors=True)


if __name__ == "__main__":
    main()
