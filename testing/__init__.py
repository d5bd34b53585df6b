"""raydo.testing: test workflows fast, in this process or on real Ray, with Cloudflare's
introspection API and time skipping.

    from raydo.testing import LocalEnv, introspect

    with LocalEnv() as env:                       # in-process: no Ray, a fake clock
        checkout = env.workflow(Checkout)
        with introspect(checkout, "order-1") as order:
            order.mock_step_result("submit payment", {"charge_id": "ch_1"})
            checkout.create(id="order-1", params={...}).result()
            assert order.get_output().result()["charge_id"] == "ch_1"   # its 30-day sleep skipped

`RayEnv(folder)` gives the same API on real Ray and LMDB. The pytest plugin (installed with raydo)
provides the fixtures `raydo_test_env` (a LocalEnv) and `raydo_ray_env` (a RayEnv on a fresh
folder). local.py and ray_env.py say how time skips in each mode; introspect.py what the
introspectors do; runtime/modifiers.py how the engine applies the modifiers.
"""

from .inputs import StepSelector
from .introspect import (
    InstanceIntrospector,
    WorkflowIntrospector,
    introspect,
    introspect_workflow,
)
from .local import LocalEnv
from .ray_env import RayEnv

__all__ = [
    "InstanceIntrospector",
    "LocalEnv",
    "RayEnv",
    "StepSelector",
    "WorkflowIntrospector",
    "introspect",
    "introspect_workflow",
]
