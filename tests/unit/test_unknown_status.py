"""An instance homed on a node that cannot be reached reports status `unknown` with what is
known: no timestamps (None, not the epoch), and every surface renders that cleanly."""

from __future__ import annotations

import json

from rich.console import Console

from raydo.bindings.jsonable import jsonable
from raydo.bindings.workflow import to_status
from raydo.cli import render
from raydo.runtime.model import InstanceStatus
from raydo.runtime.namespace import Snapshot
from raydo.runtime.report import InstanceDescription, status_html
from raydo.server.app import _details
from raydo.storage.records import InstanceRecord


def _unknown() -> Snapshot:
    rec = InstanceRecord("order-7", "checkout", InstanceStatus.UNKNOWN)
    rec.error = {"name": "NodeUnavailableError", "message": "node node-ab12 is down"}
    return Snapshot(rec, None, [], False)


def test_an_unknown_status_has_no_creation_time() -> None:
    st = to_status(_unknown())
    assert st.status is InstanceStatus.UNKNOWN
    assert st.created_at is None and st.started_at is None and st.ended_at is None
    assert st.error is not None and st.error.name == "NodeUnavailableError"


def test_every_surface_renders_an_unknown_status() -> None:
    st = to_status(_unknown())
    console = Console(width=160, record=True)
    console.print(render.instances_table([st]))
    console.print(render.instance_header(st, None, 100))
    text = console.export_text()
    assert "order-7" in text and "1970" not in text
    described = str(InstanceDescription(st))
    assert "unknown" in described and "1970" not in described
    assert "order-7" in status_html(st) and "1970" not in status_html(st)
    body = json.loads(json.dumps(jsonable(_details(st, None))))
    assert body["created_on"] is None and body["status"] == "unknown"
