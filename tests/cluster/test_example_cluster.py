"""examples/cluster.py as a user runs it (it starts and stops its own 3-node cluster). It takes
about a minute on this machine, so it runs by hand only:

    RAYDO_EXAMPLE_CLUSTER=1 pytest tests/cluster/test_example_cluster.py -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.ray,
    pytest.mark.cluster,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        "1" not in (os.environ.get("RAYDO_EXAMPLE_CLUSTER"), os.environ.get("RAYDO_EXTENDED")),
        reason="about a minute: set RAYDO_EXAMPLE_CLUSTER=1 to run examples/cluster.py",
    ),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster.py"


def test_the_cluster_example_spreads_instances_and_places_the_gpu_step() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=540, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 6 and all(r["status"] == "complete" for r in rows), rows
    assert len({r["home"] for r in rows}) >= 2, rows
    assert {r["train"]["node"] for r in rows} == {"n3"}
    assert all(r["train"]["gpus"] == ["0"] for r in rows)
    print(done.stdout)
