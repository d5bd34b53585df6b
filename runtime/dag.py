"""DAG steps, written the way Cloudflare's Python Workflows write them.

    @step.do("fetch a")
    async def fetch_a(): ...

    @step.do("fetch b")
    async def fetch_b(ctx): ...          # a parameter named `ctx` gets the StepContext

    @step.do("combine", concurrent=True)
    async def combine(fetch_a, fetch_b):  # parameters named after earlier step functions get
        ...                               # their results; concurrent: resolved together
    await combine()

Decorating does not run anything; awaiting a call does. A step function's dependencies are read
from its parameter names when it is decorated, so a misspelt one fails there, naming it, rather
than at some later await. Within one activation each step function runs at most once on behalf of
the steps that depend on it: the first run (a direct call or a dependency's resolution) is shared
by every later dependent, so a diamond runs its top once. A direct call always runs a new step,
as `step.do` in a loop does. On replay the shared run answers from storage like any step.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidStepError
from .rules import Duration, StepConfig, check_step_name, show, step_config

if TYPE_CHECKING:
    from .step import WorkflowStep

StepFn = Callable[..., Any]
CTX = "ctx"
_CONFIG_KEYS = frozenset({"retries", "timeout"})


def resolve_config(
    retries: Any, timeout: Duration | None, config: Mapping[str, Any] | None, **extra: Any
) -> StepConfig:
    """A step's config from `retries=`/`timeout=` or from Cloudflare's `config={"retries": ...,
    "timeout": ...}` (one or the other, not both); `extra`: step_config's other keywords
    (sensitive, rollback, rollback_config)."""
    if config is None:
        return step_config(retries, timeout, **extra)
    if not isinstance(config, Mapping) or not set(config) <= _CONFIG_KEYS:
        raise InvalidStepError(
            f"step config {show(config)} is invalid; give a dict with keys from "
            f"{sorted(_CONFIG_KEYS)}",
            value=show(config),
        )
    if retries is not None or timeout is not None:
        raise InvalidStepError(
            "give a step's retries and timeout either as keywords or inside config=, not both",
            value=show(config),
        )
    return step_config(config.get("retries"), config.get("timeout"), **extra)


def check_plain_call(name: Any, concurrent: Any) -> str:
    """`step.do(name, fn)`: the name is required and `concurrent` means nothing there."""
    check_step_name(name)
    if concurrent is not False:
        raise InvalidStepError(
            f"step {show(name)}: concurrent={show(concurrent)} applies to the decorator form "
            "(@step.do(name, concurrent=True)), whose dependencies are its parameters",
            value=show(concurrent),
        )
    return str(name)


Place = Callable[[str, StepFn], StepFn]
"""How the step path calls a step's function: (step name, fn) -> fn as run (step.py's
`_placed`: in this process, or as a Ray task when the step asks for resources)."""


def decorator(
    step: WorkflowStep, name: str | None, config: StepConfig, concurrent: bool, place: Place
) -> Callable[[StepFn], StepFunction]:
    """What `@step.do(name, concurrent=...)` applies to the function below it."""
    if name is not None:
        check_step_name(name)
    if not isinstance(concurrent, bool):
        raise InvalidStepError(
            f"concurrent {show(concurrent)} must be True or False", value=show(concurrent)
        )

    def decorate(fn: StepFn) -> StepFunction:
        return StepFunction(step, name, fn, config, concurrent, place)

    return decorate


def _functions(step: WorkflowStep) -> dict[str, StepFunction]:
    """The step functions decorated so far in this activation, by function name."""
    found: dict[str, StepFunction] | None = getattr(step, "_dag_functions", None)
    if found is None:
        found = {}
        step._dag_functions = found  # type: ignore[attr-defined]
    return found


class StepFunction:
    """A function decorated with `@step.do(...)`: `await it()` runs it as a durable step."""

    def __init__(
        self,
        step: WorkflowStep,
        name: str | None,
        fn: StepFn,
        config: StepConfig,
        concurrent: bool,
        place: Place,
    ) -> None:
        if not callable(fn):
            raise InvalidStepError(
                f"@step.do({show(name)}) decorates {show(fn)}, which is not callable",
                value=show(fn),
            )
        known = _functions(step)
        self.name = check_step_name(name if name is not None else _function_name(fn))
        self.needs, self.wants_ctx = _parameters(self.name, fn, known)
        self.concurrent = concurrent
        self._step, self._fn, self._config, self._place = step, fn, config, place
        self._deps = [known[n] for n in self.needs]
        self._first: asyncio.Future[Any] | None = None
        known[_function_name(fn)] = self

    def __call__(self) -> Awaitable[Any]:
        return self._start(None)

    def _start(self, first: asyncio.Future[Any] | None) -> Awaitable[Any]:
        act = self._step._act
        sid = act.next_id(self.name)
        # checked in _run, when the step itself starts: its dependencies run (and are met) first
        return act.track(sid, self._run(sid, first), checked=False)

    def __repr__(self) -> str:
        return f"<step function {self.name!r} needs {list(self.needs)}>"

    def shared(self) -> Awaitable[Any]:
        """This function's result for a dependent: its first run in this activation, started
        now if it has not been."""
        if self._first is None:
            # claimed now, not when the run starts: a second dependent resolving in the same
            # loop turn must find it
            self._first = asyncio.get_running_loop().create_future()
            return self._start(self._first)
        if self._first.done():
            return self._first  # a done future: awaiting it answers at once
        return asyncio.shield(self._first)  # a dependent cancelled must not cancel the run

    async def _run(self, sid: tuple[str, int], first: asyncio.Future[Any] | None) -> Any:
        if first is None and self._first is None:
            first = self._first = asyncio.get_running_loop().create_future()
        try:
            fn = self._place(self.name, self._bound(await self._resolve()))
            value = await self._step._act.checked(sid, self._step._do(sid, fn, self._config))
        except BaseException as exc:
            if first is not None:
                _fail(first, exc)
            raise
        if first is not None:
            first.set_result(value)
        return value

    async def _resolve(self) -> dict[str, Any]:
        """The dependencies' results by parameter name. Concurrent: all started together, and
        the first failure in parameter order is raised once all have ended (the same one on
        every replay)."""
        if not self.concurrent:
            return {n: await dep.shared() for n, dep in zip(self.needs, self._deps, strict=True)}
        results = await asyncio.gather(*(d.shared() for d in self._deps), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return dict(zip(self.needs, results, strict=True))

    def _bound(self, results: dict[str, Any]) -> StepFn:
        """The user's function as the step path calls it: with the StepContext only."""
        fn, wants_ctx = self._fn, self.wants_ctx

        def arguments(ctx: Any) -> dict[str, Any]:
            return {**results, CTX: ctx} if wants_ctx else results

        if _is_async(fn):

            async def bound_async(ctx: Any) -> Any:
                return await fn(**arguments(ctx))

            return bound_async

        def bound(ctx: Any) -> Any:
            return fn(**arguments(ctx))

        return bound


def _parameters(
    name: str, fn: StepFn, known: dict[str, StepFunction]
) -> tuple[tuple[str, ...], bool]:
    """(dependencies in parameter order, takes ctx) from `fn`'s parameter names. A parameter
    with a default that names nothing known keeps its default."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return (), False
    needs: list[str] = []
    wants_ctx = False
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise InvalidStepError(
                f"step {name!r}: parameter {p.name!r} of {_function_name(fn)} is "
                f"{p.kind.description}; a step function's parameters are named (ctx, or earlier "
                "step functions)",
                value=p.name,
            )
        if p.name == CTX:
            wants_ctx = True
        elif p.name in known:
            needs.append(p.name)
        elif p.default is p.empty:
            raise InvalidStepError(_unknown_parameter(name, fn, p.name, known), value=p.name)
    return tuple(needs), wants_ctx


def _unknown_parameter(name: str, fn: StepFn, param: str, known: dict[str, StepFunction]) -> str:
    earlier = ", ".join(sorted(known)) or "none yet"
    return (
        f"step {name!r}: parameter {param!r} of {_function_name(fn)} is neither `ctx` nor the "
        f"name of a step function decorated earlier in this run (earlier: {earlier}); a "
        "dependency must be decorated with @step.do before the step that needs it"
    )


def _function_name(fn: StepFn) -> str:
    return str(getattr(fn, "__name__", type(fn).__name__))


def _is_async(fn: StepFn) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


def _fail(first: asyncio.Future[Any], exc: BaseException) -> None:
    """Share a failed first run with its dependents (a cancelled one stays cancelled)."""
    if isinstance(exc, asyncio.CancelledError):
        first.cancel()
        return
    first.set_exception(exc)
    first.exception()  # retrieved: no "never retrieved" warning when no dependent awaits it
