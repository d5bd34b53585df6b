"""HTTP create latency and creates/s through `raydo serve` (a tiny measurement, not a test).

Start a server first (e.g. `raydo serve --port 8787` in a project declaring an `approve` workflow
whose instances wait for an event), then: python benchmarks/http_create.py http://127.0.0.1:8787
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx


def main(url: str, workflow: str = "approve", n: int = 200, threads: int = 8) -> None:
    api = f"{url}/api/workflows/{workflow}/instances"
    with httpx.Client(timeout=60) as http:
        latencies = []
        for _ in range(n):
            started = time.perf_counter()
            http.post(api, json={"id": f"lat-{uuid.uuid4().hex[:12]}"}).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"sequential: n={n} mean {statistics.mean(latencies):.2f} ms, "
        f"p50 {statistics.median(latencies):.2f} ms, p99 {p99:.2f} ms"
    )

    def burst(count: int) -> None:
        with httpx.Client(timeout=60) as http:
            for _ in range(count):
                http.post(api, json={"id": f"tp-{uuid.uuid4().hex[:12]}"}).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(burst, [n // threads] * threads))
    took = time.perf_counter() - started
    print(f"concurrent: {threads} clients, {n} creates in {took:.2f} s = {n / took:.0f} creates/s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8787")
