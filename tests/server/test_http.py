"""The HTTP API against a real uvicorn server on a loopback port, real Ray and real LMDB."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from servekit import Served, until

pytestmark = pytest.mark.ray

API = "/api/workflows"


def counts(s: Served, name: str) -> dict[str, int]:
    return httpx.get(f"{s.url}{API}/{name}").json()["result"]["instances"]


def test_lifecycle_through_the_api(served: Served) -> None:
    s = served
    made = httpx.post(
        f"{s.url}{API}/greet/instances", json={"id": "g-1", "params": {"name": "ana"}}
    )
    assert made.status_code == 201 and made.json()["result"]["id"] == "g-1"
    detail = until(lambda: _finished(s, "greet", "g-1"), "g-1 to finish")
    assert (detail["status"], detail["output"], detail["params"]) == (
        "complete",
        {"hello": "ana"},
        {"name": "ana"},
    )
    assert detail["success"] is True and detail["step_count"] == 2
    assert [(x["name"], x["type"], x["success"]) for x in detail["steps"]] == [
        ("greet", "do", True),
        ("nap", "sleep", True),
    ]
    step = httpx.get(f"{s.url}{API}/greet/instances/g-1/step", params={"name": "greet"})
    assert step.json()["result"]["output"] == "ana"
    assert counts(s, "greet")["complete"] == 1
    listed = httpx.get(f"{s.url}{API}").json()["result"]
    assert [w["name"] for w in listed] == ["approve", "greet", "pipeline"]
    assert httpx.delete(f"{s.url}{API}/greet/instances/g-1").status_code == 200
    assert httpx.get(f"{s.url}{API}/greet/instances/g-1").status_code == 404


def _finished(s: Served, name: str, iid: str) -> dict[str, Any] | None:
    detail = httpx.get(f"{s.url}{API}/{name}/instances/{iid}").json()["result"]
    return detail if detail["status"] in ("complete", "errored", "terminated") else None


def _status(s: Served, name: str, iid: str) -> str:
    return str(httpx.get(f"{s.url}{API}/{name}/instances/{iid}").json()["result"]["status"])


def test_status_actions_events_and_conflicts(served: Served) -> None:
    s = served
    base = f"{s.url}{API}/approve/instances"
    httpx.post(base, json={"id": "a-1"})
    until(lambda: _status(s, "approve", "a-1") == "waiting", "a-1 to wait")
    paused = httpx.patch(f"{base}/a-1/status", json={"action": "pause"})
    assert paused.json()["result"]["status"] == "paused"
    resumed = httpx.patch(f"{base}/a-1/status", json={"status": "resume"})  # Cloudflare's name
    assert resumed.status_code == 200
    sent = httpx.post(f"{base}/a-1/events/approved", json={"by": "http"})
    assert sent.status_code == 200
    detail = until(lambda: _finished(s, "approve", "a-1"), "a-1 to finish")
    assert detail["output"] == {"by": {"by": "http"}}

    dup = httpx.post(base, json={"id": "a-1"})
    assert (dup.status_code, dup.json()["code"]) == (409, "already_exists")
    again = httpx.patch(f"{base}/a-1/status", json={"action": "terminate"})
    assert (again.status_code, again.json()["code"]) == (409, "invalid_state")
    restarted = httpx.patch(
        f"{base}/a-1/status", json={"action": "restart", "from": {"name": "approval"}}
    )
    assert restarted.status_code == 200
    until(lambda: _status(s, "approve", "a-1") == "waiting", "a-1 to wait again")


def test_batch_create_list_pages_and_batch_delete(served: Served) -> None:
    s = served
    items = [{"id": f"b-{n}", "params": {"nap": 0.01}} for n in range(5)]
    made = httpx.post(f"{s.url}{API}/greet/instances/batch", json=items)
    assert made.status_code == 201 and len(made.json()["result"]) == 5
    again = httpx.post(
        f"{s.url}{API}/greet/instances/batch", json=[*items[:2], {"id": "b-9", "params": {}}]
    )
    # one entry per item: existing ids are not created again and name the existing instance
    assert [r["id"] for r in again.json()["result"]] == ["b-0", "b-1", "b-9"]
    until(lambda: counts(s, "greet")["complete"] == 6, "the batch to finish")
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 4, "direction": "asc"}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(f"{s.url}{API}/greet/instances", params=params).json()
        seen += [r["id"] for r in page["result"]]
        cursor = page["result_info"]["cursor"]
        if cursor is None:
            break
    assert seen == ["b-0", "b-1", "b-2", "b-3", "b-4", "b-9"]
    only = httpx.get(f"{s.url}{API}/greet/instances", params={"status": "errored"})
    assert only.json()["result"] == []
    old = httpx.get(f"{s.url}{API}/greet/instances", params={"date_end": "2000-01-01T00:00Z"})
    assert old.json()["result"] == []
    since = httpx.get(f"{s.url}{API}/greet/instances", params={"date_start": "2000-01-01"})
    assert len(since.json()["result"]) == 6
    bad = httpx.post(f"{s.url}{API}/greet/instances/batch/delete", json={"ids": ["b-0", "zz"]})
    assert bad.status_code == 404 and counts(s, "greet")["total"] == 6
    gone = httpx.post(f"{s.url}{API}/greet/instances/batch/delete", json={"ids": ["b-0", "b-1"]})
    assert gone.status_code == 200 and counts(s, "greet")["total"] == 4


BIG = "x" * (1 << 20)
HOSTILE: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/api/workflows/nope", {}, 404),
    ("GET", "/api/workflows/greet/instances?status=done", {}, 422),
    ("GET", "/api/workflows/greet/instances?limit=0", {}, 422),
    ("GET", "/api/workflows/greet/instances?limit=abc", {}, 422),
    ("GET", "/api/workflows/greet/instances?limit=1001", {}, 422),
    ("GET", "/api/workflows/greet/instances?cursor=%00%ff", {}, 422),
    ("GET", "/api/workflows/greet/instances?direction=up", {}, 422),
    ("GET", "/api/workflows/greet/instances?date_start=yesterday", {}, 422),
    ("POST", "/api/workflows/greet/instances", {"json": {"id": "bad id"}}, 422),
    ("POST", "/api/workflows/greet/instances", {"json": {"id": "x" * 101}}, 422),
    ("POST", "/api/workflows/greet/instances", {"json": {"id": 5}}, 422),
    ("POST", "/api/workflows/greet/instances", {"json": {"idd": "a"}}, 422),
    ("POST", "/api/workflows/greet/instances", {"json": [1, 2]}, 422),
    ("POST", "/api/workflows/greet/instances", {"json": {"params": BIG}}, 413),
    ("POST", "/api/workflows/greet/instances", {"content": b'{"params": NaN}', "j": 1}, 422),
    ("POST", "/api/workflows/greet/instances", {"content": b"[" * 50_000, "j": 1}, 422),
    ("POST", "/api/workflows/greet/instances", {"content": b"\xff\xfe", "j": 1}, 422),
    ("POST", "/api/workflows/greet/instances", {"content": b"{", "j": 1}, 422),
    ("POST", "/api/workflows/greet/instances", {"content": b'{"id":"f"}'}, 422),
    ("POST", "/api/workflows/nope/instances", {"json": {}}, 404),
    ("POST", "/api/workflows/greet/instances/batch", {"json": [{"id": "ok"}] * 101}, 422),
    ("POST", "/api/workflows/greet/instances/batch", {"json": [{"id": "ok"}, {"id": "b d"}]}, 422),
    ("POST", "/api/workflows/greet/instances/batch", {"json": {"id": "x"}}, 422),
    ("POST", "/api/workflows/greet/instances/batch/delete", {"json": {"ids": "s-1"}}, 422),
    ("POST", "/api/workflows/greet/instances/batch/delete", {"json": {"ids": ["../x"]}}, 422),
    ("GET", "/api/workflows/greet/instances/ghost", {}, 404),
    ("GET", "/api/workflows/greet/instances/bad%20id", {}, 422),
    ("GET", "/api/workflows/greet/instances/s-1/step?name=nope", {}, 404),
    ("GET", "/api/workflows/greet/instances/s-1/step", {}, 422),
    ("PATCH", "/api/workflows/greet/instances/s-1/status", {"json": {"action": "explode"}}, 422),
    ("PATCH", "/api/workflows/greet/instances/s-1/status", {"json": {}}, 422),
    (
        "PATCH",
        "/api/workflows/greet/instances/s-1/status",
        {"json": {"action": "restart", "from": {"name": "greet", "count": 0}}},
        422,
    ),
    (
        "PATCH",
        "/api/workflows/greet/instances/s-1/status",
        {"json": {"action": "restart", "from": {"name": "nope"}}},
        422,
    ),
    ("PATCH", "/api/workflows/greet/instances/ghost/status", {"json": {"action": "pause"}}, 404),
    ("POST", "/api/workflows/greet/instances/s-1/events/bad%20type", {"json": {}}, 422),
    ("POST", "/api/workflows/greet/instances/s-1/events/ok", {"content": b"{", "j": 1}, 422),
    ("POST", "/api/workflows/greet/instances/s-1/events/ok", {"content": b"a=b", "form": 1}, 422),
    ("POST", "/api/workflows/greet/instances/s-1/events/ok", {"json": BIG}, 413),
    ("POST", "/api/workflows/greet/instances/ghost/events/ok", {"json": 1}, 404),
    ("DELETE", "/api/workflows/greet/instances/ghost", {}, 404),
    ("DELETE", "/api/workflows/greet/instances", {}, 405),
    ("GET", "/api/nothing/here", {}, 404),
    ("POST", "/api/workflows/greet/instances", {"json": {}, "origin": "http://evil.example"}, 403),
    ("GET", "/api/workflows", {"host": "evil.example"}, 421),
]


@pytest.mark.parametrize(("method", "path", "how", "expected"), HOSTILE)
def test_hostile_requests_get_json_errors_and_change_nothing(
    served: Served, method: str, path: str, how: dict[str, Any], expected: int
) -> None:
    s = served
    base = f"{s.url}{API}/greet/instances"
    httpx.post(base, json={"id": "s-1", "params": {"nap": 60}})
    until(lambda: _status(s, "greet", "s-1") == "waiting", "s-1 to sleep")
    headers = {}
    if how.get("j"):
        headers["content-type"] = "application/json"
    if how.get("form"):
        headers["content-type"] = "application/x-www-form-urlencoded"
    if "origin" in how:
        headers["origin"] = how["origin"]
    if "host" in how:
        headers["host"] = how["host"]
    kwargs = {k: v for k, v in how.items() if k in ("json", "content")}
    reply = httpx.request(method, s.url + path, headers=headers, timeout=60, **kwargs)
    assert reply.status_code == expected, reply.text
    body = reply.json()
    assert set(body) == {"code", "message"} and body["message"]
    assert counts(s, "greet")["total"] == 1 and _status(s, "greet", "s-1") == "waiting"


def test_validation_message_names_field_and_rule(served: Served) -> None:
    reply = httpx.post(f"{served.url}{API}/greet/instances", json={"id": 5})
    assert reply.json() == {"code": "invalid_input", "message": reply.json()["message"]}
    assert reply.json()["message"].startswith("body.id: ")
    bad = httpx.get(f"{served.url}{API}/greet/instances", params={"limit": 0})
    assert bad.json()["message"].startswith("query.limit: ")


def test_odd_values_are_served_as_json(served: Served) -> None:
    made = httpx.post(
        f"{served.url}{API}/greet/instances",
        json={"id": "odd", "params": {"name": "é\u2028", "nap": 0.01, "big": 2**64 - 1}},
    )
    assert made.status_code == 201
    huge = httpx.post(f"{served.url}{API}/greet/instances", json={"params": {"n": 2**70}})
    assert huge.status_code == 422 and "params" in huge.json()["message"]
    detail = until(lambda: _finished(served, "greet", "odd"), "odd to finish")
    assert detail["params"]["big"] == 2**64 - 1 and detail["output"] == {"hello": "é\u2028"}


def test_token_guards_every_request(served: Served) -> None:
    url = served.start("s3cret")
    api = f"{url}{API}/greet/instances"
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic s3cret"}):
        assert httpx.post(api, json={"id": "t-1"}, headers=headers).status_code == 401
        assert httpx.get(f"{url}/openapi.json", headers=headers).status_code == 401
    assert counts(served, "greet")["total"] == 0
    ok = httpx.post(api, json={"id": "t-1"}, headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 201
    assert httpx.get(f"{url}/", headers={"host": "example.org"}).status_code == 200  # static


def test_openapi_schema(served: Served) -> None:
    schema = httpx.get(f"{served.url}/openapi.json").json()
    paths = schema["paths"]
    assert "/api/workflows/{name}/instances/{iid}/status" in paths
    assert "patch" in paths["/api/workflows/{name}/instances/{iid}/status"]
    assert "/api/workflows/{name}/instances/batch" in paths


def test_raydo_serve_command(served: Served, tmp_path: Path) -> None:
    """The real command: binds, advertises itself so the CLI joins it, refuses a public address
    without a token, and cleans up on SIGINT."""
    import ray

    root = served.project.config.root
    raydo_bin = str(Path(sys.executable).parent / "raydo")
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    env["RAY_AUTH_MODE"] = "token"
    public = subprocess.run(
        [raydo_bin, "serve", "--host", "0.0.0.0", "--port", "0"], cwd=root, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert public.returncode == 2 and "needs a token" in public.stderr
    proc = subprocess.Popen(
        [raydo_bin, "serve", "--port", "0"], cwd=root, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[2]
        made = httpx.post(f"{url}{API}/greet/instances", json={"id": "cmd-1"}, timeout=60)
        assert made.status_code == 201
        advertised = json.loads((root / "store" / "serve.json").read_text())
        assert advertised["url"] == url
        joined = {k: v for k, v in env.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
        listed = subprocess.run(
            [raydo_bin, "instances", "list", "greet", "--json"], cwd=root, env=joined,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert [i["id"] for i in json.loads(listed.stdout)["instances"]] == ["cmd-1"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert not (root / "store" / "serve.json").exists()
