"""The `raydo` command through its installed entry point, against real Ray and LMDB.

The test process plays the user's script (it builds its bindings with raydo.workflow); the CLI runs
as a subprocess joined to the same Ray (RAY_ADDRESS) and storage (the project config), so what one
creates the other sees and controls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import raydo
from raydo.bindings.config import load_project

pytestmark = pytest.mark.ray

RAYDO = str(Path(sys.executable).parent / "raydo")
FLOWS = """
import raydo


class Greet(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        name = await step.do("greet", lambda: event.payload["name"])
        await step.sleep("nap", 0.05)
        return {"hello": name}


class Approve(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        first = await step.do("prepare", lambda: 1)
        ev = await step.wait_for_event("approval", type="approved", timeout="1 hour")
        return {"by": ev.payload["by"], "first": first}


class Fails(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        def boom():
            raise raydo.NonRetryableError("no luck", name="Unlucky")
        return await step.do("boom", boom)
"""
CONFIG = """
storage = "store"
[workflows.greet]
class = "cliflows:Greet"
[workflows.approve]
class = "cliflows:Approve"
concurrency = 2
[workflows.fails]
class = "cliflows:Fails"
"""


class Cli:
    """Runs the installed `raydo` script in the project folder, joined to the session's Ray."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [RAYDO, *args], cwd=self.root, env=self.env, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr[-3000:])
        return done

    def json(self, *args: str, code: int = 0) -> Any:
        done = self(*args, "--json", code=code)
        # Results go to stdout; errors, as {"error": {code, message}}, to stderr.
        return json.loads(done.stdout if done.stdout.strip() else done.stderr.splitlines()[-1])


class InProcessCli(Cli):
    """The typer app run in this process (typer's CliRunner) on the fixture's storage and Ray:
    the same commands, exit codes and output, without a subprocess's start-up (import Ray, join
    it) per command. The tests of what crosses processes keep the installed script (`Cli`)."""

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        from typer.testing import CliRunner

        from raydo.bindings import client
        from raydo.cli.app import app

        context = client.current()
        assert context is not None, "the project fixture initializes raydo"
        with pytest.MonkeyPatch.context() as m:
            m.chdir(self.root)
            got = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "RAY_ADDRESS": None})
        raydo.init(context.storage)  # the command's shutdown ended this process's raydo context
        done = subprocess.CompletedProcess(list(args), got.exit_code, got.stdout, got.stderr)
        assert got.exit_code == code, (args, got.exit_code, got.stdout, got.stderr, got.exception)
        return done


@pytest.fixture
def project(ray_session: None, tmp_path: Path) -> Iterator[tuple[Cli, ModuleType]]:
    import ray

    (tmp_path / "cliflows.py").write_text(textwrap.dedent(FLOWS))
    (tmp_path / "raydo.toml").write_text(CONFIG)
    loaded = load_project(tmp_path / "raydo.toml")  # puts the folder on sys.path, as the CLI does
    raydo.init(loaded.config.storage_path)
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "RAY_AUTH_MODE": "token",
        "COLUMNS": "200",
    }
    yield Cli(tmp_path, env), sys.modules["cliflows"]
    raydo.shutdown(kill_actors=True)
    sys.modules.pop("cliflows", None)


def until(check: Any, what: str, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_script_instance_is_seen_and_controlled_by_the_cli(project: tuple[Cli, Any]) -> None:
    cli, flows = project
    wf = raydo.workflow(flows.Approve, name="approve", concurrency=2)
    inst = wf.create(id="s-1", params={"from": "script"}).result()
    until(lambda: inst.status().result().status == "waiting", "s-1 to wait for its event")

    listed = cli.json("instances", "list", "approve")
    assert [(i["id"], i["status"]) for i in listed["instances"]] == [("s-1", "waiting")]
    described = cli.json("instances", "describe", "approve", "latest")
    assert described["params"] == {"from": "script"}
    steps = [(s["name"], s["type"], s["state"]) for s in described["steps"]]
    assert steps == [("prepare", "do", "done"), ("approval", "waitForEvent", "pending")]
    assert described["steps"][1]["event_type"] == "approved"

    paused = cli.json("instances", "pause", "approve", "s-1")
    assert paused["status"] == "paused"
    assert inst.status().result().status == "paused"
    assert cli.json("instances", "resume", "approve", "s-1")["status"] in ("running", "waiting")
    cli(
        "instances",
        "send-event",
        "approve",
        "s-1",
        "--type",
        "approved",
        "--payload",
        '{"by": "cli"}',
    )
    assert inst.wait(timeout=60).result().output == {"by": "cli", "first": 1}


def test_cli_instance_is_seen_by_the_script(project: tuple[Cli, Any]) -> None:
    cli, flows = project
    done = cli.json("workflows", "trigger", "greet", '{"name": "ana"}', "--id", "c-1", "--wait")
    assert (done["status"], done["output"]) == ("complete", {"hello": "ana"})
    wf = raydo.workflow(flows.Greet, name="greet")
    st = wf.get("c-1").result().status(steps=True).result()
    assert st.status == "complete" and [s.name for s in st.steps] == ["greet", "nap"]

    created = cli.json("workflows", "trigger", "greet", '{"name": "bo"}')
    assert wf.get(created["id"]).result().wait(timeout=60).result().output == {"hello": "bo"}
    rows = {r["name"]: r for r in cli.json("workflows", "list")}
    assert rows["greet"]["counts"]["complete"] == 2 and rows["greet"]["total"] == 2
    assert rows["approve"]["total"] == 0 and rows["fails"]["class"] == "cliflows:Fails"
    described = cli.json("workflows", "describe", "greet")
    assert described["declared"]["class"] == "cliflows:Greet"
    assert set(described["latest"]) == {"c-1", created["id"]}


def test_human_output_describe_and_list(project: tuple[Cli, Any]) -> None:
    cli, _ = project
    cli = InProcessCli(cli.root, cli.env)  # in-process: see InProcessCli
    cli("workflows", "trigger", "greet", '{"name": "[b]cy[/b]"}', "--id", "h-1", "--wait")
    text = cli("instances", "describe", "greet", "h-1").stdout
    for expected in ("Status", "complete", "Last successful step", "nap", '"[b]cy[/b]"}'):
        assert expected in text  # user data is shown as is, never read as markup
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["1"], ["2"])]
    assert [r[1:3] for r in rows] == [["greet", "do"], ["nap", "sleep"]]
    no_output = cli("instances", "describe", "greet", "h-1", "--no-step-output").stdout
    assert '"[b]cy[/b]"' not in no_output.split("Steps")[1]
    listing = cli("instances", "list", "greet").stdout
    assert "h-1" in listing and "complete" in listing
    assert "greet" in cli("workflows", "list").stdout


def test_pages_filters_and_order(project: tuple[Cli, Any]) -> None:
    cli, flows = project
    cli = InProcessCli(cli.root, cli.env)  # in-process: see InProcessCli
    wf = raydo.workflow(flows.Fails, name="fails")
    for n in range(5):
        wf.create(id=f"p-{n}").result()
    wf.wait_all([f"p-{n}" for n in range(5)], timeout=120).result()
    first = cli.json("instances", "list", "fails", "--limit", "2")
    assert [i["id"] for i in first["instances"]] == ["p-4", "p-3"]
    second = cli.json("instances", "list", "fails", "--limit", "2", "--cursor", first["cursor"])
    assert [i["id"] for i in second["instances"]] == ["p-2", "p-1"]
    oldest = cli.json("instances", "list", "fails", "--reverse", "--limit", "1")
    assert [i["id"] for i in oldest["instances"]] == ["p-0"]
    assert len(cli.json("instances", "list", "fails", "--status", "errored")["instances"]) == 5
    assert cli.json("instances", "list", "fails", "--status", "complete")["instances"] == []
    assert cli.json("instances", "list", "fails", "--until", "2000-01-01")["instances"] == []
    since = cli.json("instances", "list", "fails", "--since", "2000-01-01T00:00:00Z")
    assert len(since["instances"]) == 5
    err = cli.json("workflows", "trigger", "fails", "--id", "p-9", "--wait", code=1)
    assert err["status"] == "errored" and err["error"] == {"name": "Unlucky", "message": "no luck"}
    # every attempt with its error, from the instance's history
    tries = cli.json("instances", "describe", "fails", "p-9")["attempts"]
    assert [(a["step"], a["attempt"], a["success"], a["error"]["name"]) for a in tries] == [
        ("boom", 1, False, "Unlucky")
    ]
    text = cli("instances", "describe", "fails", "p-9").stdout
    assert "Attempts" in text and "Unlucky: no luck" in text.split("Attempts")[1]


def test_terminate_restart_delete_and_exit_codes(project: tuple[Cli, Any]) -> None:
    cli, flows = project
    cli = InProcessCli(cli.root, cli.env)  # in-process: see InProcessCli
    wf = raydo.workflow(flows.Approve, name="approve", concurrency=2)
    inst = wf.create(id="t-1").result()
    until(lambda: inst.status().result().status == "waiting", "t-1 to wait")
    assert cli.json("instances", "terminate", "approve", "t-1")["status"] == "terminated"
    again = cli.json("instances", "terminate", "approve", "t-1", code=4)
    assert again["error"]["code"] == "invalid_state"
    cli("instances", "restart", "approve", "t-1", "--from-step", "approval")
    until(lambda: inst.status().result().status == "waiting", "t-1 to wait again")
    steps = inst.status(steps=True).result().steps
    assert [s.name for s in steps] == ["prepare", "approval"]
    assert (
        cli.json("instances", "describe", "approve", "nope", code=3)["error"]["code"] == "not_found"
    )
    dup = cli.json("workflows", "trigger", "approve", "--id", "t-1", code=5)
    assert dup["error"]["code"] == "already_exists"
    cli("instances", "delete", "approve", "t-1", "ghost", code=3)  # nothing deleted: ghost unknown
    assert inst.status().result().status == "waiting"
    assert cli.json("instances", "delete", "approve", "t-1") == {"deleted": ["t-1"]}
    cli("instances", "describe", "approve", "t-1", code=3)


def test_counts_are_printed_with_the_right_plural(project: tuple[Cli, Any]) -> None:
    cli, flows = project
    wf = raydo.workflow(flows.Approve, name="approve", concurrency=2)
    for iid in ("p-1", "p-2", "p-3"):
        wf.create(id=iid).result()
    one = cli("instances", "delete", "approve", "p-1").stdout.strip()
    assert one == "deleted 1 instance: p-1"
    two = cli("instances", "delete", "approve", "p-2", "p-3").stdout.strip()
    assert two == "deleted 2 instances: p-2, p-3"


# Refused while parsing, before the command touches storage or Ray: these run the typer app in
# this process (typer's CliRunner), with raydo's connection made to fail, which proves nothing
# was written more strictly than counting afterwards, at no subprocess's start-up cost.
REFUSED_BEFORE_CONNECTING = [
    ["workflows", "trigger", "greet", "{not json"],
    ["workflows", "trigger", "greet", "NaN"],
    ["workflows", "trigger", "greet", "[" * 100_000],
    ["workflows", "trigger", "greet", "{}", "--wait", "--timeout", "-1"],
    ["instances", "list", "greet", "--limit", "ten"],
    ["instances", "list", "greet", "--since", "yesterday"],
    ["instances", "describe", "greet", "latest", "--truncate-output-limit", "0"],
    ["instances", "send-event", "greet", "x", "--type", "bad type"],
    ["instances", "send-event", "greet", "x", "--type", "ok", "--payload", "{"],
    ["instances", "restart", "greet", "x", "--count", "2"],
    ["instances", "restart", "greet", "x", "--from-step", "a", "--count", "0"],
    ["instances", "restart", "greet", "x", "--from-step", "\x01"],
    ["instances", "frobnicate", "greet"],
    ["workflows", "trigger"],
]
# Refused by the bindings once connected: through the installed entry point, against storage.
REFUSED_BY_THE_BINDINGS = [
    ["workflows", "trigger", "greet", "{}", "--id", "bad id"],
    ["workflows", "trigger", "greet", "{}", "--id", "x" * 101],
    ["instances", "list", "greet", "--status", "done"],
    ["instances", "list", "greet", "--limit", "0"],
    ["instances", "list", "greet", "--cursor", "garbage"],
    ["instances", "pause", "greet", "../etc"],
]


def refused_in_process(root: Path, mp: pytest.MonkeyPatch, *args: str, code: int = 2) -> Any:
    """Run the typer app in this process (typer's CliRunner) in project folder `root`, with
    raydo's connection made to fail: the command must refuse `args` with exit `code` before it
    touches storage or Ray, so nothing can have been written, and no subprocess starts."""
    from typer.testing import CliRunner

    from raydo.bindings import client
    from raydo.cli.app import app

    def never(*_: Any, **__: Any) -> None:
        raise AssertionError(f"{args[:3]} connected to raydo before refusing its arguments")

    with mp.context() as m:
        m.chdir(root)
        m.setattr(client, "init", never)
        m.setattr(sys, "path", list(sys.path))  # a config the command loads adds to it
        done = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert done.exit_code == code, (args, done.exit_code, done.output, done.exception)
    assert done.stdout == "" and done.stderr.strip(), args
    return done


@pytest.mark.parametrize("args", REFUSED_BEFORE_CONNECTING)
def test_hostile_arguments_are_refused_before_connecting(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "raydo.toml").write_text(CONFIG)
    (tmp_path / "cliflows.py").write_text(textwrap.dedent(FLOWS))
    refused_in_process(tmp_path, monkeypatch, *args)
    sys.modules.pop("cliflows", None)
    assert not (tmp_path / "store").exists()  # the storage folder was never even made


def test_hostile_arguments_exit_2_and_write_nothing(project: tuple[Cli, Any]) -> None:
    cli, flows = project
    for args in REFUSED_BY_THE_BINDINGS:
        done = cli(*args, code=2)
        assert done.stdout == "" and done.stderr.strip(), args
    counts = raydo.workflow(flows.Greet, name="greet").counts().result()
    assert counts["queued"] == 0 and sum(counts.values()) == 0


def test_unknown_workflow_and_bad_config(project: tuple[Cli, Any], tmp_path: Path) -> None:
    cli, _ = project
    err = cli.json("instances", "list", "nosuch", code=3)
    assert "'nosuch' is not declared" in err["error"]["message"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[workflows.greet]\nclass = 'cliflows:Greet'\nconcurrency = -1\n")
    msg = cli.json("--config", str(bad), "workflows", "list", code=2)["error"]["message"]
    assert str(bad) in msg and "workflows.greet.concurrency" in msg


def test_embedded_default_starts_its_own_ray(project: tuple[Cli, Any], tmp_path: Path) -> None:
    """No RAY_ADDRESS and no server: the command starts a local Ray of its own on the storage."""
    cli, flows = project
    other = tmp_path / "solo"
    other.mkdir()
    (other / "raydo.toml").write_text(CONFIG)
    (other / "cliflows.py").write_text(textwrap.dedent(FLOWS))
    env = {k: v for k, v in cli.env.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    solo = Cli(tmp_path, env)
    done = solo.json(
        "--config", str(other / "raydo.toml"), "--address", "local",
        "workflows", "trigger", "greet", '{"name": "solo"}', "--id", "e-1", "--wait",
    )  # fmt: skip
    assert done["output"] == {"hello": "solo"}
    # That Ray is gone with the command; a script on the same storage sees what it left.
    raydo.shutdown(kill_actors=True)
    raydo.init(other / "store")
    st = raydo.workflow(flows.Greet, name="greet").get("e-1").result().status().result()
    assert (st.status, st.output) == ("complete", {"hello": "solo"})
