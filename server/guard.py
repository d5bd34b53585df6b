"""The door of the HTTP server, as plain ASGI middleware (it acts before any route reads a body).

- With a token, every request needs `Authorization: Bearer <token>` (else 401, nothing runs),
  except GETs of the dashboard's static files, which hold no data and change nothing.
- Without a token (loopback only), the Host header must name a loopback host, so a web page on
  another origin cannot reach the API through DNS rebinding.
- A write whose Origin header names another origin (a page elsewhere) gets 403.
- A request body over `max_body` bytes gets 413 before any route sees it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 1 << 20
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = {"/", "/favicon.ico"}


class Guard:
    def __init__(self, app: ASGIApp, token: str | None, max_body: int = MAX_BODY) -> None:
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _reply(send, *refusal)
            return
        body = await _read_body(receive, self.max_body)
        if body is None:
            await _reply(send, 413, "too_large", f"request body is over {self.max_body} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        headers = _headers(scope)
        declared = headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > self.max_body:
            return 413, "too_large", f"request body is over {self.max_body} bytes"
        if _cross_site(scope, headers):
            return 403, "cross_site", "requests from pages of another origin are refused"
        if self.token is None:
            host = headers.get("host", "").rsplit(":", 1)[0]
            if host not in LOOPBACK_HOSTS:
                return 421, "bad_host", f"host {host!r} is not a loopback name; use 127.0.0.1"
            return None
        if _is_public(scope) or _authorized(headers.get("authorization", ""), self.token):
            return None
        return 401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer ...)"


def _cross_site(scope: Scope, headers: dict[str, str]) -> bool:
    """A browser names the page's origin on writes; one that is not this server is refused."""
    origin = headers.get("origin")
    if origin is None or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
        return False
    return origin.split("://", 1)[-1] != headers.get("host", "")


def _is_public(scope: Scope) -> bool:
    path = str(scope.get("path", ""))
    is_read = scope.get("method") in ("GET", "HEAD")
    return is_read and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))


def _authorized(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes `limit` (chunked bodies have no length header)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
