"""Making a user's workflow class reach the actors, wherever it was written.

A class in an installed package travels by reference (the workers import it). A class in a script,
a notebook, a test module or an examples folder travels by value: workers may not be able to import
its module, so the module is registered with cloudpickle to ship its code.
"""

from __future__ import annotations

import os
import sys
import sysconfig

from ray import cloudpickle

_INSTALLED = tuple(
    os.path.realpath(p)
    for p in {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
)


def ship_by_value_if_needed(cls: type) -> None:
    module = sys.modules.get(cls.__module__)
    if module is None or cls.__module__ == "__main__" or cls.__module__.startswith("raydo."):
        return
    path = getattr(module, "__file__", None)
    if path is None or os.path.realpath(path).startswith(_INSTALLED):
        return
    cloudpickle.register_pickle_by_value(module)
