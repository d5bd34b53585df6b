"""Dashboard and list API load times with many instances in storage (issue 9's "10,000" figure).

Makes a throw-away project (raydo.toml + a flows module) in a temp folder, runs N instances of a
one-step workflow to the end on an embedded Ray (one in ten errors, so the counts have two
statuses), starts the raydo server on a loopback port in this process, then times:
- the API: workflows with counts, the first page of instances, a page further on (cursor), a
  status-filtered page;
- the dashboard in headless chromium (Debian's, as the browser test uses): the workflows page until
  its counts show, the instance list until its first row shows.

    python benchmarks/dashboard_load.py [--instances 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx

FLOWS = """
import raydo


class Quick(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        n = await step.do("one", lambda: event.payload["n"])
        if n % 10 == 9:
            raise raydo.NonRetryableError("every tenth one fails")
        return n
"""
CONFIG = """
storage = "store"
[workflows.quick]
class = "loadflows:Quick"
concurrency = 4
"""
CHROMIUM = os.environ.get("RAYDO_CHROMIUM", "/usr/bin/chromium")


def fill(project: Any, n: int) -> float:
    """Run n instances to the end; returns the seconds it took."""
    wf = project.workflow("quick")
    started = time.perf_counter()
    for first in range(0, n, 100):
        batch = wf.create_batch(
            [{"id": f"q{k:06d}", "params": {"n": k}} for k in range(first, min(first + 100, n))]
        ).result()
        wf.wait_all(batch, timeout=600).result()
    return time.perf_counter() - started


def serve(project: Any) -> tuple[str, Any]:
    import uvicorn

    from raydo.server.app import create_app
    from raydo.server.run import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(project, None), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def timed(fn: Any, repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(times), "max_ms": max(times)}


def api_figures(url: str, repeats: int) -> dict[str, dict[str, float]]:
    api = f"{url}/api/workflows"
    with httpx.Client(timeout=60) as http:

        def get(path: str, **params: Any) -> Any:
            reply = http.get(api + path, params=params)
            reply.raise_for_status()
            return reply.json()

        page = get("/quick/instances", limit=25)
        cursor = (page.get("result_info") or {}).get("cursor")
        far = {"cursor": cursor} if cursor else {}
        return {
            "workflows with counts": timed(lambda: get(""), repeats),
            "instances, first page of 25": timed(
                lambda: get("/quick/instances", limit=25), repeats
            ),
            "instances, next page (cursor)": timed(
                lambda: get("/quick/instances", limit=25, **far), repeats
            ),
            "instances, status=errored": timed(
                lambda: get("/quick/instances", limit=25, status="errored"), repeats
            ),
        }


def browser_figures(url: str, repeats: int) -> dict[str, dict[str, float]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page()

        def home() -> None:
            tab.goto(url + "/")
            tab.wait_for_selector('[data-workflow="quick"] [data-count="complete"]')

        def listing() -> None:
            tab.goto(url + "/#/w/quick")
            tab.reload()
            tab.wait_for_selector("tbody tr[data-id]")

        figures = {
            "dashboard: workflows page with counts": timed(home, repeats),
            "dashboard: instance list, first rows": timed(listing, repeats),
        }
        browser.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)

    import raydo
    from raydo.bindings.config import load_project

    root = Path(tempfile.mkdtemp(prefix="raydo-dashload-"))
    (root / "loadflows.py").write_text(textwrap.dedent(FLOWS))
    (root / "raydo.toml").write_text(CONFIG)
    sys.path.insert(0, str(root))
    project = load_project(root / "raydo.toml")
    raydo.init(project.config.storage_path, address="local")
    try:
        took = fill(project, a.instances)
        print(f"{a.instances} instances run to the end in {took:.1f} s")
        url, server = serve(project)
        rows = api_figures(url, a.repeats)
        if Path(CHROMIUM).exists():
            rows |= browser_figures(url, a.repeats)
        else:
            print(f"no chromium at {CHROMIUM}: browser figures skipped")
        print(
            f"\n{'figure':48s} {'median':>9s} {'max':>9s}   (1-min load {os.getloadavg()[0]:.1f})"
        )
        for name, f in rows.items():
            print(f"{name:48s} {f['median_ms']:7.1f}ms {f['max_ms']:7.1f}ms")
        server.should_exit = True
    finally:
        raydo.shutdown(kill_actors=True)


if __name__ == "__main__":
    main()
