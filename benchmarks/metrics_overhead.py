"""What metrics add to a step. MeteredStore watches the two step-record writes of an attempt
(running, then its outcome); this times that watching alone (the write itself stubbed out), and,
for scale, an attempt's two writes to LMDB without sync, with and without the watching. No Ray.

    python benchmarks/metrics_overhead.py
"""

from __future__ import annotations

import tempfile
import time

from raydo.runtime.clock import SystemClock
from raydo.runtime.metrics import MeteredStore, Tally
from raydo.storage.instances import InstanceStore, check_schema
from raydo.storage.kv import MemoryKV, open_lmdb
from raydo.storage.records import StepKind, StepRecord, StepState

N = 20_000


def attempts(store: InstanceStore, lease: int) -> float:
    """Best of 3 runs: microseconds per attempt (two step writes)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for n in range(N):
            step = StepRecord(StepKind.DO, seq=n, state=StepState.RUNNING)
            store.save_step("i", lease, ("s", n), step, False)
            step.state = StepState.DONE
            store.save_step("i", lease, ("s", n), step, False)
        best = min(best, (time.perf_counter() - start) / N)
    return best * 1e6


def watching_alone(metered: bool = True) -> float:
    """With `metered` False: the same loop through InstanceStore (the baseline to subtract)."""
    kv = MemoryKV()
    store = (
        MeteredStore(kv, "w", clock=SystemClock(), tally=Tally())
        if metered
        else InstanceStore(kv, "w")
    )
    original = InstanceStore.save_steps
    InstanceStore.save_steps = lambda *a: None  # type: ignore[method-assign,assignment]
    try:
        return attempts(store, 0)
    finally:
        InstanceStore.save_steps = original  # type: ignore[method-assign]


def on_lmdb(metered: bool) -> float:
    kv = open_lmdb(tempfile.mkdtemp())
    check_schema(kv)
    store = (
        MeteredStore(kv, "w", clock=SystemClock(), tally=Tally())
        if metered
        else InstanceStore(kv, "w")
    )
    store.create([("i", b"\xc0")], 0.0, skip_existing=False)
    return attempts(store, store.acquire(["i"], 0.0)["i"])


def main() -> None:
    base, watched = watching_alone(False), watching_alone(True)
    print(f"watching alone: {watched - base:.2f} us per attempt ({watched:.2f} - {base:.2f})")
    plain, metered = on_lmdb(False), on_lmdb(True)
    print(f"LMDB no sync, two writes: plain {plain:.1f} us, metered {metered:.1f} us per attempt")


if __name__ == "__main__":
    main()
