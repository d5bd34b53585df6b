"""DAG steps (`@step.do(name, concurrent=...)`, runtime/dag.py) through the Namespace with
in-process runners, an in-memory store and a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from harness import Harness

from raydo.errors import InvalidStepError
from raydo.runtime.model import StepContext, WorkflowEntrypoint

pytestmark = pytest.mark.asyncio

calls: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


class Diamond(WorkflowEntrypoint):
    """top -> (left, right) -> bottom; a sleep, then `again` needs top once more."""

    async def run(self, event: Any, step: Any) -> Any:
        @step.do("top")
        async def top() -> int:
            calls.append("top")
            return 10

        @step.do("left")
        def left(top: int) -> int:  # sync: runs in a thread
            calls.append("left")
            return top + 1

        @step.do("right")
        async def right(top: int, ctx: StepContext) -> dict[str, Any]:
            calls.append("right")
            return {"v": top + 2, "step": [ctx.step.name, ctx.step.count], "attempt": ctx.attempt}

        @step.do("bottom", concurrent=True)
        async def bottom(left: int, right: dict[str, Any]) -> list[Any]:
            calls.append("bottom")
            return [left, right]

        result = await bottom()
        await step.sleep("nap", "1 hour")

        @step.do("again")
        async def again(top: int) -> int:
            calls.append("again")
            return top * 2

        return {"bottom": result, "again": await again()}


async def test_a_diamond_runs_its_top_once_and_replays_from_storage() -> None:
    h = Harness(Diamond)
    h.create("d")
    await h.settle()
    assert h.status("d") == "waiting"
    assert sorted(calls) == ["bottom", "left", "right", "top"]
    assert calls[0] == "top" and calls[-1] == "bottom"
    await h.advance(3600)
    assert h.status("d") == "complete", h.error("d")
    assert h.output("d") == {
        "bottom": [11, {"v": 12, "step": ["right", 1], "attempt": 1}],
        "again": 20,
    }
    # The second activation replayed top, left, right and bottom: none ran again.
    assert sorted(calls) == ["again", "bottom", "left", "right", "top"]
    steps = h.store.steps("d")
    assert sorted(steps) == [
        ("again", 1),
        ("bottom", 1),
        ("left", 1),
        ("nap", 1),
        ("right", 1),
        ("top", 1),
    ]


def _together(log: list[str]) -> Any:
    """Two steps that each wait for the other to have started: only concurrent resolution
    lets both finish."""

    async def one(name: str) -> str:
        log.append(f"start {name}")
        for _ in range(10):
            if sum(entry.startswith("start") for entry in log) >= 2:
                break
            await asyncio.sleep(0)
        log.append(f"end {name}")
        return name

    return one


def _pair(concurrent: bool) -> type[WorkflowEntrypoint]:
    class Pair(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            one = _together(calls)

            @step.do("a")
            async def a() -> str:
                return await one("a")

            @step.do("b")
            async def b() -> str:
                return await one("b")

            @step.do("both", concurrent=concurrent)
            async def both(b: str, a: str) -> str:
                return a + b

            return await both()

    return Pair


async def test_concurrent_resolves_dependencies_together() -> None:
    h = Harness(_pair(True))
    h.create("p")
    await h.settle()
    assert h.output("p") == "ab"
    assert calls[:2] == ["start b", "start a"]  # parameter order: b first


async def test_without_concurrent_dependencies_run_one_after_another() -> None:
    h = Harness(_pair(False))
    h.create("p")
    await h.settle()
    assert h.output("p") == "ab"
    assert calls == ["start b", "end b", "start a", "end a"]


class Unknown(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do("first")
        async def first() -> int:
            return 1

        @step.do("second")
        async def second(frist: int) -> int:
            calls.append("second")
            return frist

        return await second()


async def test_an_unknown_parameter_fails_at_decoration_naming_it() -> None:
    h = Harness(Unknown)
    h.create("u")
    await h.settle()
    assert h.status("u") == "errored"
    error = h.error("u")
    assert error is not None and error["name"] == "InvalidStepError"
    assert "'frist'" in error["message"] and "earlier: first" in error["message"]
    assert calls == [] and h.store.steps("u") == {}


class FailingDependency(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do("boom", retries={"limit": 0, "delay": 0})
        async def boom() -> int:
            calls.append("boom")
            raise ValueError("no")

        @step.do("fine")
        def fine() -> int:
            calls.append("fine")
            return 1

        @step.do("after", concurrent=True)
        async def after(boom: int, fine: int) -> int:
            calls.append("after")
            return boom + fine

        try:
            return await after()
        except Exception as exc:
            return {"caught": type(exc).__name__, "step": getattr(exc, "step", None)}


async def test_a_failed_dependency_fails_its_dependent_without_running_it() -> None:
    h = Harness(FailingDependency)
    h.create("f")
    await h.settle()
    assert h.output("f") == {"caught": "WorkflowStepError", "step": "boom"}
    assert sorted(calls) == ["boom", "fine"]  # the other dependency still ended
    assert ("after", 1) not in h.store.steps("f")


class Shapes(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do(config={"retries": {"limit": 1, "delay": 0}, "timeout": "1 minute"})
        async def named_after_me(ctx: StepContext) -> Any:
            calls.append("named")
            if ctx.attempt == 1:
                raise RuntimeError("once")
            return [ctx.step.name, ctx.attempt, ctx.config.retries.limit]

        first = await named_after_me()
        second = await named_after_me()  # a direct call is a new step, as in a loop
        return [first, second]


async def test_name_defaults_to_the_function_and_config_takes_cloudflares_dict() -> None:
    h = Harness(Shapes)
    h.create("s")
    await h.settle()
    assert h.output("s") == [["named_after_me", 2, 1], ["named_after_me", 2, 1]]
    assert sorted(h.store.steps("s")) == [("named_after_me", 1), ("named_after_me", 2)]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("step.do('x', lambda: 1, concurrent=True)", "concurrent=True"),
        ("step.do('x', concurrent='yes')", "'yes'"),
        ("step.do('x', retries={'limit': 1}, config={'timeout': 1})", "not both"),
        ("step.do('x', config={'tries': 1})", "'tries'"),
        ("step.do('x')(lambda *args: 1)", "'args'"),
        ("step.do('x')(3)", "3"),
        ("step.do(None, lambda: 1)", "None"),
    ],
)
async def test_bad_step_shapes_are_typed_errors_naming_the_value(body: str, named: str) -> None:
    class Bad(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            try:
                eval(body, {"step": step})
            except InvalidStepError as exc:
                return {"error": str(exc), "value": exc.value}
            return "accepted"

    h = Harness(Bad)
    h.create("b")
    await h.settle()
    out = h.output("b")
    assert out != "accepted", body
    assert named in out["error"], out
    assert h.store.steps("b") == {}
