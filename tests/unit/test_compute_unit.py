"""`step.do(..., resources=...)` in the engine, without Ray: an in-memory store, a fake clock and
a fake ComputeExecutor standing in for actors/compute.py. (Real Ray: tests/ray/test_compute.py;
a real GPU node: tests/cluster/test_compute_cluster.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from harness import Harness

from raydo.errors import InvalidInputError
from raydo.runtime.clock import FakeClock
from raydo.runtime.compute import AttemptKey, ComputeRequest, compute_request
from raydo.runtime.local import InstanceRunner
from raydo.runtime.model import WorkflowEntrypoint


class FakeCompute:
    """An in-process owner of placed attempts, remembering what it was asked. `hang` makes
    attempts wait until cancelled; `gate`, until it is set. An attempt that ends while its
    instance hibernated on it calls `wake` (the owner keeps its outcome: the replay rejoins)."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], ComputeRequest]] = []
        self.cancelled = 0
        self.hang = False
        self.gate: asyncio.Event | None = None
        self.clock = FakeClock()
        self.running: dict[AttemptKey, tuple[float, asyncio.Task[Any]]] = {}
        self.detached: dict[AttemptKey, int] = {}
        self.wake: Callable[[str], Any] = lambda iid: None

    async def start(
        self, key: AttemptKey, fn: Callable[..., Any], args: tuple[Any, ...], req: ComputeRequest
    ) -> float:
        if key not in self.running:
            self.calls.append((args, req))
            task = asyncio.ensure_future(self._run(key, fn, args))
            self.running[key] = (self.clock.monotonic(), task)
        self.detached.pop(key, None)
        return self.clock.monotonic() - self.running[key][0]

    async def _run(self, key: AttemptKey, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if self.hang:
            await asyncio.Event().wait()
        if self.gate is not None:
            await self.gate.wait()
        try:
            return fn(*args)
        finally:
            if key in self.detached:
                asyncio.get_running_loop().call_soon(self.wake, key.iid)

    async def outcome(self, key: AttemptKey) -> Any:
        return await asyncio.shield(self.running[key][1])

    async def knows(self, key: AttemptKey) -> bool:
        return key in self.running

    def detach(self, key: AttemptKey, lease: int) -> None:
        self.detached[key] = lease
        if self.running[key][1].done():
            self.wake(key.iid)

    def drop(self, key: AttemptKey) -> None:
        _, task = self.running.pop(key, (0.0, None))
        if task is not None and not task.done():
            task.cancel()
            self.cancelled += 1


COMPUTE = FakeCompute()


class ComputeRunner(InstanceRunner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compute = COMPUTE


@pytest.fixture(autouse=True)
def fresh_compute() -> None:
    COMPUTE.__init__()  # type: ignore[misc]


async def _started(cls: type[WorkflowEntrypoint]) -> Harness:
    """Instance "i" created, its first placed attempt started."""
    h = _harness(cls)
    h.create("i")
    await h.until(lambda: len(COMPUTE.calls) == 1)
    return h


def _harness(cls: type[WorkflowEntrypoint]) -> Harness:
    h = Harness(cls, runner=ComputeRunner)
    COMPUTE.clock, COMPUTE.wake = h.clock, h.ns.wake_now
    return h


class Placed(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        plain = await step.do("plain", lambda: "at home")
        gpu = await step.do("gpu", lambda: "away", resources={"num_gpus": 1})

        @step.do("ctx", resources={"num_cpus": 2}, retries={"limit": 1, "delay": "1 minute"})
        def with_ctx(ctx: Any) -> int:
            if ctx.attempt == 1:
                raise ConnectionError("lost the node")
            return int(ctx.attempt)

        return [plain, gpu, await with_ctx()]


@pytest.mark.asyncio
async def test_only_resources_steps_go_to_the_executor_and_retries_apply() -> None:
    h = _harness(Placed)
    h.create("i")
    await h.settle()
    assert h.status("i") == "waiting"  # the first attempt failed: a one-minute retry delay
    assert [req for _, req in COMPUTE.calls] == [
        ComputeRequest(num_gpus=1.0),
        ComputeRequest(num_cpus=2.0),
    ]
    assert COMPUTE.calls[0][0] == ()  # a step taking nothing gets nothing
    assert COMPUTE.calls[1][0][0].attempt == 1  # a step taking ctx gets it
    await h.advance(61)
    assert h.status("i") == "complete" and h.output("i") == ["at home", "away", 2]
    assert len(COMPUTE.calls) == 3  # replays answered from storage: no executor call


class Hangs(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        request = {"num_cpus": 1}
        await step.do("hang", lambda: None, resources=request, timeout=30, retries={"limit": 0})


@pytest.mark.asyncio
async def test_a_timeout_cancels_the_remote_attempt() -> None:
    COMPUTE.hang = True
    h = _harness(Hangs)
    h.create("i")
    await h.idle()
    await h.advance(31)
    assert h.status("i") == "errored" and COMPUTE.cancelled == 1
    assert (h.error("i") or {}).get("name") == "TimeoutError"


@pytest.mark.asyncio
async def test_terminate_cancels_the_remote_attempt() -> None:
    COMPUTE.hang = True
    h = await _started(Hangs)
    h.ns.terminate("i")
    await h.until(lambda: COMPUTE.cancelled == 1)
    assert h.status("i") == "terminated"


class Long(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        request = {"num_gpus": 1, "hibernate_after": "10 seconds"}
        trained = await step.do("train", lambda: "model", resources=request, timeout="1 hour")
        return await step.do("ship", lambda: f"shipped {trained}")


@pytest.mark.asyncio
async def test_a_long_attempt_lets_the_instance_hibernate_and_rejoins_it() -> None:
    COMPUTE.gate = asyncio.Event()
    h = await _started(Long)
    await h.advance(5)
    assert h.status("i") == "running" and h.ns.stats()["active"] == 1  # not long yet
    await h.advance(6)
    await h.until(lambda: h.status("i") == "waiting")
    since = h.store.steps("i")[("train", 1)].started_at
    assert h.ns.stats()["active"] == 0 and list(COMPUTE.detached) == [
        AttemptKey("wf", "i", "train", 1, 1, since)
    ]
    COMPUTE.gate.set()  # the attempt ends: its owner wakes the instance, whose replay rejoins
    await h.until(lambda: h.status("i") == "complete")
    assert h.output("i") == "shipped model" and len(COMPUTE.calls) == 1
    assert h.store.steps("i")[("train", 1)].attempts == 1 and COMPUTE.cancelled == 0


@pytest.mark.asyncio
async def test_a_hibernated_attempt_its_owner_forgot_is_a_lost_attempt_retried() -> None:
    COMPUTE.hang = True
    h = await _started(Long)
    await h.advance(11)
    await h.until(lambda: h.status("i") == "waiting")
    COMPUTE.running.clear()  # the owner died and came back empty
    COMPUTE.hang = False
    await h.advance(61)  # the instance looks again within 60 s
    await h.until(lambda: h.status("i") == "complete")
    train = h.store.steps("i")[("train", 1)]
    assert train.attempts == 2 and len(COMPUTE.calls) == 2


@pytest.mark.asyncio
async def test_without_an_executor_the_step_runs_in_process() -> None:
    h = Harness(Placed)  # the in-process kit: no ComputeExecutor
    h.create("i")
    await h.settle()
    await h.advance(61)
    assert h.output("i") == ["at home", "away", 2] and COMPUTE.calls == []


@pytest.mark.parametrize(
    ("resources", "rule"),
    [
        ({"num_gpu": 1}, "key 'num_gpu' is not known"),
        ({"num_cpus": -1}, "resources['num_cpus'] -1 must be a finite number >= 0"),
        ({"num_cpus": True}, "resources['num_cpus'] True must be a finite number >= 0"),
        ({"memory": float("inf")}, "resources['memory'] inf must be a finite number >= 0"),
        ({"resources": {"gpu": "many"}}, "resources['resources']['gpu'] 'many' must be"),
        ({"resources": ["gpu"]}, "resources['resources'] ['gpu'] must be a dict"),
        ({"resources": {"": 1}}, "must be a dict of resource name (str) to amount"),
        ({"infeasible_after": "soon"}, "infeasible_after"),
        ({"infeasible_after": -1}, "infeasible_after"),
        ({"hibernate_after": "later"}, "hibernate_after"),
        (["num_cpus"], "is not a dict"),
    ],
)
def test_a_bad_resources_dict_is_refused_naming_the_key(resources: Any, rule: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        compute_request(resources)
    assert rule in str(err.value)


def test_a_good_request_reads_back_in_rays_names() -> None:
    req = compute_request(
        {"num_cpus": 2, "num_gpus": 0.5, "memory": 1 << 30, "resources": {"ssd": 1}}
    )
    assert req is not None
    assert req.amounts() == {"CPU": 2.0, "GPU": 0.5, "memory": float(1 << 30), "ssd": 1.0}
    assert compute_request({"infeasible_after": "2 minutes"}) == ComputeRequest(
        infeasible_after=120.0
    )


async def _hibernated() -> Harness:
    """A Long instance hibernated on its "train" attempt, which waits for COMPUTE.gate."""
    COMPUTE.gate = asyncio.Event()
    h = await _started(Long)
    await h.advance(11)
    await h.until(lambda: h.status("i") == "waiting")
    return h


@pytest.mark.asyncio
async def test_a_pause_while_hibernated_lets_the_attempt_finish_and_resume_rejoins_it() -> None:
    h = await _hibernated()
    h.ns.pause("i")
    assert h.status("i") == "paused"
    COMPUTE.gate.set()  # ends while paused: the wake is a no-op, the outcome is kept
    await h.idle()
    assert h.status("i") == "paused"
    h.ns.resume("i")
    await h.until(lambda: h.status("i") == "complete")
    assert len(COMPUTE.calls) == 1 and h.store.steps("i")[("train", 1)].attempts == 1


@pytest.mark.asyncio
async def test_a_restart_while_hibernated_starts_a_new_attempt_not_the_old_one() -> None:
    h = await _hibernated()
    await h.advance(1)  # the new run's step record is made at another time
    h.ns.restart("i")
    await h.until(lambda: len(COMPUTE.calls) == 2)  # a new task: the old key is another step
    old, new = list(COMPUTE.running)
    assert old[:5] == new[:5] and old.since != new.since
    COMPUTE.gate.set()
    await h.until(lambda: h.status("i") == "complete")
    assert h.store.steps("i")[("train", 1)].attempts == 1
