"""raydo's pytest plugin, registered by the `pytest11` entry point: installing raydo gives every
pytest run these fixtures, with no conftest.

    raydo_test_env     a LocalEnv: in-process raydo on a fake clock (fast; no Ray)
    raydo_ray_env      a RayEnv on a fresh storage folder (real Ray and LMDB, skewable clock)
    raydo_ray_session  the session's Ray: joins one already running, else starts a local one
                       and stops it at the end (override it to bring your own)

Loading the plugin imports raydo and its testing kit (about a second, mostly Ray's client
library, which raydo's facade imports); no Ray starts until `raydo_ray_env` is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from raydo.testing import LocalEnv, RayEnv


@pytest.fixture
def raydo_test_env() -> Iterator[LocalEnv]:
    """An in-process raydo (memory storage, fake clock, time skipping), closed after the test."""
    from raydo.testing import LocalEnv

    with LocalEnv() as env:
        yield env


@pytest.fixture(scope="session")
def raydo_ray_session() -> Iterator[None]:
    """Ray for the session: the one already running in this process, or a local one."""
    from raydo.bindings.client import start_local_ray, stop_ray

    started = start_local_ray()
    yield
    if started:
        stop_ray()


@pytest.fixture
def raydo_ray_env(raydo_ray_session: None, tmp_path: Path) -> Iterator[RayEnv]:
    """raydo on real Ray and a fresh LMDB folder, with a skewable clock; its actors are killed
    after the test."""
    from raydo.testing import RayEnv

    with RayEnv(tmp_path / "raydo") as env:
        yield env
