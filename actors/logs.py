"""Log records of raydo's actor processes, on their way to the driver.

Ray copies whatever a worker writes to stderr to the driver, prefixed "(InstanceActor pid=...)".
raydo writes each record worth a person's attention (WARNING and up, from raydo or from the
workflow's own code) as one marked line; the driver (bindings/logs.py) turns marked lines back
into records of its `raydo` logger and, by default, drops the rest of the actors' output.
`RAYDO_LOG=debug` forwards raydo's debug records too and shows everything Ray prints.
"""

from __future__ import annotations

import json
import logging
import os
import sys

MARK = "raydo-log "
DEFAULT_LEVEL = logging.WARNING


def level() -> int:
    """The level named by $RAYDO_LOG (debug, info, warning, error), else WARNING."""
    found = logging.getLevelName(os.environ.get("RAYDO_LOG", "").strip().upper() or "WARNING")
    return found if isinstance(found, int) else DEFAULT_LEVEL


class MarkedFormatter(logging.Formatter):
    """One line per record, traceback included: MARK + JSON [level, logger name, text]."""

    def format(self, record: logging.LogRecord) -> str:
        return MARK + json.dumps([record.levelno, record.name, super().format(record)])


def _not_ray(record: logging.LogRecord) -> bool:
    return record.name != "ray" and not record.name.startswith("ray.")


def forward_logs() -> None:
    """Mark this process's log records for the driver (idempotent; called by every raydo
    actor when it starts)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, MarkedFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MarkedFormatter())
    handler.setLevel(min(level(), DEFAULT_LEVEL))
    handler.addFilter(_not_ray)  # Ray's own worker records stay Ray's
    root.addHandler(handler)
    if level() < DEFAULT_LEVEL:
        logging.getLogger("raydo").setLevel(level())
