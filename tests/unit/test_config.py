"""Project config: raydo.toml and [tool.raydo] in pyproject.toml (no Ray needed)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

import raydo
from raydo.bindings.config import find_config, load_config, load_project
from raydo.errors import ConfigError, WorkflowNotFoundError

FLOWS = """
import raydo

class Greet(raydo.WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("greet", lambda: "hi")

class NotAWorkflow:
    pass
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path, "cfgflows.py", FLOWS)
    return tmp_path


def test_raydo_toml_parses_all_keys(project: Path) -> None:
    path = write(
        project,
        "raydo.toml",
        """
        storage = "data/store"
        [workflows.greet]
        class = "cfgflows:Greet"
        concurrency = 3
        retention = { success = "7 days", error = "30 days" }
        steps = 500
        schedules = "0 9 * * 1"
        """,
    )
    config = load_config(path)
    greet = config.workflows["greet"]
    assert (greet.class_, greet.concurrency, greet.steps) == ("cfgflows:Greet", 3, 500)
    assert greet.retention is not None
    assert (greet.retention.success, greet.retention.error) == (7 * 86400, 30 * 86400)
    assert greet.schedules == ["0 9 * * 1"]
    assert config.storage_path == str((project / "data" / "store").resolve())
    assert config.file == path.resolve()


def test_pyproject_table_is_found_from_a_subfolder(project: Path) -> None:
    write(
        project,
        "pyproject.toml",
        """
        [project]
        name = "x"
        [tool.raydo.workflows.greet]
        class = "cfgflows:Greet"
        """,
    )
    sub = project / "a" / "b"
    sub.mkdir(parents=True)
    assert find_config(sub) == (project / "pyproject.toml").resolve()
    config = load_config(find_config(sub))
    assert config.workflows["greet"].concurrency == 4
    assert config.storage_path == str((project / ".raydo").resolve())


def test_pyproject_without_table_is_not_a_config(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", "[project]\nname = 'x'\n")
    assert find_config(tmp_path) is None
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "pyproject.toml")
    assert err.value.key == "tool.raydo"


@pytest.mark.parametrize(
    ("body", "key", "rule"),
    [
        ("[workflows.greet]\nconcurrency = 2\n", "workflows.greet.class", "Field required"),
        ("[workflows.greet]\nclass = 'nocolon'\n", "workflows.greet.class", "module:Class"),
        (
            "[workflows.greet]\nclass = 'm:C'\nconcurrency = 0\n",
            "concurrency",
            "greater than or equal to 1 (got 0)",
        ),
        ("[workflows.greet]\nclass = 'm:C'\nconcurrency = '4'\n", "concurrency", "integer"),
        ("[workflows.greet]\nclass = 'm:C'\nconcurrency = true\n", "concurrency", "integer"),
        ("[workflows.greet]\nclass = 'm:C'\nsteps = 0\n", "steps", "greater than or equal to 1"),
        ("[workflows.greet]\nclass = 'm:C'\nretention = {success = 'soon'}\n", "success", "unit"),
        ("[workflows.greet]\nclass = 'm:C'\nretention = {ok = '1 day'}\n", "ok", "unknown key"),
        ("[workflows.greet]\nclass = 'm:C'\nschedules = ['every day']\n", "schedules", "cron"),
        # the right shape, but croniter's parse refuses it
        ("[workflows.greet]\nclass = 'm:C'\nschedules = ['61 * * * *']\n", "schedules", "cron"),
        ("[workflows.greet]\nclass = 'm:C'\nbogus = 1\n", "workflows.greet.bogus", "unknown key"),
        ("[workflows.'bad name']\nclass = 'm:C'\n", "workflows", "workflow name 'bad name'"),
        ("storage = ''\n", "storage", "non-empty"),
        ("storage = 5\n", "storage", "string"),
        ("workflows = 3\n", "workflows", "dictionary"),
        ("file = 'x'\n", "file", "unknown key"),
        ("[workflows\n", "-", "valid TOML"),
    ],
)
def test_bad_file_names_file_key_and_rule(tmp_path: Path, body: str, key: str, rule: str) -> None:
    path = write(tmp_path, "raydo.toml", body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.file == str(path.resolve())
    assert key in err.value.key
    assert rule in err.value.rule
    assert str(path.resolve()) in str(err.value) and err.value.key in str(err.value)


def test_missing_and_absent_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.toml")
    assert err.value.rule == "the file must exist"
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        if find_config() is None:  # a config above tmp would be found instead: both are right
            with pytest.raises(ConfigError, match="no project config"):
                load_config()
    finally:
        os.chdir(old)


def test_project_imports_classes_and_builds_bindings(project: Path) -> None:
    write(project, "raydo.toml", "[workflows.greet]\nclass = 'cfgflows:Greet'\nconcurrency = 2\n")
    proj = load_project(project / "raydo.toml")
    assert proj.names == ["greet"]
    binding = proj.workflow("greet")
    assert isinstance(binding, raydo.Workflow)
    assert (binding.name, binding.options.concurrency) == ("greet", 2)
    assert binding.cls.__name__ == "Greet"
    assert proj.workflow("greet") is binding
    with pytest.raises(WorkflowNotFoundError, match="'other' is not declared"):
        proj.workflow("other")


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ("cfg_missing_module:Greet", "ModuleNotFoundError"),
        ("cfgflows:Missing", "AttributeError"),
        ("cfgflows:NotAWorkflow", "subclass of raydo.WorkflowEntrypoint"),
    ],
)
def test_class_that_cannot_be_used(project: Path, spec: str, rule: str) -> None:
    write(project, "raydo.toml", f"[workflows.greet]\nclass = '{spec}'\n")
    with pytest.raises(ConfigError) as err:
        load_project(project / "raydo.toml")
    assert err.value.key == "workflows.greet.class"
    assert rule in err.value.rule


def test_errors_pickle_with_their_fields() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(ConfigError("f: k: r", "f", "k", "r")))
    assert (err.file, err.key, err.rule, str(err)) == ("f", "k", "r", "f: k: r")
    missing = pickle.loads(pickle.dumps(WorkflowNotFoundError("no such workflow", "x")))
    assert (missing.name, str(missing)) == ("x", "no such workflow")
