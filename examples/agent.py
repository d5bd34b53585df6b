"""An async agent that hands long-running work to background workflows and polls them.

Cloudflare's Agents SDK example: an agent receives requests, starts a workflow instance for each
(`env.MY_WORKFLOW.create({id, params})`) and checks on them periodically. Here the agent is a plain
asyncio object: it creates instances with `await wf.create(...)`, keeps only their handles, and
polls `await inst.status()` until every one is complete or errored. The workflows keep going
whether or not anyone polls; on a Ray cluster they would outlive the agent's process too.

The background job watches a flight: look it up, check the gate a few times with a sleep in
between (minutes in real life, a second here), then notify the user. An unknown flight number is
a NonRetryableError: that instance ends `errored` at once and the agent reports it.

    python examples/agent.py [STORAGE_DIR]
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
import uuid
from functools import partial
from typing import Any

import raydo
from raydo import NonRetryableError, StatusInfo, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

# The (fake) airline schedule.
FLIGHTS = {
    "DL264": {"from": "LAX", "to": "JFK", "departs": "08:05"},
    "UA901": {"from": "SFO", "to": "FRA", "departs": "15:40"},
    "AF083": {"from": "CDG", "to": "SFO", "departs": "10:35"},
}


def lookup_flight(flight: str, date: str) -> dict[str, Any]:
    if flight not in FLIGHTS:
        raise NonRetryableError(f"no flight {flight!r} on {date}", name="UnknownFlight")
    return {"flight": flight, "date": date, **FLIGHTS[flight]}


def check_gate(flight: str, check: int) -> str:
    """Gates get assigned late: the first check knows nothing, later ones do."""
    if check == 0:
        return "TBA"
    digest = hashlib.sha256(flight.encode()).digest()
    return f"{'ABCD'[digest[0] % 4]}{digest[1] % 40 + 1}"


class FlightWatchWorkflow(WorkflowEntrypoint):
    """params: {"user", "flight", "date", "checks": int (default 2), "every": duration}"""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        p = event.payload
        flight = await step.do("look up flight", partial(lookup_flight, p["flight"], p["date"]))

        gate = "TBA"
        for check in range(p.get("checks", 2)):
            # The same step name in a loop is fine: each call is (name, 1), (name, 2), ...
            await step.sleep("wait before gate check", p.get("every", "1 second"))
            gate = await step.do("check gate", partial(check_gate, p["flight"], check))

        message = (
            f"{p['user']}: {flight['flight']} {flight['from']}->{flight['to']} "
            f"departs {flight['departs']} from gate {gate}"
        )
        await step.do("notify user", lambda: message)
        return {"user": p["user"], "flight": flight["flight"], "gate": gate, "message": message}


class TravelAgent:
    """Starts one background workflow per request and keeps only the handles."""

    def __init__(self, workflow: raydo.Workflow) -> None:
        self.workflow = workflow
        self.tasks: dict[str, raydo.WorkflowInstance] = {}

    async def run_workflow(self, data: dict[str, Any]) -> raydo.WorkflowInstance:
        # A fresh id per task; a fixed one (say, per user and flight) would make a repeated
        # request raise InstanceExistsError instead of starting a duplicate watcher.
        task_id = f"{data['user']}-{data['flight']}-{uuid.uuid4().hex[:6]}"
        inst = await self.workflow.create(id=task_id, params=data)
        self.tasks[inst.id] = inst
        return inst

    async def check_workflow_status(self) -> dict[str, StatusInfo]:
        statuses = await asyncio.gather(*(inst.status() for inst in self.tasks.values()))
        return {st.id: st for st in statuses}

    async def wait_all(self, interval: float = 0.2, timeout: float = 60) -> dict[str, StatusInfo]:
        """Poll every `interval` seconds, report changes, return once all tasks have finished."""
        started = time.monotonic()
        seen: dict[str, raydo.InstanceStatus] = {}
        while True:
            statuses = await self.check_workflow_status()
            for iid, st in statuses.items():
                if seen.get(iid) != st.status:
                    seen[iid] = st.status
                    print(f"  [{time.monotonic() - started:4.1f}s] {iid}: {st.status}")
            if all(st.status.finished for st in statuses.values()):
                return statuses
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"tasks still running after {timeout}s: {seen}")
            await asyncio.sleep(interval)


async def main(storage: str | None = None) -> dict[str, StatusInfo]:
    raydo.init(storage)
    # concurrency=2: at most two watchers hold a process at a time; the third is queued until
    # one of them sleeps (a sleeping instance gives its process back).
    agent = TravelAgent(raydo.workflow(FlightWatchWorkflow, name="flight-watch", concurrency=2))
    requests: list[dict[str, Any]] = [
        {"user": "ana", "flight": "DL264", "date": "2025-02-23"},
        {"user": "bo", "flight": "UA901", "date": "2025-02-24", "checks": 3},
        {"user": "cy", "flight": "XX000", "date": "2025-02-24"},
    ]
    await asyncio.gather(*(agent.run_workflow(r) for r in requests))
    print(f"agent started {len(agent.tasks)} background workflows")

    results = await agent.wait_all()
    for st in results.values():
        if st.status == "complete":
            print(f"{st.id}: {st.status}: {st.output['message']}")
        else:
            assert st.error is not None
            print(f"{st.id}: {st.status}: {st.error.name}: {st.error.message}")
    done = sum(st.status == "complete" for st in results.values())
    print(f"final status: {done} complete, {len(results) - done} not")
    raydo.shutdown()
    return results


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
