"""`raydo workflows delete`, `raydo instances terminate-all`, `raydo instances delete --file`
through the installed entry point, with hostile arguments: clear error, exit code, nothing done."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_cli import Cli, refused_in_process, until

import raydo

pytestmark = pytest.mark.ray


def statuses(wf: raydo.Workflow) -> dict[str, str]:
    return {st.id: st.status.value for st in wf.instances().result()}


def test_terminate_all_by_status_then_all(
    project: tuple[Cli, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, flows = project
    wf = raydo.workflow(flows.Approve, name="approve", concurrency=2)
    insts = [wf.create(id=f"a{n}").result() for n in range(3)]
    until(lambda: set(statuses(wf).values()) == {"waiting"}, "three instances waiting")
    insts[2].pause().result()
    before = statuses(wf)

    for status in ["complete", "bogus"]:  # a finished status cannot be terminated
        args = ["instances", "terminate-all", "approve", "--status", status, "--yes", "--json"]
        err = json.loads(refused_in_process(cli.root, monkeypatch, *args).stderr)
        assert err["error"]["code"] == "invalid_input"
    # no --yes and no terminal to ask on
    err = cli.json("instances", "terminate-all", "approve", code=2)
    assert err["error"]["code"] == "invalid_input"
    unknown = cli.json("instances", "terminate-all", "nope", "--yes", code=3)
    assert "nope" in unknown["error"]["message"]
    assert statuses(wf) == before  # nothing changed

    paused = cli.json("instances", "terminate-all", "approve", "--status", "paused", "--yes")
    assert paused["terminated"] == ["a2"]
    rest = cli.json("instances", "terminate-all", "approve", "-y")
    assert sorted(rest["terminated"]) == ["a0", "a1"]
    assert set(statuses(wf).values()) == {"terminated"}
    assert cli.json("instances", "terminate-all", "approve", "-y")["terminated"] == []


def test_delete_by_file_and_hostile_files(
    project: tuple[Cli, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, flows = project
    wf = raydo.workflow(flows.Greet, name="greet")
    made = wf.create_batch([{"id": f"g{n}", "params": {"name": "x"}} for n in range(4)]).result()
    wf.wait_all(made, timeout=120).result()
    lines = tmp_path / "ids.txt"
    lines.write_text("# two of them\ng0\n\ng1\n")
    as_json = tmp_path / "ids.json"
    as_json.write_text(json.dumps(["g2"]))
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("g3\nmissing\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("g3\nnot an id!\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00g3")

    cli("instances", "delete", "greet", "--file", str(unknown), code=3)
    for args in [
        ["--file", str(bad)],
        ["--file", str(empty)],
        ["--file", str(binary)],
        ["--file", str(tmp_path / "absent.txt")],
        ["g3", "--file", str(lines)],  # both
        [],  # neither
    ]:
        refused_in_process(cli.root, monkeypatch, "instances", "delete", "greet", *args)
    assert sorted(statuses(wf)) == ["g0", "g1", "g2", "g3"]  # nothing deleted

    assert cli.json("instances", "delete", "greet", "--file", str(lines))["deleted"] == ["g0", "g1"]
    assert cli.json("instances", "delete", "greet", "--file", str(as_json))["deleted"] == ["g2"]
    assert sorted(statuses(wf)) == ["g3"]


def test_workflows_delete_removes_every_instance(project: tuple[Cli, Any]) -> None:
    cli, flows = project
    greet = raydo.workflow(flows.Greet, name="greet")
    approve = raydo.workflow(flows.Approve, name="approve", concurrency=2)
    done = greet.create_batch([{"params": {"name": str(n)}} for n in range(3)]).result()
    greet.wait_all(done, timeout=120).result()
    running = approve.create(id="keep").result()
    until(lambda: running.status().result().status == "waiting", "the other workflow's instance")

    assert cli.json("workflows", "delete", "greet", code=2)["error"]["code"] == "invalid_input"
    assert cli.json("workflows", "delete", "nope", "--yes", code=3)["error"]["code"] == "not_found"
    assert len(statuses(greet)) == 3

    assert cli.json("workflows", "delete", "greet", "--yes") == {"workflow": "greet", "deleted": 3}
    assert statuses(greet) == {}
    assert statuses(approve) == {"keep": "waiting"}  # another workflow is untouched
    again = greet.create(id="fresh", params={"name": "again"}).result()
    assert again.wait(timeout=60).result().output == {"hello": "again"}
