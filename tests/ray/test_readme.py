"""Every Python code block of README.md runs as shown: each as a script in its own subprocess,
on a fresh storage folder, with a local Ray it starts itself, as a reader who pastes it would.

The README's bash block runs examples/get_started.py (tests/ray/test_examples.py runs it the same
way) and this test suite; its layout block is not code; its toml block is a project config, which
raydo's config loader must accept as shown.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def code_blocks(language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(README.read_text()) if lang == language]


def test_the_readme_has_its_blocks() -> None:
    fences = _FENCE.findall(README.read_text())
    assert {lang for lang, _ in fences} <= {"python", "bash", "text", "toml"}, (
        "a block this test skips"
    )
    assert len(code_blocks("python")) >= 2


@pytest.mark.parametrize("index", range(len(code_blocks("toml"))))
def test_toml_block_is_a_valid_project_config(tmp_path: Path, index: int) -> None:
    from raydo.bindings.config import load_config

    config = tmp_path / "raydo.toml"
    config.write_text(code_blocks("toml")[index])
    assert load_config(config).workflows  # parsed and validated as raydo would


@pytest.mark.parametrize("index", range(len(code_blocks("python"))))
def test_python_block_runs_as_shown(tmp_path: Path, index: int) -> None:
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(code_blocks("python")[index])
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYDO_LOG")}
    env["RAYDO_STORAGE"] = str(tmp_path / "storage")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "complete" in proc.stdout, proc.stdout
