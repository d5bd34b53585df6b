"""`raydo`: the command line, in the shape of `wrangler workflows`.

It reads the project config (raydo.toml or [tool.raydo]), imports the declared classes, builds the
same bindings a script builds, and joins the same storage and Ray: RAY_ADDRESS / --address, else
the Ray of a `raydo serve` running on this storage, else a local Ray started for the command.
Exit codes: see cli/exits.py (0 ok, 1 failed, 2 usage, 3 not found, 4 invalid state, 5 exists).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.live import Live

from ..bindings import bulk, client
from ..bindings.config import Project, load_project
from ..bindings.events import attempts_of
from ..bindings.workflow import Workflow, WorkflowInstance
from ..errors import InstanceNotFoundError
from ..runtime.listing import parse_time
from ..runtime.model import StatusInfo
from ..runtime.rules import check_event_type, check_step_name
from . import render
from .exits import Exit, fail, handled, usage
from .serving import advertised_address

app = typer.Typer(
    name="raydo",
    help="Operate raydo workflows: list, describe, trigger and control instances.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
workflows_app = typer.Typer(help="Declared workflows.", no_args_is_help=True)
instances_app = typer.Typer(help="Instances of a workflow.", no_args_is_help=True)
app.add_typer(workflows_app, name="workflows")
app.add_typer(instances_app, name="instances")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
NameArg = Annotated[str, typer.Argument(help="Workflow name, as declared in the config.")]
IdArg = Annotated[str, typer.Argument(help="Instance id.")]
POLL = 0.25


@dataclass
class Settings:
    config: Path | None = None
    address: str | None = None


settings = Settings()


@app.callback()
def main_options(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="raydo.toml or pyproject.toml to use.")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", envvar="RAY_ADDRESS", help="Ray cluster to join."),
    ] = None,
) -> None:
    settings.config, settings.address = config, address


@contextmanager
def connected() -> Iterator[Project]:
    """The project, with raydo started on its storage; stopped again when the command ends."""
    project = load_project(settings.config)
    storage = project.config.storage_path
    address = settings.address
    served = None if address else advertised_address(storage)
    if served is not None:
        address = served[0]
        if served[1] and "RAY_AUTH_MODE" not in os.environ:
            client.enable_token_auth()
    client.init(storage, address=address)
    try:
        yield project
    finally:
        client.shutdown()


def parse_json(text: str | None, what: str, as_json: bool) -> Any:
    """Strict JSON (no NaN or Infinity, which JSON does not have)."""
    if text is None:
        return None

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise usage(f"{what} {text[:200]!r} is not valid JSON ({exc})", as_json) from None


def check_timeout(timeout: float | None, as_json: bool) -> None:
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise usage(f"--timeout {timeout} must be a positive number of seconds", as_json)


def dump(st: BaseModel) -> dict[str, Any]:
    return st.model_dump(mode="json")


# -- workflows -------------------------------------------------------------------------------


@workflows_app.command("list")
@handled
def workflows_list(as_json: JsonOpt = False) -> None:
    """Every declared workflow with its instance counts per status."""
    with connected() as project:
        rows = [_workflow_row(project, name) for name in project.names]
    if as_json:
        render.print_json(rows)
    else:
        render.out.print(render.workflows_table(rows))


def _workflow_row(project: Project, name: str) -> dict[str, Any]:
    counts = project.workflow(name).counts().result()
    declared = project.config.workflows[name]
    return {
        "name": name,
        "class": declared.class_,
        "concurrency": declared.concurrency,
        "total": sum(counts.values()),
        "counts": counts,
    }


@workflows_app.command("describe")
@handled
def workflows_describe(name: NameArg, as_json: JsonOpt = False) -> None:
    """One workflow: its declaration and instance counts."""
    with connected() as project:
        row = _workflow_row(project, name)
        declared = project.config.workflows[name].model_dump(mode="json", by_alias=True)
        row.update(declared=declared, config=str(project.config.file))
        row["latest"] = _latest_ids(project.workflow(name))
    if as_json:
        render.print_json(row)
        return
    render.out.print(render.workflows_table([row]))
    render.out.print(f"declared in {row['config']}: {json.dumps(declared)}", markup=False)
    render.out.print(f"latest instances: {', '.join(row['latest']) or '-'}", markup=False)


def _latest_ids(wf: Workflow) -> list[str]:
    return [st.id for st in wf.list_instances(limit=5).result().instances]


@workflows_app.command("trigger")
@handled
def workflows_trigger(
    name: NameArg,
    params: Annotated[str | None, typer.Argument(help="Params as JSON.")] = None,
    id: Annotated[str | None, typer.Option("--id", help="Instance id (default a uuid4).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it ends.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds --wait waits at most.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an instance. With --wait, follow it and exit 1 unless it completes."""
    value = parse_json(params, "PARAMS_JSON", as_json)
    check_timeout(timeout, as_json)
    with connected() as project:
        inst = project.workflow(name).create(id=id, params=value).result()
        if wait:
            _follow(inst, timeout, as_json)
            return
        if as_json:
            render.print_json({"id": inst.id, "workflow": name})
        else:
            render.out.print(f"created instance {inst.id} of workflow {name}", markup=False)
            _warn_if_embedded()


def _warn_if_embedded() -> None:
    if client.context().started_ray:
        render.err.print(
            "note: no Ray was running for this storage, so raydo started one for this command "
            "only; the instance goes on when raydo next runs on this storage (raydo serve, a "
            "script, or --wait). Use RAY_ADDRESS to work against a running cluster."
        )


# -- instances -------------------------------------------------------------------------------


@instances_app.command("list")
@handled
def instances_list(
    name: NameArg,
    status: Annotated[str | None, typer.Option(help="Only instances in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1..1000).")] = 50,
    reverse: Annotated[bool, typer.Option(help="Oldest first (default newest first).")] = False,
    cursor: Annotated[str | None, typer.Option(help="Cursor of the next page.")] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Created at or before (ISO 8601).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Instances of a workflow, newest first, one page at a time."""
    dates = {
        "created_after": parse_time(since, "--since"),
        "created_before": parse_time(until, "--until"),
    }
    with connected() as project:
        wf = project.workflow(name)
        page = wf.list_instances(
            status=status, limit=limit, cursor=cursor, reverse=reverse, **dates
        )
        result = page.result()
    if as_json:
        render.print_json(result.model_dump(mode="json"))
        return
    render.out.print(render.instances_table(result.instances))
    if result.cursor:
        render.out.print(f"more: --cursor {result.cursor}", markup=False)


@instances_app.command("describe")
@handled
def instances_describe(
    name: NameArg,
    id: Annotated[str, typer.Argument(help="Instance id, or 'latest'.")] = "latest",
    step_output: Annotated[bool, typer.Option(help="Show each step's output.")] = True,
    truncate_output_limit: Annotated[
        int, typer.Option(help="Truncate outputs to this many characters.")
    ] = 5000,
    as_json: JsonOpt = False,
) -> None:
    """Status, times, error and output of an instance, then its steps."""
    if truncate_output_limit < 1:
        raise usage(f"--truncate-output-limit {truncate_output_limit} must be >= 1", as_json)
    with connected() as project:
        inst = _instance(project.workflow(name), id)
        st = inst.status(steps=True).result()
        params = inst.params().result()
        tries = attempts_of(inst.history(filter=["attempt_", "step_emitted"]).result())
    if as_json:
        render.print_json({**dump(st), "params": params, "attempts": [dump(a) for a in tries]})
        return
    render.out.print(render.instance_header(st, params, truncate_output_limit))
    if st.steps:
        render.out.print(render.steps_table(st.steps, step_output, truncate_output_limit))
    if tries:
        render.out.print(render.attempts_table(tries))


def _instance(wf: Workflow, id: str) -> WorkflowInstance:
    if id == "latest":
        newest = wf.list_instances(limit=1).result().instances
        if not newest:
            raise InstanceNotFoundError(f"workflow {wf.name!r} has no instances", id=id)
        id = newest[0].id
    return wf.get(id).result()


def _control(name: str, id: str, verb: str, as_json: bool, **kwargs: Any) -> None:
    with connected() as project:
        inst = _instance(project.workflow(name), id)
        getattr(inst, verb.replace("-", "_"))(**kwargs).result()
        st = inst.status().result()
    if as_json:
        render.print_json({"id": inst.id, "action": verb, "status": st.status.value})
    else:
        render.out.print(f"{verb}: {inst.id} is now", render.status_text(st.status), markup=False)


@instances_app.command("pause")
@handled
def instances_pause(name: NameArg, id: IdArg, as_json: JsonOpt = False) -> None:
    """Pause after the running step ends; timers freeze."""
    _control(name, id, "pause", as_json)


@instances_app.command("resume")
@handled
def instances_resume(name: NameArg, id: IdArg, as_json: JsonOpt = False) -> None:
    """Resume a paused instance (remaining sleep time is kept)."""
    _control(name, id, "resume", as_json)


@instances_app.command("terminate")
@handled
def instances_terminate(
    name: NameArg,
    id: IdArg,
    rollback: Annotated[
        bool,
        typer.Option("--rollback", help="First run the rollback handlers of its finished steps."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop an instance for good (with --rollback, after undoing its finished steps)."""
    _control(name, id, "terminate", as_json, rollback=rollback)


@instances_app.command("restart")
@handled
def instances_restart(
    name: NameArg,
    id: IdArg,
    from_step: Annotated[str | None, typer.Option(help="Keep steps before this one.")] = None,
    count: Annotated[int, typer.Option(help="Which run of --from-step (1 = first).")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Run again from scratch, or from a step (keeping the results before it)."""
    if from_step is None and count != 1:
        raise usage("--count needs --from-step", as_json)
    if from_step is not None:
        check_step_name(from_step)
        if count < 1:
            raise usage(f"--count {count} must be >= 1", as_json)
    step = None if from_step is None else (from_step, count)
    _control(name, id, "restart", as_json, from_step=step)


@instances_app.command("send-event")
@handled
def instances_send_event(
    name: NameArg,
    id: IdArg,
    type: Annotated[str, typer.Option("--type", help="Event type.")],
    payload: Annotated[str | None, typer.Option(help="Payload as JSON.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deliver an event to step.wait_for_event (buffered if nothing waits yet)."""
    value = parse_json(payload, "--payload", as_json)
    check_event_type(type)
    _control(name, id, "send-event", as_json, type=type, payload=value)


@instances_app.command("delete")
@handled
def instances_delete(
    name: NameArg,
    ids: Annotated[list[str] | None, typer.Argument(help="Instance ids.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Ids from a file: one a line, or a JSON array.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete instances and all their state (stops them if they run)."""
    if bool(ids) == (file is not None):
        raise usage("give instance ids or --file FILE (one of the two)", as_json)
    chosen = bulk.read_ids_file(file) if file is not None else list(ids or [])
    with connected() as project:
        wf = project.workflow(name)
        handles = [wf.get(i).result() for i in chosen]  # every id checked before any delete
        for inst in handles:
            inst.delete().result()
    if as_json:
        render.print_json({"deleted": chosen})
    else:
        render.out.print(
            f"deleted {render.plural(len(chosen), 'instance')}: {', '.join(chosen)}", markup=False
        )


@instances_app.command("wait")
@handled
def instances_wait(
    name: NameArg,
    id: IdArg,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait at most.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow an instance until it ends; exit 1 unless it completes."""
    check_timeout(timeout, as_json)
    with connected() as project:
        _follow(_instance(project.workflow(name), id), timeout, as_json)


def _follow(inst: WorkflowInstance, timeout: float | None, as_json: bool) -> None:
    """Poll with live progress (a redrawn line in a terminal, one line per change when piped)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    st = _poll(inst, deadline, as_json)
    if as_json:
        render.print_json(dump(st))
    else:
        render.out.print(render.instance_header(st, inst.params().result(), 500))
    if st.status.value != "complete":
        raise typer.Exit(int(Exit.FAILED))


def _poll(inst: WorkflowInstance, deadline: float | None, as_json: bool) -> StatusInfo:
    live = render.out.is_terminal and not as_json
    shown = ""
    with Live(console=render.out, transient=True) if live else _nothing() as display:
        while True:
            st = inst.status(steps=True).result()
            line = render.progress_line(st)
            if line != shown and not as_json:
                shown = line
                if display is not None:
                    display.update(line)
                else:
                    render.out.print(line, highlight=False, markup=False)
            if st.status.finished:
                return st
            if deadline is not None and time.monotonic() > deadline:
                raise fail(
                    f"instance {inst.id} is still {st.status.value}",
                    Exit.FAILED,
                    "timeout",
                    as_json,
                )
            time.sleep(POLL)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


@app.command("serve")
@handled
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (off loopback needs a token).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8787,
    token: Annotated[
        str | None, typer.Option(envvar="RAYDO_TOKEN", help="Bearer token the API requires.")
    ] = None,
) -> None:
    """Run the HTTP API and the dashboard for the declared workflows (extra: raydo server)."""
    try:
        from ..server.run import ServeError, run_server
    except ImportError as exc:
        raise usage(
            f"raydo serve needs its extra ({exc.name} is missing): pip install 'raydo[server]'",
            False,
        ) from None
    try:
        run_server(settings.config, settings.address, host, port, token)
    except ServeError as exc:
        raise usage(str(exc), False) from None
    except OSError as exc:
        raise fail(f"cannot serve on {host}:{port}: {exc}", Exit.FAILED, "failed", False) from None


from . import ops  # noqa: E402, F401  (its commands register on the apps above)


def main() -> None:
    app()


# Commands kept in their own modules register on `app` when imported.
from . import backups as _backups  # noqa: E402, F401
