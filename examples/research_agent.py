"""An async agent loop whose work is durable: plan, ask a human, fan out, collect, summarize.

The agent (a plain asyncio object, as in a chat backend) takes research requests. For each it starts
a `ResearchAgent` workflow in the background, then shows the plan to a human and relays their
decision as an event. Each workflow:

1. plans with an LLM (mocked here: every LLM call is a step, so a retry or a replay never pays for
   a second call, and the answer the workflow acted on is in storage);
2. waits for the human's approval event, with a timeout (no answer: the request expires; the
   instance holds no process while it waits);
3. fans out: one `AnswerQuestion` child workflow per approved question, created in one step with
   ids derived from its own id (a replayed step creates nothing twice);
4. collects: each child reports its answer back with an event, and the parent waits for one event
   per question (a child's report may arrive twice after a crash: answers are keyed by index);
5. summarizes with the LLM.

The children run a two-step DAG (search, then draft from the sources). Swap the `llm_*` and
`search` functions for real API calls and nothing else changes.

    python examples/research_agent.py [STORAGE_DIR]
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

import raydo
from raydo import (
    StatusInfo,
    WaitForEventTimeoutError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)

AGENT, WORKER = "research-agent", "answer-question"


class Request(BaseModel):
    topic: str
    questions: int = 3
    approval_timeout: str = "1 hour"


class Question(BaseModel):
    parent: str
    index: int
    text: str


# -- the mocked LLM and search tool (deterministic, so the test can check what came out) ---------


def llm_plan(topic: str, n: int) -> list[str]:
    angles = ["what it is", "how it fails", "what it costs", "who uses it", "what is next"]
    return [f"{topic}: {angle}?" for angle in angles[:n]]


def search(question: str) -> list[str]:
    digest = hashlib.sha256(question.encode()).hexdigest()
    return [f"https://example.com/{digest[:8]}", f"https://example.org/{digest[8:16]}"]


def llm_answer(question: str, sources: list[str]) -> str:
    return f"{question.rstrip('?')} -> answered from {len(sources)} sources"


def llm_summarize(topic: str, answers: list[str]) -> str:
    return f"{topic}: {len(answers)} findings. " + " | ".join(answers)


# -- the workflows ----------------------------------------------------------------------------


class AnswerQuestion(WorkflowEntrypoint[Question]):
    """One background job per question; reports its answer to the parent with an event."""

    async def run(self, event: WorkflowEvent[Question], step: WorkflowStep) -> dict[str, Any]:
        q = event.payload

        @step.do("search")
        def sources() -> list[str]:
            return search(q.text)

        @step.do("llm: answer")
        def answer(sources: list[str]) -> str:
            return llm_answer(q.text, sources)

        @step.do("report to agent")
        async def report(answer: str, sources: list[str]) -> dict[str, Any]:
            found = {"index": q.index, "answer": answer, "sources": sources}
            parent = await self.env.AGENT.get(q.parent)
            await parent.send_event(type="answer", payload=found)
            return found

        return await report()


class ResearchAgent(WorkflowEntrypoint[Request]):
    async def run(self, event: WorkflowEvent[Request], step: WorkflowStep) -> dict[str, Any]:
        req, me = event.payload, event.instance_id
        plan = await step.do("llm: plan", lambda: llm_plan(req.topic, req.questions))
        try:
            decision = await step.wait_for_event(
                "human approval", type="approval", timeout=req.approval_timeout
            )
        except WaitForEventTimeoutError:
            return {"topic": req.topic, "outcome": "expired"}
        verdict = decision.payload
        if not verdict.get("approved"):
            return {"topic": req.topic, "outcome": "rejected", "by": verdict.get("by")}
        chosen = [(i, text) for i, text in enumerate(plan) if i not in verdict.get("drop", [])]

        async def fan_out() -> list[str]:
            items = [
                {"id": f"{me}-q{i}", "params": {"parent": me, "index": i, "text": text}}
                for i, text in chosen
            ]
            children = await self.env.WORKERS.create_batch(items)
            return [child.id for child in children]

        children = await step.do("fan out", fan_out)
        answers: dict[int, str] = {}
        while len(answers) < len(children):
            got = await step.wait_for_event("collect", type="answer", timeout="1 hour")
            answers[got.payload["index"]] = got.payload["answer"]
        ordered = [answers[i] for i in sorted(answers)]
        summary = await step.do("llm: summarize", lambda: llm_summarize(req.topic, ordered))
        return {
            "topic": req.topic,
            "outcome": "done",
            "approved_by": verdict.get("by"),
            "children": children,
            "summary": summary,
        }


def bind(concurrency: int = 4) -> raydo.Workflow:
    """The agent's binding, with its workers' binding in its env; the workers reach the agent
    through an address-only binding of its name."""
    workers = raydo.workflow(
        AnswerQuestion,
        name=WORKER,
        concurrency=concurrency,
        env={"AGENT": raydo.workflow(ResearchAgent, name=AGENT)},
    )
    return raydo.workflow(
        ResearchAgent, name=AGENT, concurrency=concurrency, env={"WORKERS": workers}
    )


# -- the agent loop ---------------------------------------------------------------------------

Decide = Callable[[str, list[str]], Awaitable[dict[str, Any] | None]]


class Agent:
    """Starts one durable ResearchAgent per request and relays the human's decision to it. The
    agent keeps only handles: if this process dies, the workflows carry on."""

    def __init__(self, agents: raydo.Workflow, decide: Decide) -> None:
        self.agents, self.decide = agents, decide

    async def handle(self, rid: str, request: dict[str, Any]) -> StatusInfo:
        inst = await self.agents.create(id=rid, params=request)
        plan = await self.plan_of(inst)
        print(f"[{rid}] plan: {plan}")
        decision = await self.decide(rid, plan)
        if decision is not None:
            await inst.send_event(type="approval", payload=decision)
        return await inst.wait(timeout=120, progress=False)

    async def plan_of(self, inst: raydo.WorkflowInstance, limit: float = 60) -> list[str]:
        """The plan, once the workflow has made it and waits for approval."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            st = await inst.status(steps=True)
            plan = next((s for s in st.steps if s.name == "llm: plan" and s.state == "done"), None)
            if plan is not None:
                return list(plan.output)
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{inst.id} made no plan within {limit} s")

    async def serve(self, requests: dict[str, dict[str, Any]]) -> dict[str, StatusInfo]:
        done = await asyncio.gather(*(self.handle(rid, r) for rid, r in requests.items()))
        return {st.id: st for st in done}


async def scripted_human(rid: str, plan: list[str]) -> dict[str, Any] | None:
    """Stands in for a person: approves the first request minus one question, rejects the
    second, and never answers the third."""
    await asyncio.sleep(0)
    if rid == "req-ray":
        return {"approved": True, "by": "ana", "drop": [len(plan) - 1]}
    if rid == "req-lmdb":
        return {"approved": False, "by": "bo"}
    return None


REQUESTS: dict[str, dict[str, Any]] = {
    "req-ray": {"topic": "Ray actors", "questions": 3},
    "req-lmdb": {"topic": "LMDB", "questions": 2},
    "req-cron": {"topic": "cron", "questions": 2, "approval_timeout": "1 second"},
}


async def main(storage: str | None = None) -> dict[str, StatusInfo]:
    raydo.init(storage)
    results = await Agent(bind(), scripted_human).serve(REQUESTS)
    for rid, st in results.items():
        out = st.output or {}
        print(f"[{rid}] {st.status}: {out.get('outcome')} {out.get('summary', '')}".rstrip())
    raydo.shutdown()
    return results


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
