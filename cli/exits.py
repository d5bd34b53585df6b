"""Exit codes a script can rely on; raydo errors become them by the table the HTTP server uses
too (raydo/error_codes.py).

0  ok
1  the operation failed (an instance ended errored/terminated under --wait, a wait timed
   out, storage could not be used)
2  usage: bad arguments, bad input (InvalidInputError), or a bad project config
3  not found: the instance or the workflow does not exist
4  invalid state: the operation is not allowed in the instance's status
5  already exists: an instance with that id exists
"""

from __future__ import annotations

import enum
import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from ..error_codes import code_of
from ..errors import RaydoError


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    INVALID_STATE = 4
    EXISTS = 5


F = TypeVar("F", bound=Callable[..., Any])


def classify(exc: BaseException) -> tuple[Exit, str]:
    """The exit code and code name of an error (the table in raydo/error_codes.py)."""
    found = code_of(exc)
    return Exit(found.exit), found.code


def fail(message: str, code: Exit, name: str, as_json: bool) -> typer.Exit:
    """Report an error on stderr (as JSON with --json) and give the exit to raise."""
    if as_json:
        print(json.dumps({"error": {"code": name, "message": message}}), file=sys.stderr)
    else:
        from rich.markup import escape

        from .render import err

        # Escaped: messages quote user text and names like [tool.raydo] that are not markup.
        err.print(f"[bold red]error[/]: {escape(message)}", highlight=False)
    return typer.Exit(int(code))


def usage(message: str, as_json: bool) -> typer.Exit:
    return fail(message, Exit.USAGE, "invalid_input", as_json)


def handled(fn: F) -> F:
    """Turn raydo errors raised by a command into a message and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except RaydoError as exc:
            code, name = classify(exc)
            raise fail(str(exc), code, name, as_json) from None

    return wrapper  # type: ignore[return-value]
