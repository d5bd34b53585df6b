"""The instance's event stream over HTTP, as server-sent events, and its history in the details.

    GET /api/workflows/{name}/instances/{id}/stream   ?cursor=&types=a,b   (or Last-Event-ID)

Each SSE message is one event: `id:` its cursor, `event:` its type, `data:` the event as JSON.
A client that reconnects with `Last-Event-ID` (or `?cursor=`) resumes right after that event: no
gap, no repeat. After the terminal event (or when the instance is deleted meanwhile) the server
sends `event: end` and closes. While nothing happens a comment line keeps the connection (and
proxies) awake. Auth is the Guard's, as for every other route; a browser page reads it with
fetch() so it can send the token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from ..bindings import events
from ..bindings.config import Project
from ..bindings.jsonable import jsonable
from ..bindings.workflow import WorkflowInstance
from ..errors import InstanceNotFoundError

KEEPALIVE = b": keepalive\n\n"


def add_stream_route(r: APIRouter, project: Project) -> None:
    @r.get("/{name}/instances/{iid}/stream", response_class=StreamingResponse)
    async def stream_instance(
        name: str,
        iid: str,
        cursor: str | None = None,
        types: Annotated[
            str | None, Query(description="event types or prefixes, comma-separated")
        ] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        """The instance's events as server-sent events, from the cursor, live until its end."""
        after = events.check_cursor(last_event_id if last_event_id is not None else cursor)
        wanted = events.check_filter(types.split(",") if types is not None else None)
        inst = await project.workflow(name).get(iid)  # 404 before the stream starts
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(
            _messages(inst, after, wanted), media_type="text/event-stream", headers=headers
        )


async def _messages(
    inst: WorkflowInstance, after: int | None, wanted: frozenset[str] | None
) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    while True:
        try:
            batch = await events.poll_once(inst.workflow.actor, inst.id, after, wanted, 10.0)
        except InstanceNotFoundError:  # deleted while followed: nothing more will come
            yield b'event: end\ndata: {"deleted":true}\n\n'
            return
        for raw in batch.events:
            yield sse(events.to_event(raw))
        after = batch.cursor
        if batch.ended:
            yield b"event: end\ndata: {}\n\n"
            return
        if not batch.events:
            yield KEEPALIVE


def sse(ev: events.InstanceEvent) -> bytes:
    body = json.dumps(jsonable(ev.model_dump(exclude_none=True)), separators=(",", ":"))
    return f"id: {ev.cursor}\nevent: {ev.type}\ndata: {body}\n\n".encode()


def attempts_json(found: list[events.InstanceEvent]) -> list[dict[str, Any]]:
    """Every attempt of every do-step, for the instance details (and the dashboard timeline)."""
    return [jsonable(a.model_dump()) for a in events.attempts_of(found)]
