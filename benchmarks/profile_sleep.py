"""Where a hibernate/wake cycle spends its time, without Ray: the namespace, the timer service and
in-process runners on a real LMDB storage, running (step, sleep, step) instances under cProfile.

    python benchmarks/profile_sleep.py --instances 2000 --sleep 3 --top 25

Prints instances/s (n / (end to end - sleep)) and the top entries by own time, so the cost of the
namespace / timer / storage paths per instance is visible apart from Ray's call overhead (which
benchmarks/scale.py's sleepflow phase includes).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def run(n: int, sleep: float, workers: int) -> float:
    from raydo import WorkflowEntrypoint
    from raydo.runtime.clock import SystemClock
    from raydo.runtime.local import InstanceRunner, LocalPool
    from raydo.runtime.namespace import Namespace
    from raydo.runtime.timers import TimerService
    from raydo.storage.codec import encode
    from raydo.storage.instances import InstanceStore, TimerIndex, check_schema
    from raydo.storage.kv import open_lmdb
    from raydo.storage.records import InstanceStatus

    class StepSleepStep(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            async def one() -> int:
                return 1

            await step.do("before", one)
            await step.sleep("nap", sleep)
            return await step.do("after", one)

    kv = open_lmdb(tempfile.mkdtemp(prefix="raydo-profile-"))
    check_schema(kv)
    store, clock = InstanceStore(kv, "wf"), SystemClock()
    runners = [InstanceRunner(store, StepSleepStep, clock) for _ in range(workers)]
    ns: Namespace | None = None

    def fire(workflow: str, iids: list[str]) -> None:
        assert ns is not None
        ns.wake(iids)

    service = TimerService(clock, TimerIndex(kv), fire)
    ns = Namespace(store, LocalPool(runners), clock, lambda i, d: service.schedule("wf", i, d), 4)
    loop_task = asyncio.ensure_future(service.run())
    t0 = time.perf_counter()
    params = encode({})
    for start in range(0, n, 100):
        ns.create([(f"i{k}", params) for k in range(start, min(n, start + 100))], False)
        await asyncio.sleep(0)
    while store.counts()[InstanceStatus.COMPLETE.value] < n:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    loop_task.cancel()
    return n / max(1e-9, elapsed - sleep)


def main() -> None:
    sys.path.insert(0, ROOT)
    p = argparse.ArgumentParser()
    p.add_argument("--instances", type=int, default=2000)
    p.add_argument("--sleep", type=float, default=3.0)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    prof = cProfile.Profile()
    prof.enable()
    rate = asyncio.run(run(a.instances, a.sleep, a.workers))
    prof.disable()
    print(f"{a.instances} instances, sleep {a.sleep} s: {rate:.0f} instances/s (in-process)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)


if __name__ == "__main__":
    main()
