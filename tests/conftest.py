"""Shared fixtures. Ray starts once per test session (2 CPUs, no dashboard) and is shut down at
the end; each test that uses it gets its own storage folder and kills its own actors."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture
def raydo_env(ray_session: None, tmp_path: Path) -> Iterator[Path]:
    """raydo on a fresh LMDB folder, joined to the session's Ray; its actors die at teardown."""
    import raydo

    storage = tmp_path / "raydo"
    raydo.init(storage)
    yield storage
    raydo.shutdown(kill_actors=True)


@pytest.fixture(scope="session")
def raydo_ray_session(ray_session: None) -> Iterator[None]:
    """The testing kit's Ray (raydo.testing.plugin's `raydo_ray_env`) is this session's Ray."""
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `extended` (the 3-node cluster set, the scale smoke run) skip unless
    RAYDO_EXTENDED=1: the README's command stays under 15 minutes; .ci/run runs them after it."""
    if os.environ.get("RAYDO_EXTENDED") == "1":
        return
    skip = pytest.mark.skip(reason="extended set: set RAYDO_EXTENDED=1 (.ci/run runs it)")
    for item in items:
        if "extended" in item.keywords:
            item.add_marker(skip)
