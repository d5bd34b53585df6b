"""Commands that act on many instances at once: `workflows delete`, `instances terminate-all`
(the ids-file form of `instances delete` reads its file with bindings/bulk.py too).

`raydo workflows delete NAME` deletes every instance of the workflow, with all its keys (record,
params, steps, events, output, timers), stopping running ones first. The declaration in the
config stays (remove it there to retire the workflow), and so do its cron schedules: a schedule
still declared goes on creating instances.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..bindings import bulk
from . import render
from .app import JsonOpt, NameArg, connected, instances_app, workflows_app
from .exits import handled, usage

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def confirm(question: str, yes: bool, as_json: bool) -> None:
    """Destructive commands ask first; without a terminal to ask on, they need --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise usage(f"{question} needs confirmation: pass --yes (stdin is not a terminal)", as_json)
    typer.confirm(question, abort=True)


@workflows_app.command("delete")
@handled
def workflows_delete(name: NameArg, yes: YesOpt = False, as_json: JsonOpt = False) -> None:
    """Delete every instance of a workflow and all their state (the declaration stays)."""
    with connected() as project:
        wf = project.workflow(name)  # an undeclared name fails before any question
        confirm(f"delete every instance of workflow {name}?", yes, as_json)
        deleted = bulk.delete_all(wf)
    if as_json:
        render.print_json({"workflow": name, "deleted": len(deleted)})
    else:
        render.out.print(
            f"deleted {render.plural(len(deleted), 'instance')} of workflow {name}", markup=False
        )


@instances_app.command("terminate-all")
@handled
def instances_terminate_all(
    name: NameArg,
    status: Annotated[
        str | None, typer.Option(help="Only instances in this (unfinished) status.")
    ] = None,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Terminate every unfinished instance of a workflow (or those in --status)."""
    bulk.check_terminable(status)
    with connected() as project:
        wf = project.workflow(name)
        what = f"{status} instances" if status else "every unfinished instance"
        confirm(f"terminate {what} of workflow {name}?", yes, as_json)
        done = bulk.terminate_all(wf, status)
    if as_json:
        render.print_json({"workflow": name, "terminated": done})
    else:
        render.out.print(
            f"terminated {render.plural(len(done), 'instance')} of workflow {name}", markup=False
        )
