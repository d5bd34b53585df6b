"""Plain JSON for any value raydo stores, for the tools that print or serve it.

Stored values are msgpack data plus datetimes and pydantic models; JSON has no bytes and no NaN or
Infinity, and a JSON encoder that meets them fails the whole response. Here bytes become
{"$bytes": base64}, non-finite floats become their name as a string, and anything else
unexpected becomes its repr, so showing a value can never fail.
"""

from __future__ import annotations

import base64
import math
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel


def jsonable(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth > 200:
        return "…"
    if isinstance(value, dict):
        return {_key(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value]
    return _other(value, depth)


def _other(value: Any, depth: int) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump(mode="python"), depth + 1)
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(jsonable(key))
