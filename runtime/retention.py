"""Retention: how long a finished instance is kept before it is deleted with all its keys.

Cloudflare's rule: a `complete` instance is kept for the success retention, an `errored` or
`terminated` one for the error retention. Either may be left out (kept until deleted). The parsed
form is what the instance record stores, `{"success": seconds, "error": seconds}`, so the expiry
follows from the record alone (storage/records.py `InstanceRecord.expires_at`) and the storage's
timer index fires it like any wake-up (runtime/namespace.py `wake`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInputError
from .rules import MAX_SLEEP, bounded, show

KINDS = ("success", "error")
Retention = dict[str, float]


def parse_retention(value: Any, what: str = "retention") -> Retention | None:
    """`{"success": "7 days", "error": "30 days"}` (durations, either key optional) -> seconds.
    None means no retention (kept until deleted). Anything else raises a typed error naming
    the value and the rule, before anything is written."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value or not set(value) <= set(KINDS):
        raise InvalidInputError(
            f"{what} {show(value)} must be a dict with one or both keys 'success' and 'error' "
            "(durations: how long complete / errored or terminated instances are kept), "
            "e.g. {'success': '7 days', 'error': '30 days'}",
            value=show(value),
        )
    parsed = {}
    for kind, duration in value.items():
        if duration is None:
            continue
        parsed[kind] = bounded(duration, f"{what} {kind}", 0, MAX_SLEEP)
    return parsed or None
