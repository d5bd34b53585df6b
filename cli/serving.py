"""How the CLI finds a running `raydo serve` for its storage (and so joins the same Ray).

A server writes `serve.json` into the storage folder while it runs: its Ray address, pid and URL.
A CLI command with no --address / RAY_ADDRESS joins that Ray instead of starting its own, so the
instances it touches are the ones the server runs (two Rays on one storage would both run them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ADVERTISE_FILE = "serve.json"


def advertise_path(storage: str) -> Path:
    return Path(storage) / ADVERTISE_FILE


def read_advertised(storage: str) -> dict[str, Any] | None:
    """What a live server on this storage wrote, or None (no file, unreadable, or its pid gone)."""
    try:
        info = json.loads(advertise_path(storage).read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info.get("ray_address"), str) else None


def advertised_address(storage: str) -> tuple[str, bool] | None:
    """The Ray address of a server running on `storage`, and whether it needs token auth."""
    info = read_advertised(storage)
    if info is None:
        return None
    return str(info["ray_address"]), info.get("auth_mode") == "token"


def write_advertised(storage: str, info: dict[str, Any]) -> None:
    path = advertise_path(storage)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**info, "pid": os.getpid()}))
    tmp.replace(path)


def remove_advertised(storage: str) -> None:
    path = advertise_path(storage)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
