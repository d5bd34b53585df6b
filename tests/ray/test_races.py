"""Races through the public API: concurrent events, concurrent creates, control storms."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import raydo
from raydo import InstanceExistsError, InstanceStatus, InvalidStateError, WorkflowEntrypoint

pytestmark = pytest.mark.ray

SENDERS, PER_SENDER = 10, 100


class Inbox(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        got = []
        for _ in range(event.payload):
            ev = await step.wait_for_event("msg", type="msg", timeout="5 minutes")
            got.append(ev.payload)
        return got


def test_thousand_concurrent_events_each_delivered_once_in_sender_order(raydo_env: Path) -> None:
    wf = raydo.workflow(Inbox, name="inbox", concurrency=1)
    total = SENDERS * PER_SENDER

    async def main() -> Any:
        inst = await wf.create(id="inbox", params=total)

        async def sender(s: int) -> None:
            for n in range(PER_SENDER):
                await inst.send_event(type="msg", payload=[s, n])

        await asyncio.gather(*(sender(s) for s in range(SENDERS)))
        return await inst.wait(timeout=180)

    st = asyncio.run(main())
    assert st.status is InstanceStatus.COMPLETE, st.error
    got = [tuple(p) for p in st.output]
    assert len(got) == total and len(set(got)) == total  # each exactly once
    per_sender: dict[int, list[int]] = defaultdict(list)
    for s, n in got:
        per_sender[s].append(n)
    assert all(seq == list(range(PER_SENDER)) for seq in per_sender.values())


class Quick(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return await step.do("one", lambda: event.payload)


def test_fifty_concurrent_creates_of_one_id_exactly_one_wins(raydo_env: Path) -> None:
    wf = raydo.workflow(Quick, name="quick", concurrency=1)

    async def main() -> list[Any]:
        calls = [wf.create(id="same", params=n) for n in range(50)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    winners = [r for r in results if isinstance(r, raydo.WorkflowInstance)]
    losers = [r for r in results if isinstance(r, InstanceExistsError)]
    assert len(winners) == 1 and len(losers) == 49
    out = winners[0].wait(timeout=60).result().output
    assert out in range(50)


class Busy(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        total = 0
        for i in range(6):
            total += await step.do(f"s{i}", lambda i=i: i)
            await step.sleep(f"z{i}", 0.1 if i % 2 else 0.4)
        return total


def test_control_storm_ends_in_states_the_history_explains(raydo_env: Path) -> None:
    wf = raydo.workflow(Busy, name="busy", concurrency=3)
    insts = [wf.create(id=f"b{n}").result() for n in range(8)]
    # per instance: (op, sent, answered). Two threads' calls on one instance that overlap in time
    # may be applied in either order: the order their answers were appended in says nothing.
    history: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    lock = threading.Lock()
    stop = threading.Event()

    def storm(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            inst = rng.choice(insts)
            op = rng.choice(["pause", "resume", "resume", "terminate", "restart"])
            sent = time.monotonic()
            try:
                getattr(inst, op)().result(timeout=30)
            except InvalidStateError:
                continue  # e.g. terminate of a finished instance: allowed to refuse
            with lock:
                history[inst.id].append((op, sent, time.monotonic()))

    threads = [threading.Thread(target=storm, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    threading.Event().wait(6)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    for inst in insts:
        inst.resume().result(timeout=30)
        st = inst.wait(timeout=120).result()
        ops = [h for h in history[inst.id] if h[0] in ("terminate", "restart")]
        # the ops that may have been applied last: none other was sent after they were answered
        last_sent = max((sent for _, sent, _ in ops), default=None)
        last = {op for op, _, answered in ops if last_sent is not None and answered >= last_sent}
        if last == {"terminate"}:
            assert st.status is InstanceStatus.TERMINATED, (inst.id, history[inst.id])
        elif not last or last == {"restart"}:
            assert st.status is InstanceStatus.COMPLETE, (inst.id, history[inst.id], st)
            assert st.output == 15
        else:  # a terminate and a restart in flight together: either may have been last
            assert st.status in (InstanceStatus.TERMINATED, InstanceStatus.COMPLETE), st
            if st.status is InstanceStatus.COMPLETE:
                assert st.output == 15
