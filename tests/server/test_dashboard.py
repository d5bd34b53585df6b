"""The dashboard in a real headless chromium (Debian's, driven by playwright; never downloaded),
served by a real server on a loopback port, against real Ray and LMDB. Screenshots go to docs/img/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servekit import Served, until

import raydo

pytestmark = pytest.mark.ray

CHROMIUM = os.environ.get("RAYDO_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"
LONG = 120_000  # ms: generous limits for a loaded 2-core machine; waits end on a condition


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.set_default_timeout(LONG)
    yield tab
    context.close()
    assert errors == [], errors


def shot(tab: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    hide_toast = "Object.assign(document.getElementById('toast'), {className: '', style: ''})"
    tab.evaluate(hide_toast.replace("style: ''", "style: 'transition: none'"))
    tab.screenshot(path=str(SHOTS / name), full_page=True)


def test_create_and_watch_an_instance_complete(served: Served, page: Any) -> None:
    tab = page
    tab.goto(served.url + "/")
    tab.wait_for_selector('[data-workflow="pipeline"]')
    assert tab.locator(".wf-card").count() == 3
    tab.click('[data-workflow="pipeline"]')
    tab.wait_for_selector("#new-params")
    tab.fill("#new-id", "etl-1")
    tab.fill("#new-params", '{"pace": 0.8}')
    tab.click("#create")
    tab.wait_for_selector('.instance[data-status="running"], .instance[data-status="waiting"]')
    assert tab.url.endswith("#/w/pipeline/i/etl-1")
    # Live: the timeline grows while it runs, without reloading the page.
    tab.wait_for_selector('.tl-row[data-step="transform"]')
    assert tab.locator('.tl-row[data-step="call upstream"]').count() == 1
    # What the steps emit (ctx.emit) arrives through the event stream while they run.
    tab.wait_for_selector('.progress-row[data-step="transform"] .meter')
    shot(tab, "dashboard-instance-running.png")
    tab.wait_for_selector('.instance[data-status="complete"]')
    assert tab.locator(".tl-row[data-step]").count() == 5
    assert '"loaded": 1200' in tab.inner_text("pre.json >> nth=1")
    assert tab.locator(".bar.ok").count() == 4 and tab.locator(".bar.sleep").count() == 1
    # one bar per attempt of the retried step: the failed one, then the one that succeeded
    retried = '.tl-row[data-step="call upstream"] [data-attempt]'
    assert tab.locator(retried).count() == 2 and tab.locator(".bar.fail").count() == 1
    # the last emit comes through the event stream, which may trail the status the page shows
    tab.wait_for_selector('.progress-row[data-step="load"]:has-text("100")')
    assert '"percent":100' in tab.inner_text('.progress-row[data-step="load"]').replace(" ", "")
    shot(tab, "dashboard-instance.png")

    tab.goto(served.url + "/#/w/pipeline")
    tab.wait_for_selector('tr[data-id="etl-1"]')
    shot(tab, "dashboard-instances.png")
    tab.goto(served.url + "/")
    tab.wait_for_selector('[data-workflow="pipeline"] [data-count="complete"]')
    shot(tab, "dashboard-workflows.png")


def test_sensitive_progress_is_redacted_and_counts_read_well(
    served: Served, page: Any, tmp_path: Path
) -> None:
    tab = page
    wf = served.project.workflow("pipeline")
    inst = wf.create(id="secret-1", params={"pace": 0.05, "secret": True}).result()
    inst.wait(timeout=120).result()
    tab.goto(f"{served.url}/#/w/pipeline/i/secret-1")
    tab.wait_for_selector('.instance[data-status="complete"]')
    tab.wait_for_selector('.progress-row[data-step="load"]')
    assert "<redacted>" in tab.inner_text('.progress-row[data-step="extract"]')
    # the last emit comes through the event stream, which may trail the status the page shows
    tab.wait_for_selector('.progress-row[data-step="load"]:has-text("100")')
    assert '"percent":100' in tab.inner_text('.progress-row[data-step="load"]').replace(" ", "")
    tab.screenshot(path=str(tmp_path / "redacted.png"), full_page=True)
    tab.goto(f"{served.url}/#/w/pipeline")
    tab.wait_for_selector('tr[data-id="secret-1"]')
    assert "1 instance" in tab.inner_text("main") and "1 instances" not in tab.inner_text("main")
    tab.goto(served.url + "/")
    tab.wait_for_selector('[data-workflow="pipeline"] .wf-total')
    total = tab.inner_text('[data-workflow="pipeline"] .wf-total')
    assert total.startswith("1 instance ·"), total
    tab.screenshot(path=str(tmp_path / "workflows.png"), full_page=True)
    print(f"\nscreenshots: {tmp_path}")


def test_pause_resume_and_send_event_from_the_page(served: Served, page: Any) -> None:
    tab = page
    flows = __import__("srvflows")
    wf = raydo.workflow(flows.Approve, name="approve", concurrency=2)
    inst = wf.create(id="refund-1", params={"amount": 30}).result()
    wf.create(id="refund-2").result()
    until(lambda: inst.status().result().status == "waiting", "refund-1 to wait")

    tab.goto(f"{served.url}/#/w/approve/i/refund-1")
    tab.wait_for_selector('.instance[data-status="waiting"]')
    assert "waiting for “approved”" in tab.inner_text(".timeline")
    tab.click("#pause")
    tab.wait_for_selector('.instance[data-status="paused"]')
    assert inst.status().result().status == "paused"
    assert tab.is_enabled("#resume") and not tab.is_enabled("#pause")
    tab.click("#resume")
    tab.wait_for_selector('.instance[data-status="waiting"], .instance[data-status="running"]')
    assert inst.status().result().status in ("waiting", "running")
    tab.fill("#event-type", "approved")
    tab.fill("#event-payload", '{"by": "dashboard"}')
    tab.click("#send-event")
    tab.wait_for_selector('.instance[data-status="complete"]')
    assert inst.status().result().output == {"by": {"by": "dashboard"}}

    tab.goto(f"{served.url}/#/w/approve")
    tab.wait_for_selector('tr[data-id="refund-2"]')
    tab.select_option("#status-filter", "complete")
    tab.wait_for_function("document.querySelectorAll('tbody tr[data-id]').length === 1")
    assert tab.locator("tbody tr[data-id]").get_attribute("data-id") == "refund-1"
    tab.select_option("#status-filter", "")
    tab.wait_for_selector('tr[data-id="refund-2"]')
    tab.fill("#search", "fund-2")
    tab.wait_for_function("document.querySelectorAll('tbody tr[data-id]').length === 1")
    tab.fill("#search", "refund-2")
    tab.press("#search", "Enter")
    tab.wait_for_selector('.instance[data-status="waiting"]')
    assert tab.url.endswith("#/w/approve/i/refund-2")
    tab.click("#terminate")
    tab.wait_for_selector('.instance[data-status="terminated"]')
    assert wf.get("refund-2").result().status().result().status == "terminated"
