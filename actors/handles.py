"""Creating and finding raydo's Ray actors. Every actor name and option is set here.

Names carry a hash of the storage's secret identity (a random key made with the storage, see
storage.instances.storage_identity), so two storages on one Ray cluster (two test runs, two apps)
never share actors, and a process that cannot read a storage cannot compute its actors' names from
its path. Ray itself lists every named actor to anyone connected (`ray.util.list_named_actors`):
names are unguessable, not hidden (SECURITY.md). All raydo actors live in the Ray namespace "raydo".
"""

from __future__ import annotations

import hashlib
from typing import Any

import ray

from ..runtime.model import WorkflowEntrypoint
from ..runtime.options import WorkflowOptions
from ..storage.instances import storage_identity
from ..storage.kv import open_lmdb

RAY_NAMESPACE = "raydo"


def storage_key(storage: str) -> str:
    secret = storage_identity(open_lmdb(storage))
    return hashlib.sha256(b"raydo actor names\x00" + secret).hexdigest()[:24]


def namespace_name(storage: str, workflow: str) -> str:
    return f"ns:{storage_key(storage)}:{workflow}"


def timer_name(storage: str) -> str:
    return f"timers:{storage_key(storage)}"


def namespace_actor(
    storage: str,
    workflow: str,
    workflow_cls: type[WorkflowEntrypoint],
    options: WorkflowOptions,
    code: str | None = None,
) -> Any:
    """Get the namespace actor of `workflow`, creating it (detached, restarting) if needed."""
    from .namespace import NamespaceActor

    return _detached(NamespaceActor, namespace_name(storage, workflow)).remote(
        storage, workflow, workflow_cls, options, code
    )


def existing_namespace(storage: str, workflow: str) -> Any | None:
    try:
        return ray.get_actor(namespace_name(storage, workflow), namespace=RAY_NAMESPACE)
    except ValueError:
        return None


def timer_actor(storage: str) -> Any:
    from .timer import TimerActor

    return _detached(TimerActor, timer_name(storage)).remote(storage)


def _detached(cls: type, name: str) -> Any:
    """A named, detached, always-restarted async actor class: created once, found thereafter."""
    return ray.remote(cls).options(
        name=name,
        namespace=RAY_NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        max_restarts=-1,
        max_concurrency=10_000,
        num_cpus=0,
    )


def new_instance_actor(
    storage: str,
    workflow: str,
    workflow_cls: type[WorkflowEntrypoint],
    options: WorkflowOptions,
    code: str | None = None,
) -> Any:
    """A pooled InstanceActor. Owned by (and dying with) the namespace actor that creates it."""
    from .instance import InstanceActor

    return (
        ray.remote(InstanceActor)
        .options(max_restarts=0, max_concurrency=1000, num_cpus=0)
        .remote(storage, workflow, workflow_cls, options, code)
    )


def kill_storage_actors(storage: str) -> int:
    """Kill every raydo actor of `storage` (instance actors die with their namespace). Returns
    how many were killed."""
    key = storage_key(storage)
    killed = 0
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") != RAY_NAMESPACE or f":{key}" not in entry.get("name", ""):
            continue
        try:
            ray.kill(ray.get_actor(entry["name"], namespace=RAY_NAMESPACE), no_restart=True)
            killed += 1
        except ValueError:
            continue
    return killed
