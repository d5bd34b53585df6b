"""What a person sees while raydo runs (issue 7, item 13): raydo's warnings, not Ray's noise.

A script and a notebook each run a workflow whose worker process dies once. Ray would print a
raylet warning, `(InstanceActor pid=...)` lines and, in a notebook, a hint about ipywidgets; raydo
shows only its own warning (and the workflow code's logged warning). RAYDO_LOG=debug shows all.
Each run starts its own local Ray in a subprocess, as a user's script does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

SCRIPT = r'''
import io, logging, os, sys, time

class Tee(io.TextIOBase):
    """Forwards to the real stream and remembers what went through (to wait for Ray's lines)."""
    def __init__(self, real):
        self.real, self.seen = real, []
    def write(self, text):
        self.seen.append(text)
        return self.real.write(text)
    def flush(self):
        self.real.flush()
    def text(self):
        return "".join(self.seen)

sys.stdout, sys.stderr = Tee(sys.stdout), Tee(sys.stderr)

import raydo

class Flow(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        def die(ctx):
            if ctx.attempt == 1:
                print("user print from a step", file=sys.stderr, flush=True)
                logging.getLogger("myapp").warning("careful: about to crash")
                os._exit(1)
            return 2
        return await step.do("die", die, retries={"limit": 2, "delay": 0.1})

raydo.init(sys.argv[1])
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("raydo").addHandler(Keep())

inst = raydo.workflow(Flow, name="flow").create(id="one").result()
print("STATUS", inst.wait(timeout=120).result().status.value, flush=True)

def wait_for(found, what):
    deadline = time.monotonic() + 60
    while not found():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)

# The workflow's own warning follows its print in the same stream: once it is here, Ray has
# delivered (or raydo dropped) the print.
wait_for(lambda: any("careful" in r for r in records), "the step's warning")
wait_for(lambda: any("worker running instance one died" in r for r in records), "the warning")
if os.environ.get("RAYDO_LOG") == "debug":
    both = lambda: sys.stdout.text() + sys.stderr.text()
    wait_for(lambda: "user print from a step" in both(), "the print")
    wait_for(lambda: "(raylet)" in both(), "the raylet line")
raydo.shutdown()
'''


def run_script(tmp_path: Path, **env_extra: str) -> str:
    script = tmp_path / "noisy.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYDO_LOG")}
    env.update(env_extra)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "storage")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "STATUS complete" in output, output
    return output


RAY_NOISE = ("(raylet)", "(InstanceActor pid=", "(NamespaceActor pid=", "(TimerActor pid=")


def test_a_script_sees_raydo_warnings_and_no_ray_noise(tmp_path: Path) -> None:
    output = run_script(tmp_path)
    for noise in (*RAY_NOISE, "user print from a step", "Started a local Ray", "Token auth"):
        assert noise not in output, (noise, output)
    assert "raydo WARNING: worker running instance one died" in output, output
    assert "raydo WARNING: myapp: careful: about to crash" in output, output


def test_raydo_log_debug_shows_everything(tmp_path: Path) -> None:
    output = run_script(tmp_path, RAYDO_LOG="debug")
    assert "(InstanceActor pid=" in output and "user print from a step" in output, output
    assert "(raylet)" in output, output
    assert "raydo WARNING: worker running instance one died" in output, output
    assert "raydo-log " not in output, output  # marked lines are always turned into records


NOTEBOOK_CELLS = [
    "import logging, os, tempfile, time\nimport raydo",
    """raydo.init(tempfile.mkdtemp())
seen = []
class Keep(logging.Handler):
    def emit(self, record):
        seen.append(record.getMessage())
logging.getLogger("raydo").addHandler(Keep())""",
    """class Flow(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        def die(ctx):
            if ctx.attempt == 1:
                os._exit(1)
            return 2
        return await step.do("die", die, retries={"limit": 2, "delay": 0.1})

inst = await raydo.workflow(Flow, name="flow").create(id="one")
(await inst.wait(timeout=120)).status.value""",
    """deadline = time.monotonic() + 60
while not any("died" in s for s in seen) and time.monotonic() < deadline:
    time.sleep(0.05)
raydo.shutdown()
any("died" in s for s in seen)""",
]


def test_a_notebook_sees_no_ray_noise(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYDO_LOG")}
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=env)
    texts = []
    for cell in nb.cells:
        for out in cell.outputs:
            texts.append(out.get("text") or str(out.get("data", {}).get("text/plain", "")))
    output = "\n".join(texts)
    assert "'complete'" in output and "True" in output, output
    for noise in (*RAY_NOISE, "Missing packages", "ipywidgets"):
        assert noise not in output, (noise, output)
    assert "worker running instance one died" in output, output
