"""The HTTP API, shaped like Cloudflare's Workflows REST API, plus the dashboard's files.

    GET    /api/workflows                                   workflows with counts per status
    GET    /api/workflows/{name}                            one workflow
    GET    /api/workflows/{name}/instances                  ?status=&limit=&cursor=&direction=
    POST   /api/workflows/{name}/instances                  {id?, params?}
    POST   /api/workflows/{name}/instances/batch            [{id?, params?}, ...]
    POST   /api/workflows/{name}/instances/batch/delete     {ids: [...]}
    GET    /api/workflows/{name}/instances/{id}             details with params and steps
    GET    /api/workflows/{name}/instances/{id}/step        ?name=&count=  one step, full output
    PATCH  /api/workflows/{name}/instances/{id}/status      {action: pause|resume|terminate|restart,
                                                             from?: {name, count?}}
    POST   /api/workflows/{name}/instances/{id}/events/{t}  body = the payload (JSON)
    DELETE /api/workflows/{name}/instances/{id}

Every route reaches instances through the bindings a script holds (the project's). Success is
{"success": true, "result": ...}; an error is {"code", "message"} with 404 (unknown workflow or
instance), 409 (invalid state, id taken), 422 (bad input, naming the field and the rule).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException

from ..bindings.config import Project
from ..bindings.jsonable import jsonable
from ..bindings.workflow import MAX_BATCH, Workflow, WorkflowInstance
from ..errors import InvalidInputError
from ..runtime.listing import DEFAULT_LIMIT, MAX_LIMIT, parse_time
from ..runtime.model import StatusInfo, StepInfo
from ..runtime.rules import check_event_type
from .errors import install_error_handlers
from .guard import Guard

STATIC = Path(__file__).parent / "static"
ANY_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "description": "The event payload: any JSON (empty body = null).",
        "content": {"application/json": {"schema": {}}},
    }
}


class StrictJSONRequest(Request):
    """JSON bodies parsed strictly: NaN and Infinity are not JSON, and nesting is bounded."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_loads(await self.body())
        return self._json


def strict_loads(raw: bytes) -> Any:
    def refuse(token: str) -> Any:
        raise json.JSONDecodeError(f"{token} is not JSON", token, 0)

    try:
        return json.loads(raw, parse_constant=refuse)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"not UTF-8 ({exc.reason})", "", exc.start) from None


class StrictRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, description="Instance id; default a uuid4.")
    params: Any = Field(default=None, description="Any JSON: the event payload of run().")


class FromStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    count: int = Field(default=1, ge=1)


class StatusBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    action: Literal["pause", "resume", "terminate", "restart"] = Field(
        description="Also accepted as 'status' (Cloudflare's name for it)."
    )
    from_: FromStep | None = Field(default=None, alias="from")

    @model_validator(mode="before")
    @classmethod
    def _cloudflare_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "status" in data and "action" not in data:
            data = {("action" if k == "status" else k): v for k, v in data.items()}
        return data


class DeleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(max_length=MAX_BATCH)


def ok(result: Any, status_code: int = 200, **info: Any) -> JSONResponse:
    body: dict[str, Any] = {"success": True, "result": jsonable(result)}
    if info:
        body["result_info"] = jsonable(info)
    return JSONResponse(body, status_code=status_code)


def create_app(project: Project, token: str | None = None) -> Any:
    """The ASGI app: the API and dashboard for `project`, behind the Guard."""
    api = FastAPI(
        title="raydo",
        version="0.1.0",
        description="Durable workflows on Ray: Cloudflare Workflows' REST API shape.",
        docs_url="/docs",
        redoc_url=None,
    )
    api.router.route_class = StrictRoute
    install_error_handlers(api)
    api.include_router(_routes(project))
    if STATIC.is_dir():
        api.mount("/static", StaticFiles(directory=STATIC), name="static")

    @api.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        index = STATIC / "index.html"
        if not index.is_file():
            raise HTTPException(404, "the dashboard files are not installed")
        return FileResponse(index, headers={"cache-control": "no-cache"})

    return Guard(api, token)


def _routes(project: Project) -> APIRouter:
    r = APIRouter(prefix="/api/workflows", route_class=StrictRoute)

    @r.get("")
    async def list_workflows() -> JSONResponse:
        return ok([await _summary(project, name) for name in project.names])

    @r.get("/{name}")
    async def get_workflow(name: str) -> JSONResponse:
        return ok(await _summary(project, name))

    @r.get("/{name}/instances")
    async def list_instances(
        name: str,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: str | None = None,
        direction: Literal["asc", "desc"] = "desc",
        date_start: str | None = None,  # Cloudflare's names: created at or after / before
        date_end: str | None = None,
    ) -> JSONResponse:
        wf = project.workflow(name)
        page = await wf.list_instances(
            status=status,
            limit=limit,
            cursor=cursor,
            reverse=direction == "asc",
            created_after=parse_time(date_start, "date_start"),
            created_before=parse_time(date_end, "date_end"),
        )
        rows = [_brief(st) for st in page.instances]
        return ok(rows, cursor=page.cursor, count=len(rows), per_page=limit)

    @r.post("/{name}/instances", status_code=201)
    async def create_instance(name: str, body: CreateBody | None = None) -> JSONResponse:
        body = body or CreateBody()
        inst = await project.workflow(name).create(id=body.id, params=body.params)
        return ok({"id": inst.id, "status": "queued"}, status_code=201)

    @r.post("/{name}/instances/batch", status_code=201)
    async def create_batch(name: str, body: list[CreateBody]) -> JSONResponse:
        items = [item.model_dump(exclude_unset=True) for item in body]
        made = await project.workflow(name).create_batch(items)
        # One entry per item, in order; an item whose id existed names the existing instance
        # (the binding's create_batch contract).
        return ok([{"id": inst.id} for inst in made], status_code=201)

    @r.post("/{name}/instances/batch/delete")
    async def delete_batch(name: str, body: DeleteBody) -> JSONResponse:
        wf = project.workflow(name)
        handles = [await wf.get(iid) for iid in body.ids]  # all known before any is deleted
        for inst in handles:
            await inst.delete()
        return ok({"deleted": body.ids})

    @r.get("/{name}/instances/{iid}")
    async def get_instance(name: str, iid: str) -> JSONResponse:
        inst = await project.workflow(name).get(iid)
        st = await inst.status(steps=True)
        return ok(_details(st, await inst.params()))

    @r.get("/{name}/instances/{iid}/step")
    async def get_step(
        name: str, iid: str, step: Annotated[str, Query(alias="name")], count: int = 1
    ) -> JSONResponse:
        inst = await project.workflow(name).get(iid)
        st = await inst.status(steps=True)
        for s in st.steps:
            if (s.name, s.count) == (step, count):
                return ok(_step(s))
        raise HTTPException(404, f"instance {iid!r} has no step {step!r} #{count}")

    @r.patch("/{name}/instances/{iid}/status")
    async def change_status(name: str, iid: str, body: StatusBody) -> JSONResponse:
        inst = await project.workflow(name).get(iid)
        await _apply(inst, body)
        return ok({"id": iid, "status": (await inst.status()).status.value})

    @r.post("/{name}/instances/{iid}/events/{type_}", openapi_extra=ANY_JSON_BODY)
    async def send_event(name: str, iid: str, type_: str, request: Request) -> JSONResponse:
        check_event_type(type_)
        payload = _payload(await request.body(), request.headers.get("content-type"))
        inst = await project.workflow(name).get(iid)
        await inst.send_event(type=type_, payload=payload)
        return ok({"id": iid, "type": type_})

    @r.delete("/{name}/instances/{iid}")
    async def delete_instance(name: str, iid: str) -> JSONResponse:
        inst = await project.workflow(name).get(iid)
        await inst.delete()
        return ok({"id": iid, "deleted": True})

    return r


def _payload(raw: bytes, content_type: str | None) -> Any:
    """An event body: empty (null) or JSON, sent as JSON (a form post from a page is refused)."""
    if content_type is not None and "json" not in content_type.lower():
        raise InvalidInputError(f"content-type {content_type!r} must be application/json")
    if not raw.strip():
        return None
    try:
        return strict_loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"body: the event payload is not JSON ({exc.msg})") from None


async def _apply(inst: WorkflowInstance, body: StatusBody) -> None:
    if body.action == "restart":
        step = None if body.from_ is None else (body.from_.name, body.from_.count)
        await inst.restart(from_step=step)
    else:
        await getattr(inst, body.action)()


async def _summary(project: Project, name: str) -> dict[str, Any]:
    wf: Workflow = project.workflow(name)
    counts = await wf.counts()
    declared = project.config.workflows[name]
    return {
        "name": name,
        "class": declared.class_,
        "concurrency": declared.concurrency,
        "instances": {"total": sum(counts.values()), **counts},
    }


def _brief(st: StatusInfo) -> dict[str, Any]:
    return {
        "id": st.id,
        "status": st.status.value,
        "created_on": st.created_at,
        "start": st.started_at,
        "end": st.ended_at,
        "error": st.error.model_dump() if st.error else None,
    }


def _details(st: StatusInfo, params: Any) -> dict[str, Any]:
    return {
        **_brief(st),
        "workflow": st.workflow,
        "params": params,
        "output": st.output,
        "wake_at": st.wake_at,
        "success": None if not st.status.finished else st.status.value == "complete",
        "step_count": len(st.steps),
        "steps": [_step(s) for s in st.steps],
    }


def _step(s: StepInfo) -> dict[str, Any]:
    return {
        "name": s.name,
        "count": s.count,
        "type": s.type,
        "state": s.state,
        "start": s.started_at,
        "end": s.ended_at,
        "success": None if s.state != "done" else s.error is None,
        "attempts": s.attempts,
        "output": s.output,
        "error": s.error.model_dump() if s.error else None,
        "until": s.until,
        "event_type": s.event_type,
    }
