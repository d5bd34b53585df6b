"""A real uvicorn server on a free loopback port, in a thread of the test process, serving a
project (raydo.toml + flows module) on the session's Ray. Shared by the HTTP and browser tests."""

from __future__ import annotations

import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servekit import Served, until

FLOWS = '''
import asyncio
import raydo


class Greet(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        name = await step.do("greet", lambda: event.payload.get("name", "you"))
        await step.sleep("nap", event.payload.get("nap", 0.05))
        return {"hello": name}


class Approve(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        await step.do("prepare", lambda: 1)
        ev = await step.wait_for_event("approval", type="approved", timeout="1 hour")
        return {"by": ev.payload}


class Pipeline(raydo.WorkflowEntrypoint):
    """A few seconds of steps with a retry and sleeps: something to watch on a timeline."""

    async def run(self, event, step):
        pace = event.payload.get("pace", 0.6)

        async def work(ctx):
            for k in range(4):
                await asyncio.sleep(pace / 4)
                ctx.emit({"percent": 25 * (k + 1), "rows": 300 * (k + 1)})
            return {"rows": 1200, "attempt": ctx.attempt}

        def flaky(ctx):
            if ctx.attempt < 2:
                raise ConnectionError("upstream busy")
            return "ok"

        secret = event.payload.get("secret", False)  # what "extract" emits is then redacted
        rows = await step.do("extract", work, sensitive=secret)
        await step.do("call upstream", flaky, retries={"limit": 3, "delay": pace})
        await step.sleep("cool down", pace)
        await step.do("transform", work)
        await step.do("load", work)
        return {"loaded": rows["rows"]}
'''
CONFIG = """
storage = "store"
[workflows.greet]
class = "srvflows:Greet"
[workflows.approve]
class = "srvflows:Approve"
concurrency = 2
[workflows.pipeline]
class = "srvflows:Pipeline"
concurrency = 2
"""


@pytest.fixture
def served(ray_session: None, tmp_path: Path) -> Iterator[Served]:
    import uvicorn

    import raydo
    from raydo.bindings.config import load_project
    from raydo.server.app import create_app
    from raydo.server.run import bind

    (tmp_path / "srvflows.py").write_text(textwrap.dedent(FLOWS))
    (tmp_path / "raydo.toml").write_text(CONFIG)
    project = load_project(tmp_path / "raydo.toml")
    raydo.init(project.config.storage_path)
    servers: list[tuple[Any, threading.Thread]] = []

    def start(token: str | None) -> str:
        sock = bind("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(create_app(project, token), log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        until(lambda: server.started, "the server to start")
        servers.append((server, thread))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield Served(start(None), project, start)
    for server, thread in servers:
        server.should_exit = True
        thread.join(30)
    raydo.shutdown(kill_actors=True)
    sys.modules.pop("srvflows", None)
