"""Typed params: `class Checkout(WorkflowEntrypoint[Order])` with a pydantic model `Order`.

`create()` validates the params against the model before anything is stored (a bad one raises
InvalidParamsError naming the field, and nothing is written), and stores the model's JSON form:
plain data that the CLI, the HTTP API and any other process can read without the model's code.
Inside run(), `event.payload` is the model again. A workflow without a model takes any params,
as before.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ..errors import InvalidParamsError
from .rules import show

_MAX_PROBLEMS = 3


def params_model(cls: type) -> type[BaseModel] | None:
    """The pydantic model a workflow class declares as `WorkflowEntrypoint[Model]`, if any
    (inherited from a base class too)."""
    from .model import WorkflowEntrypoint  # model.py imports this module's users

    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if get_origin(base) is WorkflowEntrypoint:
                args = get_args(base)
                if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                    return args[0]
    return None


def validated(cls: type, workflow: str, what: str, params: Any) -> Any:
    """The params to store: unchanged without a model, else the model's JSON-mode data. No
    params (None) means an empty object, so a model whose fields all have defaults needs none."""
    model = params_model(cls)
    if model is None:
        return params
    return _validate(model, workflow, what, params).model_dump(mode="json")


def typed_payload(cls: type, workflow: str, what: str, payload: Any) -> Any:
    """`event.payload` inside run(): the model, when the workflow declares one."""
    model = params_model(cls)
    if model is None or isinstance(payload, model):
        return payload
    return _validate(model, workflow, what, payload)


def _validate(model: type[BaseModel], workflow: str, what: str, params: Any) -> BaseModel:
    try:
        return model.model_validate({} if params is None else params)
    except ValidationError as err:
        raise _params_error(model, workflow, what, err) from None


def _params_error(
    model: type[BaseModel], workflow: str, what: str, err: ValidationError
) -> InvalidParamsError:
    problems = err.errors(include_url=False)
    first = problems[0]
    field = ".".join(str(part) for part in first["loc"])
    shown = "; ".join(_problem(p) for p in problems[:_MAX_PROBLEMS])
    more = len(problems) - _MAX_PROBLEMS
    return InvalidParamsError(
        f"{what} of workflow {workflow!r} do not match {model.__name__}: {shown}"
        + (f"; and {more} more" if more > 0 else ""),
        workflow=workflow,
        field=field,
        rule=first["msg"],
        value=show(first.get("input")),
    )


def _problem(problem: Any) -> str:
    field = ".".join(str(part) for part in problem["loc"]) or "(the params)"
    return f"field {field!r}: {problem['msg']} (got {show(problem.get('input'))})"
