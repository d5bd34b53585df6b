"""Making a user's workflow class reach the actors, wherever it was written.

A class in an installed package travels by reference (the workers import it). A class in a script,
a notebook, a test module or an examples folder travels by value: workers may not be able to import
its module, so the module is registered with cloudpickle to ship its code.

Code shipped by value runs on the cluster, in detached actors that outlive the driver. On a shared
cluster an operator may accept installed classes only (`raydo.init(allow_shipped_code=False)` or
RAYDO_INSTALLED_CLASSES_ONLY=1): then a class that would travel by value is refused before anything
is sent (SECURITY.md says what this guards against and what it cannot).
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig

from ray import cloudpickle

from ..errors import ShippedCodeError

INSTALLED_ONLY_ENV = "RAYDO_INSTALLED_CLASSES_ONLY"

_INSTALLED = tuple(
    os.path.realpath(p)
    for p in {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
)


def ship_by_value_if_needed(cls: type) -> None:
    module = sys.modules.get(cls.__module__)
    if module is None or cls.__module__ == "__main__" or cls.__module__.startswith("raydo."):
        return
    path = getattr(module, "__file__", None)
    if path is None or _is_installed_file(path):
        return
    cloudpickle.register_pickle_by_value(module)


def installed_only_from_env() -> bool:
    """RAYDO_INSTALLED_CLASSES_ONLY=1 (or true/yes/on) asks for installed classes only."""
    return os.environ.get(INSTALLED_ONLY_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def check_installed(cls: type) -> None:
    """Refuse `cls` unless it travels by reference: the very class an installed module defines
    at its qualified name. Anything else (a script, a notebook, `__main__`, a class made inside a
    function, an editable or path-only checkout) would ship its code by value."""
    reason = _shipping_reason(cls)
    if reason is not None:
        name = f"{cls.__module__}.{cls.__qualname__}"
        raise ShippedCodeError(
            f"workflow class {name} would ship its code by value ({reason}), and this process "
            f"accepts installed workflow classes only ({INSTALLED_ONLY_ENV}=1 or "
            "raydo.init(allow_shipped_code=False)); install the package that defines it "
            "(pip install) on the driver and the cluster, or allow shipped code",
            workflow_class=name,
            module=cls.__module__,
        )


def _shipping_reason(cls: type) -> str | None:
    """Why `cls` would travel by value, or None when workers import it by name."""
    if cls.__module__ == "__main__":
        return "it is defined in __main__"
    module = sys.modules.get(cls.__module__)
    if module is None:
        return f"its module {cls.__module__!r} is not imported here"
    if _resolve(module, cls.__qualname__) is not cls:
        return f"it is not reachable as {cls.__qualname__!r} in its module"
    if cls.__module__.startswith("raydo."):
        return None
    path = getattr(module, "__file__", None)
    if path is None or not _is_installed_file(path):
        return f"its module file {path!r} is not under site-packages"
    return None


def _is_installed_file(path: str) -> bool:
    real = os.path.realpath(path)
    return any(real.startswith(root + os.sep) for root in _INSTALLED)


def _resolve(module: object, qualname: str) -> object:
    obj: object = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def fingerprint(cls: type) -> str:
    """A short hash of the code a class runs: its pickled form (which holds the code itself for a
    class shipped by value) plus, for a class that travels by reference, its module's source."""
    digest = hashlib.sha256(cloudpickle.dumps(cls))
    path = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if path is not None and os.path.exists(path):
        with open(path, "rb") as source:
            digest.update(source.read())
    return digest.hexdigest()[:12]
