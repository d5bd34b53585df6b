"""Connecting to Ray and choosing storage: `raydo.init()` and `raydo.shutdown()`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import ray

from ..storage.instances import check_schema, set_sync_mode
from ..storage.kv import open_lmdb

DEFAULT_STORAGE = ".raydo"


@dataclass(frozen=True)
class Context:
    storage: str
    started_ray: bool


_context: Context | None = None


def init(
    storage: str | os.PathLike[str] | None = None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    sync_commits: bool | None = None,
) -> Context:
    """Start raydo; optional and idempotent (first use calls it).

    storage: the LMDB folder (argument, else $RAYDO_STORAGE, else ./.raydo).
    sync_commits: fsync every step result (default, survives power loss) or, when False, flush
    every 50 ms (survives any process crash; an OS crash may lose the last 50 ms of steps).
    Joins the Ray cluster at `address` / $RAY_ADDRESS or one already running here; otherwise starts
    a quiet local Ray that `shutdown()` stops again.
    """
    global _context
    path = os.path.abspath(os.fspath(storage or os.environ.get("RAYDO_STORAGE") or DEFAULT_STORAGE))
    if _context is not None:
        if storage is not None and path != _context.storage:
            raise RuntimeError(
                f"raydo is already initialized with storage {_context.storage!r}; call "
                f"raydo.shutdown() before init with {path!r}"
            )
        return _context
    kv = open_lmdb(path)
    check_schema(kv)
    if sync_commits is not None:
        set_sync_mode(kv, sync_commits)
        kv.sync_each_commit = sync_commits
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        # Quiet: Ray announces its default token auth on every local start.
        auth_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = auth_log.level
        auth_log.setLevel(logging.ERROR)
        try:
            ray.init(
                address=address,
                num_cpus=None if address else num_cpus,
                include_dashboard=False,
                logging_level=logging.WARNING,
                configure_logging=True,
            )
        finally:
            auth_log.setLevel(level)
        started = address in (None, "local")
    _context = Context(path, started)
    return _context


def context() -> Context:
    return _context if _context is not None else init()


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
            from ..actors.handles import kill_storage_actors

            kill_storage_actors(_context.storage)
        if _context.started_ray:
            ray.shutdown()
    _context = None
