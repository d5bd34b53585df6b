"""Waiting for a condition in Ray tests: poll with a generous limit, never a timed assertion."""

from __future__ import annotations

import time
from typing import Any


def wait_for(predicate: Any, what: str, limit: float = 120.0) -> None:
    """Return once `predicate()` is true; fail naming `what` after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)
