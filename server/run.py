"""`raydo serve`: start raydo for the declared workflows, then the HTTP server, in one process."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

import uvicorn

from ..bindings import client
from ..bindings.config import load_project
from ..cli.serving import remove_advertised, write_advertised
from .app import create_app


class ServeError(Exception):
    """`raydo serve` refused to start (e.g. a public address without a token)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """Bind first, so the real port is known (port 0 = any free port) before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it every response waits ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)  # connections made as soon as the URL is printed wait instead of failing
    return sock


def run_server(
    config: Path | None, address: str | None, host: str, port: int, token: str | None
) -> None:
    if not is_loopback(host) and not token:
        raise ServeError(
            f"binding {host!r} (not loopback) needs a token: pass --token or set RAYDO_TOKEN"
        )
    project = load_project(config)
    storage = project.config.storage_path
    ctx = client.init(storage, address=address)
    for name in project.names:  # start each namespace now: it recovers unfinished instances
        project.workflow(name).counts().result()
    sock = bind(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    write_advertised(storage, _advertised(ctx.started_ray, url))
    print(f"raydo serve: {url}  (dashboard /, API /api/workflows, storage {storage})", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(project, token), log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        remove_advertised(storage)
        client.shutdown()


def _advertised(started_ray: bool, url: str) -> dict[str, Any]:
    auth = os.environ.get("RAY_AUTH_MODE") or ("token" if started_ray else None)
    return {"ray_address": client.cluster_address(), "auth_mode": auth, "url": url}
