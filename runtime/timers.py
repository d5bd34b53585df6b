"""A due-time queue of wake-ups, one entry per instance (the latest schedule wins)."""

from __future__ import annotations

import heapq


class TimerQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, str, str]] = []
        self._due: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self._due)

    def add(self, due: float, workflow: str, iid: str) -> None:
        key = (workflow, iid)
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, workflow, iid))

    def next_due(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[tuple[str, str]]:
        """Every (workflow, id) due at or before `now`, earliest first."""
        fired = []
        while self._heap and self._heap[0][0] <= now:
            due, workflow, iid = heapq.heappop(self._heap)
            if self._due.get((workflow, iid)) == due:
                del self._due[(workflow, iid)]
                fired.append((workflow, iid))
        return fired

    def _drop_stale(self) -> None:
        while self._heap and self._due.get(self._heap[0][1:]) != self._heap[0][0]:
            heapq.heappop(self._heap)
