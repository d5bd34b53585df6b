"""examples/quickstart.ipynb, run as a user runs it: a Jupyter kernel (nbclient + ipykernel)
with its own local Ray. Top-level `await` and `.result()` both work, handles, statuses and
bindings render as HTML, and wait() redraws its progress in one output.

The notebook is committed with its outputs, so a reader on GitHub sees them; to refresh them:
    RAYDO_UPDATE_NOTEBOOK=1 .venv/bin/python -m pytest -q tests/ray/test_notebook.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ray

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


def run_notebook(nbformat: Any, nbclient: Any, cwd: Path) -> Any:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYDO_LOG")}
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute(env=env)
    return nb


def outputs_of(nb: Any, source_start: str) -> list[dict[str, Any]]:
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start))
    return list(cell.outputs)


def html_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def plain_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text") or o.get("data", {}).get("text/plain", "") for o in outputs)


def check_outputs(nb: Any) -> None:
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert errors == [], errors

    handle = html_of(outputs_of(nb, "import asyncio"))
    assert "order-1" in handle and "waiting" in handle
    for step in ("fetch", "price", "stock", "quote", "approval"):
        assert f"<td>{step}</td>" in handle, (step, handle)

    waited = outputs_of(nb, "await inst.send_event")
    progress = [o for o in waited if o.get("output_type") == "display_data"]
    assert len(progress) == 1, waited  # one output, redrawn in place
    assert "complete" in html_of(progress) and "<td>approval</td>" in html_of(progress)
    assert "'total': 37.5" in plain_of(waited) and "'approved_by': 'ana'" in plain_of(waited)

    assert "complete" in html_of(outputs_of(nb, "status"))
    sync = plain_of(outputs_of(nb, "second = quotes.create"))
    assert "'total': 1250.0" in sync and "'available': False" in sync
    refused = plain_of(outputs_of(nb, "try:"))
    assert "InvalidParamsError on field 'qty'" in refused and "'three'" in refused
    glance = html_of(outputs_of(nb, "quotes"))
    assert "2 complete" in glance and "order-2" in glance


def test_the_quickstart_notebook_runs_and_shows_its_outputs(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = run_notebook(nbformat, nbclient, tmp_path)
    check_outputs(nb)
    if os.environ.get("RAYDO_UPDATE_NOTEBOOK") == "1":
        nbformat.write(nb, NOTEBOOK)
    # What is committed is what a reader sees: the same checks hold for the saved outputs.
    check_outputs(nbformat.read(NOTEBOOK, as_version=4))
