"""benchmarks/scale.py at its --quick size: every phase runs end to end on real Ray and LMDB and
reports its figures (no timing is asserted: the machine is shared). It runs as its own process:
the benchmark starts (and stops) a private Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.ray,
    pytest.mark.extended,
]

ROOT = Path(__file__).resolve().parents[2]


def test_scale_quick_runs_every_phase(tmp_path: Path) -> None:
    args = ["--quick", "--quiet", "--concurrency", "2", "--storage-root", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), *args],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout)
    assert r["creates"]["create_batch_per_s"] > 0 and r["creates"]["create_per_s"] > 0
    assert r["sleepflow"]["instances"] == 200 and r["sleepflow"]["per_s"] > 0
    waiting = r["waiting"]
    # 200 waiting instances hold no actor each: only the workflow's pool (concurrency 2)
    grown = waiting["sleep_memory_waiting"]["instance_actors"]
    assert grown - waiting["memory_before"]["instance_actors"] <= 2
    assert waiting["sleep"]["p50_ms"] >= 0 and waiting["event"]["p50_ms"] >= 0
    assert r["recovery"]["recovered_s"] <= r["recovery"]["first_run_s"]
    assert r["recovery"]["first_run_s"] <= r["recovery"]["all_done_s"]
    flat = r["flat"]
    assert flat["lmdb_bytes_per_finished_instance"] > 0
    assert set(flat["full_over_empty"]) == {"create_ms", "status_ms", "send_event_ms", "step_us"}
    hold = r["hold"]
    # 2,000 written waiting: all counted after a restart, still waiting, none needs an actor
    assert hold["waiting_counted"] == 2_000 and hold["one_of_them"] == "waiting"
    assert hold["memory_waiting"]["instance_actors"] <= 2
    assert hold["lmdb_bytes_per_waiting_instance"] > 0
    assert not list(tmp_path.iterdir())  # its storage was removed
