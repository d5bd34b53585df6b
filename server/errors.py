"""Errors as JSON `{code, message}` with the HTTP status a client can act on (raydo errors by
the table in raydo/error_codes.py, which the CLI's exit codes come from too).

404 not_found        unknown workflow, instance, step or route
409 invalid_state    the operation is not allowed in the instance's status
409 already_exists   an instance with that id exists
422 invalid_input    bad input: the message names the field and the rule
500 failed           anything else (storage trouble); the message says what
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ..error_codes import code_of
from ..errors import RaydoError

_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def describe_validation(errors: list[Any]) -> str:
    """The first problem, as 'where: rule' (e.g. "body.id: String should have at most 100
    characters")."""
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    rule = str(first.get("msg", "invalid"))
    detail = first.get("ctx", {}).get("error") if isinstance(first.get("ctx"), dict) else None
    if detail is not None and first.get("type") == "json_invalid":
        rule = f"{rule} ({detail})"
    return f"{where}: {rule.removeprefix('Value error, ')}"


def install_error_handlers(app: FastAPI) -> None:
    async def on_raydo(_: Request, exc: Exception) -> JSONResponse:
        found = code_of(exc)  # the table the CLI's exit codes come from too
        return error(found.http, found.code, str(exc))

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, (RequestValidationError, ValidationError))
        return error(422, "invalid_input", describe_validation(list(exc.errors())))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error(exc.status_code, code, str(exc.detail))

    async def on_other(_: Request, exc: Exception) -> JSONResponse:
        return error(500, "internal", f"{type(exc).__name__}: {exc}")

    app.add_exception_handler(RaydoError, on_raydo)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_other)
