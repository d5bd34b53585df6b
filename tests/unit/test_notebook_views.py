"""What a notebook shows for a status, an instance handle and a workflow binding (HTML), and how
wait() chooses its progress display; through an in-process LocalEnv (no Ray)."""

from __future__ import annotations

from typing import Any

import pytest

from raydo import InvalidInputError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from raydo.bindings.display import ProgressPrinter, choose_progress, in_notebook
from raydo.errors import ClusterError
from raydo.runtime.report import unavailable_html
from raydo.testing import LocalEnv


class Two(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        a = await step.do("first <b>", lambda: {"x": "<script>"})
        if event.payload == "fail":
            raise ValueError("no & never")
        return await step.do("second", lambda: a["x"] * 2)


def test_status_instance_and_workflow_render_as_escaped_html(raydo_test_env: LocalEnv) -> None:
    wf = raydo_test_env.workflow(Two, name="two")
    ok = wf.create(id="ok").result()
    bad = wf.create(id="bad", params="fail").result()
    st = ok.wait(steps=True).result()
    assert bad.wait().result().status == "errored"

    page = st._repr_html_()
    assert "<code>ok</code>" in page and "<td>first &lt;b&gt;</td>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("<tr><td>") == 2  # one row per step

    handle = ok._repr_html_()
    assert "<td>second</td>" in handle and "complete" in handle

    overview = wf._repr_html_()
    assert "1 errored, 1 complete" in overview  # in the order of the nine statuses
    assert "<td>bad</td>" in overview and "ValueError: no &amp; never" in overview


def test_an_unreadable_status_renders_as_unavailable() -> None:
    page = unavailable_html("instance a of workflow 'w'", ClusterError("gone <now>", cause="X"))
    assert "status unavailable: ClusterError: gone &lt;now&gt;" in page


def test_wait_progress_is_chosen_by_where_it_runs() -> None:
    assert not in_notebook()  # pytest is no Jupyter kernel
    assert choose_progress(None) is None and choose_progress(False) is None
    assert choose_progress(None, auto=False) is None
    assert isinstance(choose_progress(True), ProgressPrinter)
    assert isinstance(choose_progress(print), ProgressPrinter)
    with pytest.raises(InvalidInputError, match="'sometimes'"):
        choose_progress("sometimes")
