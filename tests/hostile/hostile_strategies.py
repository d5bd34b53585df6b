"""Hypothesis strategies for hostile inputs, and the oracles that say what is allowed.

The oracles restate the documented rules (README "Limits") independently of raydo's code, so a
test fails when the code and the documented rule disagree.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

# -- the documented rules ----------------------------------------------------------------------

SHOW_LIMIT = 200  # error messages quote at most this many characters of a bad value (SECURITY.md)


def quotes(text: str, value: Any) -> bool:
    """An error message names `value`: its repr, or the first SHOW_LIMIT characters of a longer
    one (values may be secrets; messages end up in logs)."""
    shown = repr(value)
    if len(shown) > SHOW_LIMIT:
        return shown[:SHOW_LIMIT] in text and len(text) < len(shown) + 400
    return shown in text or (isinstance(value, str) and value in text)


ID_FIRST = string.ascii_letters + string.digits + "_"
ID_REST = ID_FIRST + "-"
ID_RULE = "^[a-zA-Z0-9_][a-zA-Z0-9-_]*$"
MAX_ID = 100
MAX_STEP_NAME = 256
MAX_SLEEP = 365 * 86400.0
MAX_BYTES = 1 << 20
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
BACKOFFS = ("constant", "linear", "exponential")
RETRY_KEYS = ("limit", "delay", "backoff")
UNITS = ("second", "minute", "hour", "day", "week", "month", "year")
_DURATION = re.compile(
    r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(" + "|".join(UNITS) + r")s?\s*", flags=re.IGNORECASE
)


def valid_id(value: Any) -> bool:
    return (
        type(value) is str
        and 1 <= len(value) <= MAX_ID
        and value[0] in ID_FIRST
        and all(c in ID_REST for c in value)
    )


def valid_step_name(value: Any) -> bool:
    return (
        type(value) is str
        and 1 <= len(value) <= MAX_STEP_NAME
        and not any(unicodedata.category(c) == "Cc" for c in value)
        and not any(unicodedata.category(c) == "Cs" for c in value)
    )


def duration_text(value: Any) -> bool:
    """A string that reads as '<number> <unit>' (what the README documents)."""
    return isinstance(value, str) and _DURATION.fullmatch(value.lower()) is not None


# -- ids and event types -----------------------------------------------------------------------

_NOT_ID_CHAR = st.characters().filter(lambda c: c not in ID_REST)
_SURROGATE = st.characters(categories=["Cs"])

HOSTILE_ID_STRINGS = [
    "",
    "a/b",
    "/",
    "a\\b",
    "..",
    "../etc/passwd",
    ".",
    "a\x00b",
    "\x00",
    "abc\n",
    "abc\r\n",
    "\nabc",
    "-abc",
    "-",
    "--",
    "a b",
    " a",
    "a\t",
    "é",
    "\uff41",  # fullwidth a
    "١٢٣",  # arabic-indic digits
    "a.b",
    "a:b",
    "a\u200bb",  # zero-width space
    "a\ud800",  # lone surrogate
    "x" * (MAX_ID + 1),
    "_" * (MAX_ID + 1),
    "a" * 1000,
]

bad_id_strings = st.one_of(
    st.sampled_from(HOSTILE_ID_STRINGS),
    st.text(ID_REST, min_size=MAX_ID, max_size=MAX_ID + 200).map(lambda s: "a" + s),
    st.tuples(
        st.text(ID_REST, max_size=20),
        st.one_of(_NOT_ID_CHAR, _SURROGATE),
        st.text(ID_REST, max_size=20),
    ).map("".join),
    st.text(ID_REST, max_size=20).map(lambda s: "-" + s),
    st.text(),
).filter(lambda v: not valid_id(v))


class Custom:
    """A user class raydo cannot store."""

    def __init__(self, x: int = 1) -> None:
        self.x = x

    def __repr__(self) -> str:
        return f"Custom({self.x})"


bad_id_objects = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.tuples(st.text(ID_REST, min_size=1, max_size=3)),
    st.builds(Custom, st.integers()),
    st.just(b"abc"),
)

bad_ids = st.one_of(bad_id_strings, bad_id_objects)
"""Anything but None (None means 'pick a uuid' for create) that breaks the id rule."""

valid_ids = st.tuples(st.sampled_from(ID_FIRST), st.text(ID_REST, max_size=MAX_ID - 1)).map("".join)

# -- step names --------------------------------------------------------------------------------

_CONTROL = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x1F),
    st.characters(min_codepoint=0x7F, max_codepoint=0x9F),
)
_NAME_CHARS = st.characters(exclude_categories=["Cc", "Cs"])

bad_step_names = st.one_of(
    st.just(""),
    st.sampled_from(["a\n", "\x00", "x\x7f", "tab\there", "nl\nnl", "\x85next-line", "cr\r"]),
    st.text(_NAME_CHARS, min_size=MAX_STEP_NAME + 1, max_size=MAX_STEP_NAME + 100),
    st.tuples(st.text(_NAME_CHARS, max_size=10), _CONTROL, st.text(_NAME_CHARS, max_size=10)).map(
        "".join
    ),
    st.integers(),
    st.none(),
    st.binary(max_size=8),
    st.lists(st.text(max_size=3), max_size=2),
    st.floats(),
    st.builds(Custom, st.integers()),
).filter(lambda v: not valid_step_name(v) and not _has_surrogate(v))

valid_step_names = st.text(_NAME_CHARS, min_size=1, max_size=MAX_STEP_NAME)


def _has_surrogate(value: Any) -> bool:
    return isinstance(value, str) and any(unicodedata.category(c) == "Cs" for c in value)


# -- durations ---------------------------------------------------------------------------------

GARBAGE_DURATIONS = [
    "",
    " ",
    "seconds",
    "10",
    "10 fortnights",
    "10 secs",
    "10 s",
    "-5 seconds",
    "+5 seconds",
    "1e3 seconds",
    "inf seconds",
    "nan seconds",
    "0x10 seconds",
    "10 seconds ago",
    "ten seconds",
    "10 seconds 5 minutes",
    "1,5 hours",
    "1.5.2 hours",
    "10 secondss",
    "10\x00seconds",
    "5 minutes\x00",
]

garbage_duration_strings = st.one_of(
    st.sampled_from(GARBAGE_DURATIONS),
    st.text(max_size=30),
    st.tuples(
        st.sampled_from(["1", "2.5", ".5", "10"]),
        st.sampled_from([" ", ""]),
        st.text(string.ascii_lowercase, min_size=1, max_size=10),
    ).map("".join),
).filter(lambda s: not duration_text(s))

wrong_type_durations = st.one_of(
    st.booleans(),
    st.none(),
    st.builds(Custom, st.integers()),
    st.lists(st.integers(), max_size=2),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.fractions(),
    st.complex_numbers(max_magnitude=1e6),
    st.dates(),
    st.binary(max_size=8),
)

negative_durations = st.one_of(
    st.floats(max_value=-1e-9, allow_infinity=True, allow_nan=False),
    st.integers(max_value=-1, min_value=-(10**300)),
    st.timedeltas(max_value=timedelta(microseconds=-1)),
)

nonfinite_durations = st.sampled_from([math.nan, math.inf, -math.inf, float("-nan")])

bad_durations = st.one_of(
    garbage_duration_strings, wrong_type_durations, negative_durations, nonfinite_durations
)
"""Never a duration at all (whatever the bounds)."""

too_long_sleeps = st.one_of(
    st.floats(min_value=MAX_SLEEP, exclude_min=True, max_value=1e300),
    st.integers(min_value=int(MAX_SLEEP) + 1, max_value=10**300),
    st.sampled_from(["366 days", "1 year", "53 weeks", "8761 hours", "13 months", "2 years"]),
    st.timedeltas(min_value=timedelta(days=365, microseconds=1)),
)

# -- payloads ----------------------------------------------------------------------------------


def nested_lists(depth: int) -> list[Any]:
    root: list[Any] = []
    cur = root
    for _ in range(depth):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    return root


def nested_dicts(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    cur = root
    for _ in range(depth):
        nxt: dict[str, Any] = {}
        cur["k"] = nxt
        cur = nxt
    return root


def _self_list() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


_unstorable_leaf = st.one_of(
    st.builds(object),
    st.builds(Custom, st.integers()),
    st.integers(min_value=INT_MAX + 1, max_value=10**40),
    st.integers(max_value=INT_MIN - 1, min_value=-(10**40)),
    st.complex_numbers(max_magnitude=1e6),
    st.dates(),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.fractions(),
    st.uuids(),
    st.just(len),
    st.just(lambda: 1),
    st.just(Custom),
    st.builds(lambda: iter([1, 2])),
    st.builds(lambda: (i for i in range(2))),
    st.tuples(st.text(max_size=3), _SURROGATE, st.text(max_size=3)).map("".join),
)

unstorable = st.one_of(
    _unstorable_leaf,
    _unstorable_leaf.map(lambda v: [1, "a", v]),
    _unstorable_leaf.map(lambda v: {"ok": 1, "bad": v}),
    _unstorable_leaf.map(lambda v: {"deep": [{"deeper": [v]}]}),
    st.sampled_from(
        [
            "too deep lists",
            "too deep dicts",
            "self-referencing",
            "str over 1 MiB",
            "bytes over 1 MiB",
            "list over 1 MiB",
            "bytes 1 MiB with header",
        ]
    ).map(lambda label: _BIG[label]()),
)
"""Values that must be refused with PayloadError: not msgpack data, or over 1 MiB serialized."""

_BIG = {
    "too deep lists": lambda: nested_lists(10_000),
    "too deep dicts": lambda: nested_dicts(10_000),
    "self-referencing": _self_list,
    "str over 1 MiB": lambda: "x" * (MAX_BYTES + 1),
    "bytes over 1 MiB": lambda: b"\x00" * (MAX_BYTES + 1),
    "list over 1 MiB": lambda: ["abcdefgh"] * (MAX_BYTES // 8),
    # bin32 has a 5-byte header: 1 MiB - 4 bytes of content is 1 byte too many
    "bytes 1 MiB with header": lambda: b"\x01" * (MAX_BYTES - 4),
}

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=30),
)

storable = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.integers(min_value=INT_MIN, max_value=INT_MAX)),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=30,
)
"""msgpack data as the README lists it; it must round-trip exactly (NaN == NaN here)."""

storable_edge_cases = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    INT_MAX,
    INT_MIN,
    2**63,
    "",
    b"",
    "é\u2028\x00\U0001f600",
    {"nan": [math.nan, {"inf": math.inf}]},
    nested_lists(100),
    nested_dicts(100),
    b"\x01" * (MAX_BYTES - 5),  # exactly 1 MiB serialized
    datetime(2024, 2, 29, 12, 30, tzinfo=UTC),
    datetime(2024, 2, 29, 12, 30, 1, 5),
    {1: "int keys", 2: ["x"]},
]


def same(a: Any, b: Any) -> bool:
    """Structural equality where NaN equals NaN and types must match (bool is not int)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# -- retries ------------------------------------------------------------------------------------

_bad_limits = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=10_001),
    st.booleans(),
    st.floats(),
    st.text(max_size=5),
    st.none(),
    st.decimals(allow_nan=False),
)


def _with_unknown_keys(extra: dict[Any, int]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    retries = {"limit": 1, **extra}
    return retries, retries


bad_retries = st.one_of(
    # (retries argument, the culprit whose repr must appear in the message)
    _bad_limits.map(lambda v: ({"limit": v}, v)),
    st.one_of(
        st.text(max_size=15).filter(lambda s: s not in BACKOFFS),
        st.sampled_from(["Exponential", "LINEAR", " constant", "fibonacci", "exponential "]),
        st.integers(),
        st.none(),
        st.lists(st.sampled_from(BACKOFFS), min_size=1, max_size=2),
    ).map(lambda v: ({"backoff": v}, v)),
    st.dictionaries(
        st.one_of(st.text(max_size=8).filter(lambda k: k not in RETRY_KEYS), st.integers()),
        st.integers(),
        min_size=1,
        max_size=3,
    ).map(_with_unknown_keys),
    st.one_of(
        st.integers(),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
        st.tuples(st.integers()),
        st.booleans(),
        st.floats(),
        st.builds(Custom, st.integers()),
    ).map(lambda v: (v, v)),
    bad_durations.map(lambda v: ({"delay": v}, v)),
)

bad_step_timeouts = st.one_of(
    bad_durations.filter(lambda v: v is not None),
    st.sampled_from([0, 0.0, "0 seconds", timedelta(0), -0.0]),
)

# -- sleep_until --------------------------------------------------------------------------------


def past_times(now: float) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.floats(min_value=1e-3, max_value=now).map(lambda d: now - d),
        st.integers(min_value=1, max_value=int(now)).map(lambda d: int(now) - d),
        st.floats(min_value=1e-3, max_value=1e9).map(
            lambda d: datetime.fromtimestamp(now - d, tz=UTC)
        ),
        st.floats(min_value=1, max_value=1e9).map(
            lambda d: datetime.fromtimestamp(now - d, tz=UTC).replace(tzinfo=None)
        ),
        st.just(datetime(1970, 1, 1, tzinfo=UTC)),
        st.just(0),
        st.just(-1.0),
        st.just(-math.inf),
    )


def far_times(now: float) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.floats(min_value=MAX_SLEEP + 1, max_value=1e11).map(lambda d: now + d),
        st.just(math.inf),
        st.just(datetime.max.replace(tzinfo=UTC)),
        st.just(datetime.fromtimestamp(now + MAX_SLEEP + 3600, tz=UTC)),
    )


wrong_type_times = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=10),
    st.dates().filter(lambda d: not isinstance(d, datetime)),
    st.timedeltas(),
    st.builds(Custom, st.integers()),
    st.lists(st.integers(), max_size=2),
    st.just(date(2030, 1, 1)),
    st.just("2030-01-01T00:00:00Z"),
)
