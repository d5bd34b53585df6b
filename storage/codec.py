"""msgpack encoding of user values and records. Never pickle: a storage file must not run code.

User values are msgpack data plus three extension types:
  - datetimes (ext 1), restored as timezone-aware datetimes when they had a zone;
  - pydantic models (ext 2), stored as their class path and JSON-mode data. A model is restored as
    its class only if that class is already imported in this process (replay of the same workflow
    code always has it); storage never causes an import. Otherwise it is returned as a dict.
  - raydo's own value types (ext 3, e.g. runtime's ReceivedEvent), stored as a tag and a dict of
    fields. The layer that owns the type registers it (`register_record_type`), so storage imports
    nothing above it; an unregistered tag reads back as the fields dict.

Tuples are msgpack arrays and read back as lists (msgpack's norm). Sets are refused rather than
turned into lists: a set that came back as a list would change what the workflow code compares.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgpack
from pydantic import BaseModel

from ..errors import CorruptRecordError, PayloadError

MAX_VALUE_BYTES = 1 << 20
MAX_RESULT_BYTES = 256 << 20
"""A step result may be this big: over MAX_VALUE_BYTES it is kept in a blob file (blobs.py)."""
_PREVIEW = 200
_EXT_DATETIME = 1
_EXT_MODEL = 2
_EXT_RECORD = 3
_SUPPORTED = (
    "None, bool, int (64-bit), float, str, bytes, list, tuple (read back as a list), dict (str or "
    "int keys), datetime, pydantic models"
)


_MODELS: dict[str, type[BaseModel]] = {}
_RECORD_TYPES: dict[type, tuple[str, Callable[[Any], dict[str, Any]]]] = {}
_RECORD_TAGS: dict[str, Callable[[dict[str, Any]], Any]] = {}


def register_record_type(
    tag: str,
    cls: type,
    to_fields: Callable[[Any], dict[str, Any]],
    from_fields: Callable[[dict[str, Any]], Any],
) -> None:
    """Make instances of `cls` storable: written as `tag` and `to_fields(obj)` (user values, so
    nested datetimes and models keep their types), read back as `from_fields(fields)`."""
    _RECORD_TYPES[cls] = (tag, to_fields)
    _RECORD_TAGS[tag] = from_fields


def supported_types() -> str:
    """Every kind of value a payload, param, step result or output may hold (for messages)."""
    names = sorted(cls.__name__ for cls in _RECORD_TYPES)
    return _SUPPORTED + "".join(f", {name}" for name in names)


def register_models(names: dict[str, Any]) -> None:
    """Remember the pydantic model classes among `names` (e.g. a workflow module's globals), so a
    stored model decodes to its class even where that module cannot be imported."""
    for obj in list(names.values()):
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
            _MODELS[_path(obj)] = obj


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return msgpack.ExtType(_EXT_DATETIME, obj.isoformat().encode())
    if isinstance(obj, BaseModel):
        cls = type(obj)
        _MODELS.setdefault(_path(cls), cls)
        body = [_path(cls), obj.model_dump(mode="json")]
        return msgpack.ExtType(_EXT_MODEL, msgpack.packb(body))
    record_type = _RECORD_TYPES.get(type(obj))
    if record_type is not None:
        tag, to_fields = record_type
        return msgpack.ExtType(_EXT_RECORD, _pack_value([tag, to_fields(obj)]))
    if isinstance(obj, (set, frozenset)):
        raise TypeError(
            f"a {type(obj).__name__} is not stored (it would read back as a list); use a list, "
            "e.g. sorted(...)"
        )
    raise TypeError(f"{type(obj).__name__} is not serializable")


def _pack_value(value: Any) -> bytes:
    raw: bytes = msgpack.packb(value, default=_default, use_bin_type=True, datetime=False)
    return raw


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_DATETIME:
        return datetime.fromisoformat(data.decode())
    if code == _EXT_MODEL:
        path, body = msgpack.unpackb(data)
        cls = _loaded_model_class(path)
        return cls.model_validate(body) if cls is not None else body
    if code == _EXT_RECORD:
        tag, fields = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
        restore = _RECORD_TAGS.get(tag)
        return restore(fields) if restore is not None else fields
    return msgpack.ExtType(code, data)


def _loaded_model_class(path: str) -> type[BaseModel] | None:
    if path in _MODELS:
        return _MODELS[path]
    module_name, _, qualname = path.partition(":")
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) and issubclass(obj, BaseModel) else None


def encode(value: Any, what: str = "value", limit: int = MAX_VALUE_BYTES) -> bytes:
    """Encode a user value, or raise PayloadError naming `what` and the rule it broke."""
    return encode_read_back(value, what, limit)[0]


def encode_read_back(
    value: Any, what: str = "value", limit: int = MAX_VALUE_BYTES
) -> tuple[bytes, Any]:
    """Encode a user value and return it as it will read back from storage: what a replay will
    see, so the first run can return the same thing without decoding it again. Errors name the
    value's type and size, never its content (it may be personal data or a secret)."""
    kind = type(value).__name__
    try:
        raw = _pack_value(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(
            f"{what} ({kind}) is not serializable: {_preview(exc)}; allowed are "
            f"{supported_types()}",
            what=what,
        ) from None
    except RecursionError:
        raise PayloadError(
            f"{what} ({kind}) is nested too deeply to serialize", what=what
        ) from None
    if len(raw) > limit:
        raise PayloadError(
            f"{what} ({kind}) is {len(raw)} bytes serialized; the limit is {limit} bytes "
            f"({limit / (1 << 20):g} MiB)",
            what=what,
            size=len(raw),
        )
    try:
        back = msgpack.unpackb(raw, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except Exception as exc:  # e.g. tuple keys: stored as lists, which cannot key a dict
        raise PayloadError(
            f"{what} ({kind}, {len(raw)} bytes) cannot be stored so that it reads back "
            f"({type(exc).__name__}: {_preview(exc)}); use str or int dict keys and plain data",
            what=what,
        ) from None
    return raw, back


def _preview(exc: BaseException) -> str:
    """A library's error text, cut short: it may quote part of the value."""
    text = str(exc)
    return text if len(text) <= _PREVIEW else text[:_PREVIEW] + "..."


def decode(raw: bytes) -> Any:
    try:
        return msgpack.unpackb(raw, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except Exception as exc:
        raise CorruptRecordError(f"cannot decode stored value: {exc}") from None


def pack(record: dict[str, Any]) -> bytes:
    """Encode an internal record (plain msgpack; records hold no user objects)."""
    raw: bytes = msgpack.packb(record, use_bin_type=True)
    return raw


def unpack(raw: bytes, what: str) -> dict[str, Any]:
    try:
        record = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as exc:
        raise CorruptRecordError(f"{what} is corrupt: {exc}", what=what) from None
    if not isinstance(record, dict):
        raise CorruptRecordError(f"{what} is corrupt: not a record", what=what)
    return record
