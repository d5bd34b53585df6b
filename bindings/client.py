"""Connecting to Ray and choosing storage: `raydo.init()` and `raydo.shutdown()`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..errors import StorageMismatchError
from ..storage.instances import check_schema, set_sync_mode
from ..storage.kv import open_lmdb
from . import logs

logs.quiet_ray_imports()  # before Ray's first import, which may log a notebook hint

import ray  # noqa: E402

from .shipping import check_installed, installed_only_from_env  # noqa: E402 (imports Ray)

DEFAULT_STORAGE = ".raydo"


@dataclass(frozen=True)
class Context:
    storage: str
    started_ray: bool
    allow_shipped_code: bool = True


_context: Context | None = None


def init(
    storage: str | os.PathLike[str] | None = None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    sync_commits: bool | None = None,
    allow_shipped_code: bool = True,
) -> Context:
    """Start raydo; optional and idempotent (first use calls it).

    storage: the LMDB folder (argument, else $RAYDO_STORAGE, else ./.raydo).
    sync_commits: fsync every step result (default, survives power loss) or, when False, flush
    every 50 ms (survives any process crash; an OS crash may lose the last 50 ms of steps).
    allow_shipped_code: False accepts installed workflow classes only (as does
    $RAYDO_INSTALLED_CLASSES_ONLY=1, which an argument cannot lift): a class whose code would
    travel by value to the cluster raises ShippedCodeError (SECURITY.md).
    Joins the Ray cluster at `address` / $RAY_ADDRESS or one already running here; otherwise starts
    a quiet local Ray that `shutdown()` stops again.
    """
    global _context
    path = os.path.abspath(os.fspath(storage or os.environ.get("RAYDO_STORAGE") or DEFAULT_STORAGE))
    allow = allow_shipped_code and not installed_only_from_env()
    current_ = current()
    if current_ is not None:
        if storage is not None and path != current_.storage:
            raise StorageMismatchError(
                f"raydo is already initialized with storage {current_.storage!r}; call "
                f"raydo.shutdown() before init with {path!r}",
                storage=path,
                current=current_.storage,
            )
        if allow != current_.allow_shipped_code and not allow_shipped_code:
            raise RuntimeError(
                "raydo is already initialized accepting shipped workflow code; call "
                "raydo.shutdown() before init with allow_shipped_code=False"
            )
        return current_
    kv = open_lmdb(path)
    check_schema(kv)
    if sync_commits is not None:
        set_sync_mode(kv, sync_commits)
        kv.sync_each_commit = sync_commits
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        _start_ray(address, num_cpus)
        started = address in (None, "local")
    logs.configure_driver_logging(owns_ray=started)
    _context = Context(path, started, allow)
    return _context


def _start_ray(address: str | None, num_cpus: int | None) -> None:
    """Start or join Ray quietly (RAYDO_LOG=debug: as Ray would on its own)."""
    loud = logs.showing_everything()
    # Ray announces its default token auth on every local start.
    auth_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = auth_log.level
    if not loud:
        auth_log.setLevel(logging.ERROR)
    try:
        ray.init(
            address=address,
            num_cpus=None if address not in (None, "local") else num_cpus,
            include_dashboard=False,
            logging_level=logging.INFO if loud else logging.WARNING,
            configure_logging=True,
        )
    finally:
        auth_log.setLevel(level)


def start_local_ray(num_cpus: int | None = None) -> bool:
    """Start a quiet local Ray in this process unless Ray is already up; True when it started
    one (raydo.testing's pytest plugin: one Ray for a whole test session)."""
    if ray.is_initialized():
        return False
    _start_ray("local", num_cpus)
    return True


def stop_ray() -> None:
    """Stop the Ray `start_local_ray` started (raydo's context with it)."""
    global _context
    _context = None
    ray.shutdown()


def context() -> Context:
    return current() or init()


def current() -> Context | None:
    """The context raydo is initialized with, if any. One whose Ray was shut down under it
    (`ray.shutdown()` called directly) is over: the next use initializes raydo again."""
    global _context
    if _context is not None and not ray.is_initialized():
        _context = None
    from .cluster import forget_views

    forget_views()
    return _context


def check_code_policy(cls: type) -> None:
    """Refuse a workflow class that would ship by value when only installed ones are accepted
    (by init, or by the environment where init has not run, e.g. inside raydo's actors)."""
    allowed = _context.allow_shipped_code if _context is not None else not installed_only_from_env()
    if not allowed:
        check_installed(cls)


def enable_token_auth() -> None:
    """Join with Ray's token auth (a local Ray started by another raydo process, e.g. `raydo
    serve`, uses it). Ray caches its config, so it is refreshed as Ray itself does it."""
    os.environ["RAY_AUTH_MODE"] = "token"
    from ray._raylet import Config  # type: ignore[attr-defined]

    Config.initialize("")


def cluster_address() -> str:
    """The address of the Ray cluster raydo is joined to (for tools that advertise it)."""
    return str(ray.get_runtime_context().gcs_address)


def shutdown(*, kill_actors: bool = False) -> None:
    """Stop what `init` started: the local Ray, and with it raydo's actors.

    Joined to a cluster, raydo's actors keep running (instances outlive the script) unless
    `kill_actors=True`; unfinished instances resume when a namespace starts on the same storage.
    """
    global _context
    if _context is not None and ray.is_initialized():
        if kill_actors:
            _kill_actors(_context.storage)
        if _context.started_ray:
            ray.shutdown()
    _context = None
    from .cluster import forget_views

    forget_views()


def _kill_actors(storage: str) -> None:
    """raydo's actors for `storage`: on this node, and on every raydo node of the cluster."""
    from ..actors.handles import kill_storage_actors, storage_key
    from ..actors.nodes import node_storage
    from .cluster import view_of

    view = view_of(storage)
    keys = {storage_key(node_storage(storage))}
    keys.update(node.key for node in [*view.nodes.values(), *view.known_single()])
    kill_storage_actors(storage, sorted(keys))
