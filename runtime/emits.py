"""`ctx.emit(data)`: progress records from inside a running step attempt.

An attempt's emits are gathered in memory and written to the instance's history in one unsynced
transaction per turn of the event loop (a step emitting in a tight loop costs one write per
batch, not per record); the rest are written when the attempt ends, before its end is recorded,
so a subscriber sees them live and the history keeps them with their attempt. `emit` may be
called from the step's thread (a sync step) as well as from the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from ..errors import PayloadError
from ..storage.codec import encode
from ..storage.records import Fenced
from .clock import Clock
from .store import Store

MAX_EMIT_BYTES = 16 << 10
"""The largest record one `emit` takes, encoded: progress, not results (return those)."""
MAX_PENDING = 1000
"""An async step that emits this many without yielding to the loop has them written at once."""


class Emitter:
    """The sink of one attempt's `ctx.emit`."""

    def __init__(
        self,
        store: Store,
        iid: str,
        lease: int,
        sid: tuple[str, int],
        attempt: int,
        clock: Clock,
        before: Callable[[], None] | None = None,
    ) -> None:
        self._store, self._iid, self._lease = store, iid, lease
        self._before = before  # runs before the first write (the attempt's start is written)
        self._sid, self._attempt, self._clock = sid, attempt, clock
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._items: list[tuple[float, bytes]] = []
        self._scheduled = False
        self._closed = False

    def emit(self, data: Any) -> None:
        raw = encode(data, f"data emitted by step {self._sid[0]!r}")
        if len(raw) > MAX_EMIT_BYTES:
            raise PayloadError(
                f"data emitted by step {self._sid[0]!r} ({type(data).__name__}) is {len(raw)} "
                f"bytes serialized; ctx.emit takes at most {MAX_EMIT_BYTES} bytes (return large "
                "results from the step instead)",
                what=f"data emitted by step {self._sid[0]!r}",
                size=len(raw),
            )
        with self._lock:
            if self._closed:  # a stray thread of an attempt that is over: nobody listens
                return
            self._items.append((self._clock.now(), raw))
            schedule, self._scheduled = not self._scheduled, True
            full = len(self._items) >= MAX_PENDING
        if full and threading.get_ident() == self._loop_thread:
            self.flush()  # a step that never yields: memory stays bounded
        elif schedule:
            self._loop.call_soon_threadsafe(self.flush)

    def flush(self) -> None:
        """Write what was emitted since the last flush (on the activation's loop)."""
        with self._lock:
            items, self._items, self._scheduled = self._items, [], False
        if not items:
            return
        if self._before is not None:
            self._before()
            self._before = None
        # Fenced: taken away; the activation stops at its next write, and these are moot.
        with contextlib.suppress(Fenced):
            self._store.append_emits(self._iid, self._lease, self._sid, self._attempt, items)

    def close(self) -> None:
        """The attempt ended: write the rest, and take no more."""
        with self._lock:
            self._closed = True
        self.flush()
