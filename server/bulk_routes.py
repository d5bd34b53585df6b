"""Routes that act on many instances at once (bindings/bulk.py), beside app.py's:

    DELETE /api/workflows/{name}                              every instance, with all its state
    POST   /api/workflows/{name}/instances/batch/terminate    {status?}: every unfinished one

Deleting a workflow deletes its instances; its declaration (the project config) and its cron
schedules stay, as with `raydo workflows delete`.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..bindings import bulk
from ..bindings.config import Project
from .app import StrictRoute, ok


class TerminateAllBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str | None = Field(
        default=None, description="Only instances in this unfinished status; default every one."
    )


def bulk_routes(project: Project) -> APIRouter:
    r = APIRouter(prefix="/api/workflows", route_class=StrictRoute)

    @r.delete("/{name}")
    async def delete_workflow(name: str) -> JSONResponse:
        wf = project.workflow(name)  # 404 for an undeclared name, before anything is deleted
        deleted = await run_in_threadpool(bulk.delete_all, wf)
        return ok({"workflow": name, "deleted": len(deleted)})

    @r.post("/{name}/instances/batch/terminate")
    async def terminate_all(name: str, body: TerminateAllBody | None = None) -> JSONResponse:
        status = None if body is None else body.status
        bulk.check_terminable(status)  # 422 naming the status, before anything is touched
        wf = project.workflow(name)
        done = await run_in_threadpool(bulk.terminate_all, wf, status)
        return ok({"workflow": name, "terminated": done})

    return r
