"""Project config: where the tools (CLI, HTTP server, dashboard) find the workflows and storage.

Workflows are declared once, the way wrangler declares them, in a `raydo.toml` or in a
`[tool.raydo]` table of pyproject.toml (the keys are the same; in pyproject they sit under
`tool.raydo`):

    storage = ".raydo"                  # relative to the file's folder; default .raydo there

    [workflows.checkout]
    class = "shop.flows:Checkout"       # module:Class; the file's folder is put on sys.path
    concurrency = 4                     # instances running at once (the rest are queued)
    actors = 2                          # optional: worker processes (default: concurrency)
    retention = { success = "7 days", error = "30 days" }   # finished instances then deleted
    steps = 10000                       # step limit: validated, not acted on yet
    schedules = ["0 9 * * 1"]           # cron (UTC): an instance per tick (runtime/schedules.py)

A file that breaks a rule raises ConfigError naming the file, the dotted key and the rule. The
tools build their bindings from it exactly as a user script does (`raydo.workflow(Cls, name=...)`),
so a script and the tools on the same storage see and control the same instances.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from ..errors import ConfigError, WorkflowNotFoundError
from ..runtime.model import WorkflowEntrypoint
from ..runtime.rules import MAX_SLEEP, bounded, check_id, show
from ..runtime.schedules import check_cron
from .workflow import MAX_WORKFLOW_NAME, Workflow

CONFIG_FILE = "raydo.toml"
PYPROJECT = "pyproject.toml"
MAX_STEPS = 25_000
_CLASS_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_CRON_FIELD_RE = re.compile(r"^[0-9A-Za-z*,/?LW#-]+$")
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class RetentionConfig(BaseModel):
    """How long finished instances are kept, in seconds (parsed from durations)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    success: float | None = None
    error: float | None = None

    @field_validator("success", "error", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return bounded(value, "retention", 0, MAX_SLEEP)

    def as_dict(self) -> dict[str, float] | None:
        kept = {"success": self.success, "error": self.error}
        return {k: v for k, v in kept.items() if v is not None} or None


class WorkflowConfig(BaseModel):
    """One declared workflow."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    class_: StrictStr = Field(alias="class")
    concurrency: Annotated[StrictInt, Field(ge=1, le=10_000)] = 4
    actors: Annotated[StrictInt, Field(ge=1, le=10_000)] | None = None
    retention: RetentionConfig | None = None
    steps: Annotated[StrictInt, Field(ge=1, le=MAX_STEPS)] | None = None
    schedules: list[StrictStr] = []

    @field_validator("class_")
    @classmethod
    def _class_spec(cls, value: str) -> str:
        if not _CLASS_RE.fullmatch(value):
            raise ValueError(f"{value!r} must be 'module:Class' (e.g. 'shop.flows:Checkout')")
        return value

    @field_validator("schedules", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("schedules")
    @classmethod
    def _cron_shape(cls, value: list[str]) -> list[str]:
        for cron in value:
            check_cron_shape(cron)
            check_cron(cron)  # croniter's full parse (raydo[cron])
        return value


class ProjectConfig(BaseModel):
    """A whole config file. `file` is where it was read from; paths are relative to its folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    storage: StrictStr = ".raydo"
    workflows: dict[str, WorkflowConfig] = {}
    _file: Path = PrivateAttr(default=Path(CONFIG_FILE))

    @field_validator("storage")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value or "\x00" in value:
            raise ValueError(f"storage {value!r} must be a non-empty path without NUL characters")
        return value

    @field_validator("workflows")
    @classmethod
    def _names(cls, value: dict[str, WorkflowConfig]) -> dict[str, WorkflowConfig]:
        for name in value:
            check_id(name, "workflow name")
            if len(name) > MAX_WORKFLOW_NAME:
                raise ValueError(f"workflow name {name!r} is longer than 64 characters")
        return value

    @property
    def file(self) -> Path:
        return self._file

    @property
    def root(self) -> Path:
        return self.file.parent

    @property
    def storage_path(self) -> str:
        return str((self.root / self.storage).resolve())


def check_cron_shape(cron: str) -> str:
    """The shape of a cron expression (5 or 6 fields, or a macro). Full parsing comes with the
    scheduler; this catches typos at load time."""
    fields = cron.split()
    if cron.strip() in _CRON_MACROS:
        return cron
    if len(fields) not in (5, 6) or not all(_CRON_FIELD_RE.fullmatch(f) for f in fields):
        raise ValueError(
            f"schedule {cron!r} is not a cron expression; write 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1', or @hourly/@daily/..."
        )
    return cron


def find_config(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest raydo.toml, or pyproject.toml with a [tool.raydo] table, from `start` up."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder / CONFIG_FILE
        pyproject = folder / PYPROJECT
        if pyproject.is_file() and _has_raydo_table(pyproject):
            return pyproject
    return None


def _has_raydo_table(pyproject: Path) -> bool:
    try:
        return "raydo" in _read_toml(pyproject).get("tool", {})
    except ConfigError:
        return False


def load_config(path: str | os.PathLike[str] | None = None) -> ProjectConfig:
    """Read and validate a config file (default: the nearest one from the current folder up)."""
    found = Path(path) if path is not None else find_config()
    if found is None:
        cwd = str(Path.cwd())
        rule = (
            f"no project config: need {CONFIG_FILE} or {PYPROJECT} with [tool.raydo] here or above"
        )
        raise config_error(cwd, "-", rule)
    found = found.resolve()
    data = _read_toml(found)
    prefix = ""
    if found.name == PYPROJECT:
        data, prefix = data.get("tool", {}).get("raydo"), "tool.raydo."
        if not isinstance(data, dict):
            raise config_error(found, "tool.raydo", "pyproject.toml must have a [tool.raydo] table")
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(found, prefix, exc) from None
    config._file = found
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise config_error(path, "-", "the file must exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise config_error(path, "-", f"must be valid TOML ({exc})") from None


def _config_error(path: Path, prefix: str, exc: ValidationError) -> ConfigError:
    """The first problem pydantic found, as file / dotted key / rule."""
    first = exc.errors()[0]
    key = prefix + ".".join("class" if p == "class_" else str(p) for p in first["loc"])
    rule = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        rule = "unknown key; allowed keys are listed in raydo's README (Project config)"
    elif first["type"] != "missing" and first["type"] != "value_error":
        rule += f" (got {show(first.get('input'))})"
    return config_error(path, key, rule)


def config_error(file: str | os.PathLike[str], key: str, rule: str) -> ConfigError:
    return ConfigError(f"{file}: {key}: {rule}", str(file), key, rule)


class Project:
    """A loaded config with its classes imported and its bindings built on demand."""

    def __init__(self, config: ProjectConfig) -> None:
        self.config = config
        self.classes = {name: self._import(name, wf) for name, wf in config.workflows.items()}
        self._bindings: dict[str, Workflow] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self.classes)

    def workflow(self, name: str) -> Workflow:
        """The binding of a declared workflow, built as a user script builds it."""
        if name not in self.classes:
            known = ", ".join(self.names) or "none"
            raise WorkflowNotFoundError(
                f"workflow {name!r} is not declared in {self.config.file}; declared: {known}",
                name,
            )
        if name not in self._bindings:
            declared = self.config.workflows[name]
            retention = None if declared.retention is None else declared.retention.as_dict()
            self._bindings[name] = Workflow(
                self.classes[name],
                name,
                concurrency=declared.concurrency,
                actors=declared.actors,
                retention=retention,
                schedules=list(declared.schedules),  # the config is the declaration: [] clears
            )
        return self._bindings[name]

    def _import(self, name: str, declared: WorkflowConfig) -> type[WorkflowEntrypoint]:
        key = f"workflows.{name}.class"
        root = str(self.config.root)
        if root not in sys.path:
            sys.path.insert(0, root)
        module_name, _, attr = declared.class_.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            rule = f"{declared.class_!r} must be importable ({type(exc).__name__}: {exc})"
            raise config_error(self.config.file, key, rule) from None
        if not (isinstance(obj, type) and issubclass(obj, WorkflowEntrypoint)):
            rule = f"{declared.class_!r} must name a subclass of raydo.WorkflowEntrypoint"
            raise config_error(self.config.file, key, rule) from None
        return obj


def load_project(path: str | os.PathLike[str] | None = None) -> Project:
    return Project(load_config(path))
