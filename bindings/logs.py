"""What a person running raydo sees of Ray: raydo's messages, not Ray's machinery.

By default:
  - lines from raydo's actors (NamespaceActor, InstanceActor, TimerActor): marked log records
    (actors/logs.py: WARNING and up, raydo's and the workflow code's) become records of this
    process's `raydo` logger; anything else they print (print() in workflow code, Python
    warnings, Ray's worker messages) is dropped;
  - Ray's messages about its workers ("(raylet) A worker died ...") are dropped when raydo
    started Ray itself (an instance's worker dying is raydo's to report, and it does);
  - Ray starts quietly, without its notebook hint ("Missing packages: ['ipywidgets']").
`RAYDO_LOG=debug` shows everything Ray prints, as Ray prints it, and raydo's debug records.

Ray prints worker output through one function, `ray._private.worker.print_worker_logs`; it is
wrapped here. Should a Ray version lack it, nothing is wrapped and Ray prints as usual.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from ..actors.logs import MARK, level

log = logging.getLogger("raydo")

RAYDO_ACTORS = frozenset({"NamespaceActor", "InstanceActor", "TimerActor"})
_NOTEBOOK_HINTS = ("Missing packages", "Outdated packages")


class _State:
    owns_ray = False
    original: Callable[..., Any] | None = None


def showing_everything() -> bool:
    """RAYDO_LOG=debug: Ray's own output is shown too."""
    return level() <= logging.DEBUG


def quiet_ray_imports() -> None:
    """Before `import ray`: drop Ray's notebook hint about ipywidgets (a filter on its logger
    survives Ray's logging setup, which resets levels of existing child loggers)."""
    if not showing_everything():
        logging.getLogger("ray.widgets.util").addFilter(
            lambda record: not record.getMessage().startswith(_NOTEBOOK_HINTS)
        )


def configure_driver_logging(owns_ray: bool) -> None:
    """Route the output of raydo's actors through the `raydo` logger (see the module doc)."""
    _State.owns_ray = owns_ray
    if os.environ.get("RAYDO_LOG"):
        log.setLevel(level())
    if not log.handlers and not logging.getLogger().handlers:
        # Nobody configured logging: show raydo's records plainly, as Python's last resort
        # would, but with their origin.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("raydo %(levelname)s: %(message)s"))
        log.addHandler(handler)
    _wrap_ray_printer()


def _wrap_ray_printer() -> None:
    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover - another Ray layout: leave Ray's printing alone
        return
    original = getattr(worker, "print_worker_logs", None)
    if original is None or _State.original is not None:
        return
    _State.original = original
    worker.print_worker_logs = _print_worker_logs


def _print_worker_logs(data: dict[str, Any], print_file: Any, *args: Any, **kwargs: Any) -> None:
    assert _State.original is not None
    from_raydo = data.get("actor_name") in RAYDO_ACTORS
    kept: list[str] = []
    for line in data.get("lines", []):
        if MARK in line and from_raydo and _emit_marked(line):
            continue
        if _shows(data, from_raydo):
            kept.append(line)
    if kept:
        _State.original({**data, "lines": kept}, print_file, *args, **kwargs)


def _shows(data: dict[str, Any], from_raydo: bool) -> bool:
    if showing_everything():
        return True
    if from_raydo:
        return False
    return not (_State.owns_ray and data.get("pid") == "raylet")


def _emit_marked(line: str) -> bool:
    """Re-emit a marked record on the `raydo` logger; False if the line is not one."""
    start = line.index(MARK) + len(MARK)
    try:
        # raw_decode: Ray may append " [repeated 2x across cluster]" to a line
        (levelno, name, text), _ = json.JSONDecoder().raw_decode(line, start)
    except (ValueError, TypeError):
        return False
    if not (name == "raydo" or name.startswith("raydo.")):
        text = f"{name}: {text}"
    log.log(int(levelno), "%s", text)
    return True
