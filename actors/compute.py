"""Ray's side of `step.do(..., resources=...)`: each attempt is a Ray task with those resources
(runtime/compute.py has the semantics). The instance actor awaits it; cancelling that await (the
attempt's timeout, terminate, restart, delete) cancels the task, killing its worker if it runs.

Ray keeps a task no node can ever run queued forever (an "infeasible" task, waiting for an
autoscaler). An attempt that is still waiting after FIRST_LOOK seconds has its request compared
with what the alive nodes have in total; once it has matched no node for `infeasible_after`
seconds, the task is cancelled and the attempt fails with InfeasibleResourcesError naming the
request and what each node offers. A request that fits some node but waits for it to be free is
not infeasible: it waits as long as the step's timeout allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayTaskError

from ..errors import InfeasibleResourcesError
from ..runtime.compute import INFEASIBLE_AFTER, ComputeRequest

FIRST_LOOK = 1.0  # seconds an attempt may wait before anyone asks whether it can ever run
LOOK_EVERY = 2.0  # seconds between later looks at the cluster while it cannot
_SHOWN = ("CPU", "GPU", "memory")


def run_step(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """The task body: the user's step function, sync or async."""
    result = fn(*args)
    if inspect.isawaitable(result):
        return asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def task_options(req: ComputeRequest) -> dict[str, Any]:
    """Ray options for one attempt (or one actor): raydo retries, never Ray."""
    options: dict[str, Any] = {"max_retries": 0}
    for name in ("num_cpus", "num_gpus", "memory"):
        value = getattr(req, name)
        if value is not None:
            options[name] = int(value) if name == "memory" else value
    if req.resources:
        options["resources"] = dict(req.resources)
    return options


class RayCompute:
    """The ComputeExecutor of an instance actor."""

    def __init__(self, infeasible_after: float = INFEASIBLE_AFTER) -> None:
        self.infeasible_after = infeasible_after
        self._remote = ray.remote(run_step)

    async def run(self, fn: Callable[..., Any], args: tuple[Any, ...], req: ComputeRequest) -> Any:
        ref = self._remote.options(**task_options(req)).remote(fn, args)
        try:
            return await self._result(ref, req)
        except RayTaskError as exc:  # the step's own error, as the step raised it
            raise (exc.cause if isinstance(exc.cause, Exception) else exc) from None
        except BaseException:  # cancelled (timeout, terminate) or found infeasible
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
            raise

    async def _result(self, ref: Any, req: ComputeRequest) -> Any:
        future = asyncio.ensure_future(_get(ref))
        try:
            await self._watch(future, req)
            return future.result()
        finally:
            future.cancel()

    async def _watch(self, future: asyncio.Future[Any], req: ComputeRequest) -> None:
        """Return once `future` is done; raise InfeasibleResourcesError once no alive node
        could ever run the request for the whole wait."""
        done, _ = await asyncio.wait({future}, timeout=FIRST_LOOK)
        unmet_since: float | None = None
        wait = self.infeasible_after if req.infeasible_after is None else req.infeasible_after
        while not done:
            offered = await asyncio.to_thread(offers)
            if fits_somewhere(req, offered):
                unmet_since = None
            else:
                unmet_since = unmet_since or time.monotonic()
                if time.monotonic() - unmet_since >= wait:
                    raise infeasible(req, offered, wait)
            done, _ = await asyncio.wait({future}, timeout=LOOK_EVERY)


async def _get(ref: Any) -> Any:
    return await ref


def offers() -> list[dict[str, float]]:
    """What each alive node has in total: CPU, GPU, memory and custom resources (not Ray's
    per-node markers)."""
    return [
        {k: v for k, v in node["Resources"].items() if _is_offer(k)}
        for node in ray.nodes()
        if node.get("Alive")
    ]


def _is_offer(name: str) -> bool:
    hidden = name.startswith(("node:", "accelerator_type:")) or name == "object_store_memory"
    return not hidden


def fits_somewhere(req: ComputeRequest, offered: list[dict[str, float]]) -> bool:
    amounts = req.amounts()
    return any(all(node.get(k, 0.0) >= v for k, v in amounts.items()) for node in offered)


def infeasible(req: ComputeRequest, offered: list[dict[str, float]], wait: float) -> Exception:
    shown = [
        {k: v for k, v in node.items() if k in _SHOWN or k in req.resources} for node in offered
    ]
    return InfeasibleResourcesError(
        f"step resources {req.describe()} match no node of the cluster (waited {wait:g} s; "
        f"the alive nodes offer {shown}); give a request some node can meet, add such a node, "
        "or raise infeasible_after",
        request=req.amounts(),
        offered=shown,
    )
