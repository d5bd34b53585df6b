"""Workers that run activations in this process: the unit-test double of the Ray instance actors,
built from the same Activation, so the namespace logic is tested without Ray."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from raydo.runtime.clock import Clock
from raydo.runtime.engine import HIBERNATE_AFTER, Activation, Outcome
from raydo.runtime.errors import CorruptRecordError
from raydo.runtime.model import Env, WorkflowEntrypoint
from raydo.storage.codec import register_models
from raydo.storage.instances import InstanceStore


class InstanceRunner:
    """Runs one activation at a time for one workflow class; what an InstanceActor wraps."""

    def __init__(
        self,
        store: InstanceStore,
        workflow_cls: type[WorkflowEntrypoint],
        clock: Clock,
        env: Env | None = None,
        hibernate_after: float = HIBERNATE_AFTER,
    ) -> None:
        self.store, self.cls, self.clock, self.env = store, workflow_cls, clock, env
        register_models(getattr(workflow_cls.run, "__globals__", {}))
        self.hibernate_after = hibernate_after
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="raydo-step")
        self.current: Activation | None = None

    async def run(self, iid: str, lease: int) -> Outcome:
        try:
            record, steps, params = self.store.load(iid)
        except CorruptRecordError:  # the activation reports it as the instance's error
            record, steps, params = self.store.require(iid), None, None
        act = Activation(
            self.store,
            self.cls,
            record,
            lease,
            self.clock,
            self.env,
            self.executor,
            self.hibernate_after,
        )
        act.preload(steps, params)
        self.current = act
        try:
            outcome = await act.run()
        finally:
            self.current = None
        outcome.recycle = any(not stray.done() for stray in act.strays)
        return outcome

    def _matching(self, iid: str) -> Activation | None:
        act = self.current
        return act if act is not None and act.record.id == iid else None

    def pause(self, iid: str) -> None:
        if (act := self._matching(iid)) is not None:
            act.request_pause()

    def stop(self, iid: str) -> None:
        if (act := self._matching(iid)) is not None:
            act.stop()

    def event(self, iid: str, type_: str) -> None:
        if (act := self._matching(iid)) is not None:
            act.event_arrived(type_)


class LocalPool:
    """A fixed set of in-process runners handed out one activation at a time."""

    def __init__(self, runners: list[InstanceRunner]) -> None:
        self._idle: asyncio.Queue[InstanceRunner] = asyncio.Queue()
        for runner in runners:
            self._idle.put_nowait(runner)

    async def acquire(self) -> InstanceRunner:
        return await self._idle.get()

    def release(self, worker: InstanceRunner, broken: bool = False) -> None:
        self._idle.put_nowait(worker)
