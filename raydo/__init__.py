"""raydo: durable workflows for Python on Ray, with Cloudflare Workflows semantics.

import raydo

class Hello(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        name = await step.do("greet", lambda: event.payload["name"])
        await step.sleep("pause", "1 second")
        return f"hello {name}"

wf = raydo.workflow(Hello)
print(wf.create(params={"name": "ana"}).result().wait().result().output)
"""

from collections.abc import Mapping
from typing import Any

from raydo.bindings.backup import NodeBackup, backup, restore
from raydo.bindings.batch import BatchItem
from raydo.bindings.client import init, shutdown
from raydo.bindings.display import InstanceDescription
from raydo.bindings.pending import Pending
from raydo.bindings.workflow import InstancePage, Workflow, WorkflowInstance
from raydo.errors import *  # noqa: F403 - the whole error tree is public
from raydo.errors import __all__ as _error_names
from raydo.runtime.compute import INFEASIBLE_AFTER
from raydo.runtime.model import (
    ErrorInfo,
    InstanceStatus,
    ReceivedEvent,
    RollbackInfo,
    StatusInfo,
    StepContext,
    StepInfo,
    WorkflowEntrypoint,
    WorkflowEvent,
)
from raydo.runtime.options import WorkflowOptions
from raydo.runtime.rollback import RollbackContext
from raydo.runtime.rules import RetryPolicy
from raydo.runtime.step import WorkflowStep


def workflow(
    cls: type[WorkflowEntrypoint],
    name: str | None = None,
    *,
    concurrency: int = 4,
    actors: int | None = None,
    env: Mapping[str, Any] | None = None,
    hibernate_after: float = 0.25,
    block_limit: float = 60.0,
    warm: int = 1,
    node_labels: Mapping[str, str] | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    resources: Mapping[str, Any] | None = None,
    infeasible_after: float = INFEASIBLE_AFTER,
    retention: Mapping[str, Any] | None = None,
    schedules: list[str] | None = None,
    storage: str | None = None,
    options: WorkflowOptions | None = None,
) -> Workflow:
    """The binding for a workflow class: `raydo.workflow(Checkout, name="checkout")`.

    The keyword options are WorkflowOptions' fields (see its docstrings): concurrency (instances
    running at once), actors (worker processes per node; default one per concurrent instance,
    fewer run several instances each and share their fsyncs), env (bindings for `self.env`),
    hibernate_after, block_limit, warm,
    node_labels (on a cluster: home instances only on nodes with these Ray labels),
    runtime_env and resources (of the instance actors), infeasible_after (how long a step's
    `resources=` may match no node before its attempt fails), retention (default
    `{"success": duration, "error": duration}` for finished instances), schedules (cron
    expressions: an instance per tick, `event.schedule` says which). Or pass
    a ready `options=WorkflowOptions(...)`. storage: the storage folder this binding uses
    (default: the one `raydo.init` chose).
    """
    return Workflow(
        cls,
        name,
        concurrency=concurrency,
        actors=actors,
        env=env,
        hibernate_after=hibernate_after,
        block_limit=block_limit,
        warm=warm,
        node_labels=node_labels,
        runtime_env=runtime_env,
        resources=resources,
        infeasible_after=infeasible_after,
        retention=retention,
        schedules=schedules,
        storage=storage,
        options=options,
    )


__version__ = "0.1.0"

__all__ = [
    "BatchItem",
    "ErrorInfo",
    "InstanceDescription",
    "InstancePage",
    "InstanceStatus",
    "NodeBackup",
    "Pending",
    "ReceivedEvent",
    "RetryPolicy",
    "RollbackContext",
    "RollbackInfo",
    "StatusInfo",
    "StepContext",
    "StepInfo",
    "Workflow",
    "WorkflowEntrypoint",
    "WorkflowEvent",
    "WorkflowInstance",
    "WorkflowOptions",
    "WorkflowStep",
    "backup",
    "init",
    "restore",
    "shutdown",
    "workflow",
    *_error_names,
]
