"""DELETE /api/workflows/{name} and POST .../instances/batch/terminate on a real server, with
hostile requests first: each gets its status and {code, message}, and nothing changes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from servekit import Served, until

pytestmark = pytest.mark.ray

API = "/api/workflows"


def statuses(s: Served, name: str) -> dict[str, str]:
    rows = httpx.get(f"{s.url}{API}/{name}/instances", params={"limit": 1000}, timeout=60)
    return {r["id"]: r["status"] for r in rows.json()["result"]}


def create(s: Served, name: str, iid: str, params: Any = None) -> None:
    made = httpx.post(f"{s.url}{API}/{name}/instances", json={"id": iid, "params": params or {}})
    assert made.status_code == 201, made.text


def test_terminate_all_and_delete_workflow(served: Served) -> None:
    s = served
    for n in range(3):
        create(s, "approve", f"a{n}")
    create(s, "greet", "g0", {"name": "x"})
    until(lambda: set(statuses(s, "approve").values()) == {"waiting"}, "approve to wait")
    until(lambda: statuses(s, "greet") == {"g0": "complete"}, "g0 to complete")
    paused = httpx.patch(f"{s.url}{API}/approve/instances/a2/status", json={"action": "pause"})
    assert paused.status_code == 200
    before = statuses(s, "approve")

    terminate = f"{s.url}{API}/approve/instances/batch/terminate"
    for body, code in [
        ({"status": "complete"}, 422),
        ({"status": "nonsense"}, 422),
        ({"status": 5}, 422),
        ({"status": "paused", "extra": 1}, 422),
        ([1, 2], 422),
    ]:
        r = httpx.post(terminate, json=body, timeout=60)
        assert r.status_code == code, (body, r.text)
        assert set(r.json()) == {"code", "message"}
    bad_json = httpx.post(terminate, content=b"{nope", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422
    assert httpx.post(f"{s.url}{API}/nope/instances/batch/terminate", json={}).status_code == 404
    assert httpx.delete(f"{s.url}{API}/nope", timeout=60).status_code == 404
    assert statuses(s, "approve") == before

    r = httpx.post(terminate, json={"status": "paused"}, timeout=60)
    assert r.status_code == 200 and r.json()["result"]["terminated"] == ["a2"]
    r = httpx.post(terminate, timeout=60)  # no body: every unfinished instance
    assert sorted(r.json()["result"]["terminated"]) == ["a0", "a1"]
    assert set(statuses(s, "approve").values()) == {"terminated"}

    gone = httpx.delete(f"{s.url}{API}/approve", timeout=60)
    assert gone.status_code == 200 and gone.json()["result"] == {
        "workflow": "approve",
        "deleted": 3,
    }
    assert statuses(s, "approve") == {}
    assert statuses(s, "greet") == {"g0": "complete"}  # another workflow is untouched
    create(s, "approve", "a0")  # the ids are free again


def test_create_with_retention_expires_and_bad_retention_is_422(served: Served) -> None:
    s = served
    url = f"{s.url}{API}/greet/instances"
    for body in [
        {"id": "r0", "retention": {"success": "forever"}},
        {"id": "r0", "retention": {"sucess": "1 day"}},
        {"id": "r0", "retention": "7 days"},
    ]:
        r = httpx.post(url, json=body, timeout=60)
        assert r.status_code == 422 and "retention" in r.json()["message"], r.text
    mixed = [{"id": "b0", "retention": {"success": 1}}, {"id": "b1"}]
    assert httpx.post(f"{url}/batch", json=mixed, timeout=60).status_code == 422
    assert statuses(s, "greet") == {}  # nothing created

    short = {"success": "0.5 seconds"}
    made = httpx.post(url, json={"id": "r0", "params": {"name": "x"}, "retention": short})
    assert made.status_code == 201
    batch = [{"id": f"b{n}", "params": {"name": "y"}, "retention": short} for n in range(2)]
    assert httpx.post(f"{url}/batch", json=batch, timeout=60).status_code == 201
    until(lambda: httpx.get(f"{url}/r0").status_code == 404, "r0 to expire")
    until(lambda: statuses(s, "greet") == {}, "the batch to expire")
    again = httpx.post(url, json={"id": "r0", "params": {"name": "z"}})
    assert again.status_code == 201  # the id is free again
