"""InstanceActor: the process an instance runs in while it runs. A shell around InstanceRunner."""

from __future__ import annotations

import os
from typing import Any

from raydo.runtime.clock import SystemClock
from raydo.runtime.engine import Outcome
from raydo.runtime.local import InstanceRunner
from raydo.runtime.model import Env, WorkflowEntrypoint
from raydo.storage.instances import InstanceStore
from raydo.storage.kv import open_lmdb


class InstanceActor:
    def __init__(
        self,
        storage: str,
        workflow: str,
        workflow_cls: type[WorkflowEntrypoint],
        env: dict[str, Any],
        hibernate_after: float,
    ) -> None:
        store = InstanceStore(open_lmdb(storage), workflow)
        self.runner = InstanceRunner(
            store, workflow_cls, SystemClock(), Env(dict(env)), hibernate_after
        )

    async def run(self, iid: str, lease: int) -> Outcome:
        return await self.runner.run(iid, lease)

    async def pause(self, iid: str) -> None:
        self.runner.pause(iid)

    async def stop(self, iid: str) -> None:
        self.runner.stop(iid)

    async def event(self, iid: str, type_: str) -> None:
        self.runner.event(iid, type_)

    async def ping(self) -> int:
        return os.getpid()
