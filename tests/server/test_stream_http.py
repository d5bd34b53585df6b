"""The event stream as server-sent events, on a real server on a loopback port (real Ray, LMDB)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from servekit import Served

pytestmark = pytest.mark.ray

BASE = "/api/workflows/greet/instances"


def _read(url: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every SSE message until the server ends the stream."""
    messages: list[dict[str, Any]] = []
    with httpx.stream("GET", url, headers=headers or {}, timeout=120) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        for line in reply.iter_lines():
            if line == "":
                if "event" in block:
                    messages.append(block)
                block = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                block[field] = value
    return messages


def test_sse_streams_the_history_and_resumes_from_last_event_id(served: Served) -> None:
    wf = served.project.workflow("greet")
    wf.create(id="s1", params={"name": "ana", "nap": 0.3}).result()
    whole = _read(f"{served.url}{BASE}/s1/stream")
    assert whole[-1]["event"] == "end"
    events = whole[:-1]
    kinds = [m["event"] for m in events]
    assert kinds[0] == "workflow_queued" and kinds[-1] == "workflow_completed"
    assert "sleep_started" in kinds and "step_completed" in kinds
    assert [int(m["id"]) for m in events] == list(range(len(events)))
    done = json.loads(events[kinds.index("step_completed")]["data"])
    assert done["step"] == "greet" and done["output"] == "'ana'"
    for k in (0, 3, len(events) - 2):
        rest = _read(f"{served.url}{BASE}/s1/stream", {"last-event-id": events[k]["id"]})
        assert rest[:-1] == events[k + 1 :]  # no gap, no repeat
    only = _read(f"{served.url}{BASE}/s1/stream?cursor=1&types=step_,workflow_completed")
    assert [m["event"] for m in only[:-1]] == [
        "step_started",
        "step_completed",
        "workflow_completed",
    ]
    details = httpx.get(f"{served.url}{BASE}/s1").json()["result"]
    assert [(a["step"], a["attempt"], a["success"]) for a in details["attempts"]] == [
        ("greet", 1, True)
    ]


def test_sse_redacts_what_a_sensitive_step_emits(served: Served) -> None:
    wf = served.project.workflow("pipeline")
    wf.create(id="x1", params={"pace": 0.05, "secret": True}).result()
    messages = _read(f"{served.url}/api/workflows/pipeline/instances/x1/stream")
    emitted = [json.loads(m["data"]) for m in messages if m["event"] == "step_emitted"]
    assert [e["data"] for e in emitted if e["step"] == "extract"] == ["<redacted>"] * 4
    assert [e["data"]["percent"] for e in emitted if e["step"] == "load"] == [25, 50, 75, 100]


def test_sse_refuses_bad_requests_and_needs_the_token(served: Served) -> None:
    wf = served.project.workflow("greet")
    wf.create(id="s2", params={"name": "bo"}).result()
    missing = httpx.get(f"{served.url}{BASE}/nope/stream")
    assert missing.status_code == 404 and missing.json()["code"]
    for query in ("cursor=-1", "cursor=abc", "types=nothing"):
        bad = httpx.get(f"{served.url}{BASE}/s2/stream?{query}")
        assert bad.status_code == 422, (query, bad.text)
    guarded = served.start("s3cret")
    assert httpx.get(f"{guarded}{BASE}/s2/stream").status_code == 401
    auth = {"authorization": "Bearer s3cret"}
    assert _read(f"{guarded}{BASE}/s2/stream", auth)[-1]["event"] == "end"


def test_sse_ends_when_the_followed_instance_is_deleted(served: Served) -> None:
    wf = served.project.workflow("approve")
    inst = wf.create(id="d1").result()  # waits for an event that never comes
    url = f"{served.url}/api/workflows/approve/instances/d1/stream"
    with httpx.stream("GET", url, timeout=120) as reply:
        lines = reply.iter_lines()
        for line in lines:
            if line == "event: wait_started":
                inst.delete().result()
                break
        rest = list(lines)
    assert "event: end" in rest and 'data: {"deleted":true}' in rest
