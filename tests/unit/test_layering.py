"""The rules the layout promises, checked: what each folder may import, and the warning policy."""

from __future__ import annotations

import ast
import pickle
import warnings
from pathlib import Path

import pytest

import raydo
from raydo import errors

ROOT = Path(__file__).resolve().parents[2]
# folder -> raydo subpackages it must not import (DESIGN.md: storage <- runtime <- actors <-
# bindings; Ray only in actors/ and bindings/)
FORBIDDEN = {
    "storage": {"runtime", "actors", "bindings", "ray"},
    "runtime": {"actors", "bindings", "ray"},
    "actors": {"bindings"},
}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level >= 2:
                names.add(module.split(".")[0])
            elif node.level == 0:
                names.add(module.split(".")[0] if module != "raydo" else "raydo")
                if module.startswith("raydo."):
                    names.add(module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_folders_import_only_downwards(folder: str) -> None:
    for path in sorted((ROOT / folder).glob("*.py")):
        bad = imported(path) & FORBIDDEN[folder]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_error_module_imports_nothing_of_raydo() -> None:
    names = imported(ROOT / "raydo" / "errors.py")
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
