"""Helpers shared by the server tests (a module of its own: test folders share the name
`conftest`, so importing helpers from one is ambiguous)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Served:
    url: str
    project: Any
    start: Callable[[str | None], str]  # another server on the same project, with a token


def until(check: Callable[[], Any], what: str, limit: float = 120) -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
