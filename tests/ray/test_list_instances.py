"""Listing through the binding against real Ray and LMDB: pages, filter, counts, params."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import raydo
from raydo import InstanceNotFoundError, InvalidInputError, WorkflowEntrypoint

pytestmark = pytest.mark.ray


class Maybe(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        def check() -> int:
            if event.payload["fail"]:
                raise raydo.NonRetryableError("told to fail")
            return int(event.payload["n"])

        return await step.do("check", check)


def test_pages_filter_counts_and_params(raydo_env: Path) -> None:
    wf = raydo.workflow(Maybe, name="maybe")
    made = [wf.create(id=f"m{n}", params={"n": n, "fail": n % 2 == 1}).result() for n in range(7)]
    wf.wait_all(made, timeout=120).result()
    counts = wf.counts().result()
    assert (counts["complete"], counts["errored"], counts["running"]) == (4, 3, 0)

    seen, cursor = [], None
    while True:
        page = wf.list_instances(limit=3, cursor=cursor).result()
        seen += [st.id for st in page.instances]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == [f"m{n}" for n in reversed(range(7))]
    oldest = wf.list_instances(limit=2, reverse=True).result()
    assert [st.id for st in oldest.instances] == ["m0", "m1"]
    errored = wf.list_instances(status="errored").result()
    assert [st.id for st in errored.instances] == ["m5", "m3", "m1"]
    assert errored.instances[0].error is not None
    assert wf.get("m4").result().params().result() == {"n": 4, "fail": False}


def test_bad_listing_arguments_are_rejected_before_any_call(raydo_env: Path) -> None:
    wf = raydo.workflow(Maybe, name="maybe2")
    for kwargs in ({"status": "done"}, {"limit": 0}, {"cursor": "zz"}, {"reverse": "yes"}):
        with pytest.raises(InvalidInputError):
            wf.list_instances(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InstanceNotFoundError):
        raydo.WorkflowInstance(wf, "ghost").params().result()


def test_date_filters_and_every_instance(raydo_env: Path) -> None:
    wf = raydo.workflow(Maybe, name="dated")
    early = [wf.create(id=f"e{n}", params={"n": n, "fail": False}).result() for n in range(3)]
    wf.wait_all(early, timeout=120).result()
    edge = wf.get("e2").result().status().result().created_at
    late = [wf.create(id=f"l{n}", params={"n": n, "fail": n == 1}).result() for n in range(3)]
    wf.wait_all(late, timeout=120).result()
    after = wf.list_instances(created_after=edge.timestamp() + 1e-6).result()
    assert [st.id for st in after.instances] == ["l2", "l1", "l0"]
    before = wf.list_instances(created_before=edge, reverse=True).result()
    assert [st.id for st in before.instances] == ["e0", "e1", "e2"]
    errored = wf.list_instances(status="errored", created_after=edge).result()
    assert [st.id for st in errored.instances] == ["l1"]
    assert [st.id for st in wf.instances(created_before=edge).result()] == ["e0", "e1", "e2"]
    assert len(wf.instances().result()) == 6
    wf.get("e0").result().delete().result()
    counts = wf.counts().result()
    assert (counts["complete"], counts["errored"]) == (4, 1)
    with pytest.raises(InvalidInputError, match="created_after"):
        wf.list_instances(created_after="yesterday")
