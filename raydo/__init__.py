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

from raydo.bindings.client import init, shutdown
from raydo.bindings.pending import Pending
from raydo.bindings.workflow import InstancePage, Workflow, WorkflowInstance
from raydo.errors import *  # noqa: F403 - the whole error tree is public
from raydo.errors import __all__ as _error_names
from raydo.runtime.model import (
    ErrorInfo,
    InstanceStatus,
    ReceivedEvent,
    StatusInfo,
    StepContext,
    StepInfo,
    WorkflowEntrypoint,
    WorkflowEvent,
)
from raydo.runtime.step import WorkflowStep


def workflow(cls: type[WorkflowEntrypoint], name: str | None = None, **options: object) -> Workflow:
    """The binding for a workflow class: `raydo.workflow(Checkout, name="checkout")`.

    Options: concurrency (default 4), env (dict of bindings for `self.env`), hibernate_after.
    """
    return Workflow(cls, name, **options)


__version__ = "0.1.0"

__all__ = [
    "ErrorInfo",
    "InstancePage",
    "InstanceStatus",
    "Pending",
    "ReceivedEvent",
    "StatusInfo",
    "StepContext",
    "StepInfo",
    "Workflow",
    "WorkflowEntrypoint",
    "WorkflowEvent",
    "WorkflowInstance",
    "WorkflowStep",
    "init",
    "shutdown",
    "workflow",
    *_error_names,
]
