"""The rules the layout promises, checked: what each folder may import, and the warning policy."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import raydo
from raydo import errors

ROOT = Path(__file__).resolve().parents[2]
# folder -> raydo subpackages it must not import (DESIGN.md: storage <- runtime <- actors <-
# bindings <- testing; Ray only in actors/ and bindings/)
FORBIDDEN = {
    "storage": {"runtime", "actors", "bindings", "ray"},
    "runtime": {"actors", "bindings", "ray"},
    "actors": {"bindings"},
    "testing": {"actors", "ray"},  # reaches instances through bindings and storage only
}


_SCAN = """
import ast, json, sys
out = {}
for path in sys.argv[1:]:
    names = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level >= 2:
                names.add(module.split(".")[0])
            elif node.level == 0:
                names.add(module.split(".")[0])
                if module.startswith("raydo."):
                    names.add(module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    out[path] = sorted(names)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def imports() -> dict[str, set[str]]:
    """What each source file imports. Parsed in a fresh interpreter: CPython 3.11.7's ast.parse
    can fail spuriously after another test hit a RecursionError (gh-106905)."""
    files = [
        str(p) for folder in [*FORBIDDEN, "raydo"] for p in sorted((ROOT / folder).glob("*.py"))
    ]
    done = subprocess.run(
        [sys.executable, "-c", _SCAN, *files], capture_output=True, text=True, check=True
    )
    return {path: set(names) for path, names in json.loads(done.stdout).items()}


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_folders_import_only_downwards(folder: str, imports: dict[str, set[str]]) -> None:
    for path in sorted((ROOT / folder).glob("*.py")):
        bad = imports[str(path)] & FORBIDDEN[folder]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_error_module_imports_nothing_of_raydo(imports: dict[str, set[str]]) -> None:
    names = imports[str(ROOT / "raydo" / "errors.py")]
    assert names <= {"__future__", "typing"}, names


def test_every_error_pickles_with_its_fields() -> None:
    samples = [
        errors.InvalidStateError("m", id="a", status="complete"),
        errors.NonRetryableStepError("m", "Declined", "no", "charge", 2, False),
        errors.WaitForEventTimeoutError("m", step="approval", type="approved"),
        errors.PayloadError("m", what="params", size=5),
        errors.SchemaVersionError("m", found=2, expected=1),
    ]
    for err in samples:
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and vars(back) == vars(err)
    step_error = samples[1]
    assert isinstance(step_error, errors.NonRetryableError)
    assert isinstance(step_error, errors.WorkflowStepError)


def test_every_error_is_public() -> None:
    for name in errors.__all__:
        assert getattr(raydo, name) is getattr(errors, name)


def test_deprecations_from_raydo_fail_the_suite() -> None:
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit("old", DeprecationWarning, "x.py", 1, module="raydo.runtime.x")
