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
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..runtime.model import WorkflowEntrypoint
from ..runtime.options import WorkflowOptions
from ..runtime.placement import NodeInfo
from ..storage.instances import storage_identity
from ..storage.kv import open_lmdb

RAY_NAMESPACE = "raydo"


def storage_key(storage: str) -> str:
    secret = storage_identity(open_lmdb(storage))
    return hashlib.sha256(b"raydo actor names\x00" + secret).hexdigest()[:24]


def namespace_name(storage: str, workflow: str) -> str:
    return _namespace_name(storage_key(storage), workflow)


def _namespace_name(key: str, workflow: str) -> str:
    return f"ns:{key}:{workflow}"


def timer_name(storage: str) -> str:
    return f"timers:{storage_key(storage)}"


def pinned(ray_node: str) -> NodeAffinitySchedulingStrategy:
    """Run there or nowhere: an actor holding a node's storage must never land on another node
    (it would open an empty storage at the same path there)."""
    return NodeAffinitySchedulingStrategy(ray_node, soft=False)


def here() -> str:
    """The Ray node id of this process."""
    return str(ray.get_runtime_context().get_node_id())


def namespace_actor_on(
    node: NodeInfo,
    storage: str,
    workflow: str,
    workflow_cls: type[WorkflowEntrypoint],
    options: WorkflowOptions,
    code: str | None = None,
) -> Any:
    """Get the namespace actor of `workflow` on raydo node `node`, pinned to the Ray node it
    runs under now. `storage` is the driver's path; the actor resolves its node's folder."""
    from .namespace import NamespaceActor

    actor = _detached(NamespaceActor, _namespace_name(node.key, workflow), node.ray_node)
    return actor.remote(storage, workflow, workflow_cls, options, code)


def existing_namespace(storage: str, workflow: str) -> Any | None:
    try:
        return ray.get_actor(namespace_name(storage, workflow), namespace=RAY_NAMESPACE)
    except ValueError:
        return None


def timer_actor(storage: str) -> Any:
    """The timer actor of this node's `storage`, pinned to this node."""
    from .timer import TimerActor

    return _detached(TimerActor, timer_name(storage), here()).remote(storage)


def compute_name(storage: str) -> str:
    return f"compute:{storage_key(storage)}"


def compute_actor(storage: str) -> Any:
    """The owner of this node's placed step attempts (actors/compute.py), pinned here."""
    from .compute import ComputeActor

    return _detached(ComputeActor, compute_name(storage), here()).remote(storage)


def _detached(cls: type, name: str, ray_node: str) -> Any:
    """A named, detached, always-restarted async actor class pinned to `ray_node`: created
    once, found thereafter. (Its node gone, Ray does not restart it elsewhere: it dies.)"""
    return ray.remote(cls).options(
        name=name,
        namespace=RAY_NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        max_restarts=-1,
        max_concurrency=10_000,
        num_cpus=0,
        scheduling_strategy=pinned(ray_node),
    )


def new_instance_actor(
    storage: str,
    workflow: str,
    workflow_cls: type[WorkflowEntrypoint],
    options: WorkflowOptions,
    code: str | None = None,
) -> Any:
    """A pooled InstanceActor on this node (where `storage` is). Owned by (and dying with) the
    namespace actor that creates it."""
    from .instance import InstanceActor

    return (
        ray.remote(InstanceActor)
        .options(
            max_restarts=0,
            max_concurrency=1000,
            scheduling_strategy=pinned(here()),
            **instance_actor_options(options),
        )
        .remote(storage, workflow, workflow_cls, options, code)
    )


def instance_actor_options(options: WorkflowOptions) -> dict[str, Any]:
    """The workflow's own Ray options for its instance actors: runtime_env and resources
    (by default none: num_cpus 0, so idle pooled actors hold no CPU)."""
    from .compute import task_options

    chosen: dict[str, Any] = {"num_cpus": 0}
    if options.actor_request is not None:
        chosen |= task_options(options.actor_request)
        chosen.pop("max_retries")  # a task option; actors are replaced by the pool instead
    if options.runtime_env:
        chosen["runtime_env"] = dict(options.runtime_env)
    return chosen


def kill_storage_actors(storage: str, keys: list[str] | None = None) -> int:
    """Kill every raydo actor of `storage` (instance actors die with their namespace), or of
    the storages with these actor-name `keys` (a cluster's nodes). Returns how many were killed."""
    marks = [f":{key}" for key in (keys if keys is not None else [storage_key(storage)])]
    killed = 0
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry.get("name", "")
        if entry.get("namespace") != RAY_NAMESPACE or not any(m in name for m in marks):
            continue
        try:
            ray.kill(ray.get_actor(entry["name"], namespace=RAY_NAMESPACE), no_restart=True)
            killed += 1
        except ValueError:
            continue
    return killed
