"""Reading an instance's history as a stream: the long-poll behind `instance.subscribe()`.

The history is durable in storage and written by whichever process runs the instance, so the
namespace answers a subscriber from storage: at once when events past its cursor exist, else
after re-reading with a backoff (POLL_FIRST doubling to POLL_MAX while the instance runs, to
POLL_IDLE_MAX while it waits, is paused or queued; one read transaction of a few microseconds
each) until some arrive, the instance is finished, or `wait` runs out. The backoff starts again
after every answer, so a stream of emits is followed closely, and a subscriber of an instance
that sleeps for days costs a few reads a second.

An instance errored only in memory (its activation could not write at all: storage full, the
namespace's `fault`) has no terminal event in storage and cannot get one. Its subscribers get a
`workflow_errored` event made from the fault instead, never stored, carrying the cursor of the
last stored event: a subscriber resuming from it misses nothing written later (a restart).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from ..storage.history import TERMINAL_TYPES, Event
from ..storage.records import InstanceStatus
from .store import Store

POLL_FIRST = 0.002
POLL_MAX = 0.05
POLL_IDLE_MAX = 0.25
MAX_EVENTS = 1000
MAX_WAIT = 30.0


@dataclass
class Batch:
    """One answer: the events that match, the cursor to continue from (past events that did
    not match too), and whether the stream ended (the instance finished)."""

    events: list[Event] = field(default_factory=list)
    cursor: int | None = None
    ended: bool = False


def select(events: list[Event], after: int | None, types: frozenset[str] | None) -> Batch:
    """Filter one read; the stream ends after its terminal event."""
    batch = Batch(cursor=after)
    for event in events:
        batch.cursor = event["cursor"]
        if types is None or event["type"] in types:
            batch.events.append(event)
        if event["type"] in TERMINAL_TYPES:
            batch.ended = True
            break
    return batch


def faulted(after: int | None, types: frozenset[str] | None, error: Mapping[str, str]) -> Batch:
    """The end of the stream of an instance errored only in memory (module docstring)."""
    event: Event = {"type": "workflow_errored", "at": time.time(), "error": dict(error)}
    event["cursor"] = 0 if after is None else after
    wanted = types is None or "workflow_errored" in types
    return Batch([event] if wanted else [], after, ended=True)


async def poll(
    store: Store,
    iid: str,
    after: int | None,
    types: frozenset[str] | None,
    wait: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    fault: Callable[[str], Mapping[str, str] | None] = lambda _: None,
) -> Batch:
    """Events after cursor `after`, waiting up to `wait` seconds for some. `fault(iid)`: the
    error of an instance errored only in memory, if it is one."""
    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
    delay, finished = POLL_FIRST, False
    while True:
        found = store.history(iid, after, MAX_EVENTS)
        batch = select(found, after, types)
        after = batch.cursor
        if batch.events or batch.ended:
            return batch
        if found:  # all filtered out: read on at once
            if time.monotonic() >= deadline:
                return batch
            continue
        if finished:  # read after the status said so: its terminal event is behind the cursor
            return Batch(cursor=after, ended=True)
        status = store.require(iid).status
        if status.finished:
            # It may have finished after the read above: read once more (the terminal event is
            # written with the status, so that read has it unless the cursor is past it).
            finished = True
            continue
        error = fault(iid)
        if error is not None:
            return faulted(after, types, error)
        if time.monotonic() >= deadline:
            return batch
        await sleep(delay)
        delay = min(delay * 2, POLL_MAX if status is InstanceStatus.RUNNING else POLL_IDLE_MAX)
