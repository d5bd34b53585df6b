"""One table (raydo/error_codes.py) gives a raydo error its CLI exit code and its HTTP status:
checked through the CLI's `classify` and the handler the server installs (the HTTP answers of a
real server: tests/server/test_http.py; the exit codes of the real CLI: tests/cli)."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI

from raydo import errors
from raydo.cli.exits import Exit, classify
from raydo.server.errors import install_error_handlers

CASES = [
    (errors.InvalidInputError("bad"), Exit.USAGE, 422, "invalid_input"),
    (errors.PayloadError("big", what="params", size=9), Exit.USAGE, 422, "invalid_input"),
    (errors.InstanceNotFoundError("gone", id="a"), Exit.NOT_FOUND, 404, "not_found"),
    (errors.WorkflowNotFoundError("gone", name="w"), Exit.NOT_FOUND, 404, "not_found"),
    (
        errors.InvalidStateError("no", id="a", status="complete"),
        Exit.INVALID_STATE,
        409,
        "invalid_state",
    ),
    (errors.InstanceExistsError("dup", id="a"), Exit.EXISTS, 409, "already_exists"),
    (errors.StorageFullError("full"), Exit.FAILED, 500, "failed"),
]


@pytest.mark.parametrize(("exc", "exit_code", "status", "code"), CASES)
def test_cli_and_http_read_one_table(
    exc: Exception, exit_code: Exit, status: int, code: str
) -> None:
    assert classify(exc) == (exit_code, code)
    app = FastAPI()
    install_error_handlers(app)
    handler = app.exception_handlers[errors.RaydoError]  # what the server answers a raydo error
    reply = asyncio.run(handler(None, exc))  # type: ignore[arg-type]
    body = json.loads(bytes(reply.body))
    assert (reply.status_code, body) == (status, {"code": code, "message": str(exc)})
