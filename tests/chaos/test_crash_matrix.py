"""The crash matrix: one workload, one fault per scenario, and the same verdict after recovery.

The scenarios share one Ray (`ray start --head`, own port and temp dir; whole_cluster_sigkill
starts its own, as it kills them), each on its own storage, run the workload
from a driver subprocess (chaos_driver.py), injects its fault, lets a driver finish the job and
checks (chaoslib.verify): every instance complete with the right output; every finished step ran
once, except attempts in flight in a process a fault killed (at most one per killed process, one
per kill per instance); every event delivered once, in order; the status step tables agree with
the ledger. Only processes of the cluster the test started are killed.

The CI subset runs by default; `RAYDO_CHAOS_FULL=1` runs the full matrix (see README.md).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import chaoslib as cl
import pytest

FULL = os.environ.get("RAYDO_CHAOS_FULL") == "1"
N = int(os.environ.get("RAYDO_CHAOS_N", 500 if FULL else 40))
BATCH = 100 if FULL else 10
CONCURRENCY = 4
KILLS = {  # faults injected per scenario
    "instance": 25 if FULL else 4,
    "namespace": 5 if FULL else 1,
    "timer": 5 if FULL else 1,
    "cluster": 3 if FULL else 1,
    "driver": 2 if FULL else 1,
}
DEADLINE = 3000 if FULL else 150  # seconds a driver may take to finish

pytestmark = [pytest.mark.chaos, pytest.mark.ray, pytest.mark.timeout(4000 if FULL else 240)]


class Lab:
    """What one scenario started: its clusters and drivers, all killed at the end by pid. The
    module's shared cluster (`shared()`) is killed by its own fixture."""

    def __init__(self, tmp: Path, name: str, shared: Callable[[], cl.Cluster]) -> None:
        self.tmp, self.name, self.shared = tmp, name, shared
        self.cfg_path = tmp / "config.json"
        self.cfg = cl.Config(
            storage=str(tmp / "storage"),
            ledger=str(tmp / "ledger.sqlite"),
            n=N,
            batch=BATCH,
            concurrency=CONCURRENCY,
            lockfile=str(tmp / "send.lock"),
            holdfile=str(tmp / "send.hold"),
            results=str(tmp / "results.json"),
            deadline=DEADLINE,
            kill_actors_at_end=True,
        )
        cl.init_ledger(self.cfg.ledger)
        self.clusters: list[cl.Cluster] = []
        self.drivers: list[cl.Driver] = []
        self.started = time.time()

    def cluster(self, own: bool = False) -> cl.Cluster:
        """The module's shared cluster; `own`: a new one this scenario may kill."""
        if not own:
            return self.shared()
        self.cfg.kill_actors_at_end = False  # the cluster dies with the scenario
        c = new_cluster()
        self.clusters.append(c)
        return c

    def driver(self, tag: str, cluster: cl.Cluster) -> cl.Driver:
        self.cfg.save(self.cfg_path)
        d = cl.Driver(self.cfg_path, tag, cluster.env, self.tmp)
        self.drivers.append(d)
        return d

    def progress(self) -> float:
        return cl.finished_steps(self.cfg.ledger) / (N * len(cl.DO_STEPS))

    def close(self) -> None:
        for d in self.drivers:
            if d.proc.poll() is None:
                cl.kill_process(d.proc)
        for c in self.clusters:
            if not c.killed:
                c.kill()
            shutil.rmtree(c.temp, ignore_errors=True)

    def finish(
        self, faults: list[cl.Fault], per_fault_bound: int, notes: list[str] | None = None
    ) -> cl.Verdict:
        verdict = cl.verify(
            self.name, self.cfg, faults, per_fault_bound, time.time() - self.started
        )
        verdict.notes.extend(notes or [])
        cl.VERDICTS.append(verdict)
        print("\n" + cl.table([verdict]))
        for note in verdict.notes:
            print("  " + note)
        return verdict


def new_cluster() -> cl.Cluster:
    c = cl.Cluster(Path("/tmp"))  # short: Ray's socket paths must stay under 108 chars
    c.wait_ready()
    return c


@pytest.fixture(scope="module")
def chaos_cluster() -> Iterator[cl.Cluster]:
    """One Ray for the scenarios that kill actors or drivers, not the cluster: a start saved per
    scenario. Each scenario has its own storage and ledger; its last driver kills its actors."""
    c = new_cluster()
    try:
        yield c
    finally:
        if not c.killed:
            c.kill()
        shutil.rmtree(c.temp, ignore_errors=True)


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    def shared() -> cl.Cluster:
        return cast(cl.Cluster, request.getfixturevalue("chaos_cluster"))

    lab = Lab(tmp_path, request.node.name.removeprefix("test_"), shared)
    try:
        yield lab
    finally:
        lab.close()


def _threshold(done: int, total: int) -> float:
    """Progress at which fault number `done` (0-based) of `total` is injected: spread over the
    first 90 % of the run."""
    return 0.9 * (done + 1) / (total + 1)


def _running(*drivers: cl.Driver) -> bool:
    return any(d.proc.poll() is None for d in drivers)


def _driver_faults(lab: Lab, kind: str) -> list[cl.Fault]:
    faults = []
    for _, _, detail in cl.query(lab.cfg.ledger, "select * from faults where kind = ?", (kind,)):
        info = json.loads(detail)
        victims = {(int(p), float(c)) for p, c in info.get("victims", [])}
        faults.append(cl.Fault(kind, victims, detail))
    return faults


def test_instance_actor_sigkill(lab: Lab) -> None:
    """SIGKILL random instance actors while their steps run (two kills in three mid-step, the
    third just after a step body returned: while the actor records the result or moves on)."""
    cluster = lab.cluster()
    driver = lab.driver("d1", cluster)
    faults: list[cl.Fault] = []
    rng = random.Random(7)
    while _running(driver):
        if len(faults) < KILLS["instance"] and lab.progress() >= _threshold(
            len(faults), KILLS["instance"]
        ):
            mid_step = len(faults) % 3 != 2
            if mid_step:
                candidates = cl.in_flight(lab.cfg.ledger, 0.1)
            else:
                candidates = cl.just_ended(lab.cfg.ledger, 0.03)
            rng.shuffle(candidates)
            for iid, step, pid, ctime in candidates:
                if cl.alive(pid, ctime) and cluster.owns(pid):
                    os.kill(pid, signal.SIGKILL)
                    when = "mid-step" if mid_step else "after-step"
                    faults.append(
                        cl.Fault("instance actor", {(pid, ctime)}, f"{iid}/{step} {when}")
                    )
                    cl.record_fault(lab.cfg.ledger, "instance", pid=pid, iid=iid, step=step)
                    break
        time.sleep(0.01)
    driver.finish(10)
    assert len(faults) == KILLS["instance"], f"only {len(faults)} kills landed"
    lab.finish(faults, per_fault_bound=1)


def test_namespace_actor_kill(lab: Lab) -> None:
    """ray.kill the namespace actor (Ray restarts it; it recovers from storage). Its pooled
    instance actors die with it: every step they were running may run once more."""
    lab.cfg.fault, lab.cfg.kills = "namespace", KILLS["namespace"]
    cluster = lab.cluster()
    driver = lab.driver("d1", cluster)
    driver.finish(DEADLINE + 60)
    faults = _driver_faults(lab, "namespace")
    assert len(faults) == KILLS["namespace"], driver.tail()
    verdict = lab.finish(faults, per_fault_bound=CONCURRENCY)
    survivors = [json.loads(f.detail)["survivors"] for f in faults]
    assert not any(survivors), f"instance actors outlived their namespace: {survivors}"
    assert verdict


def test_timer_actor_kill(lab: Lab) -> None:
    """ray.kill the timer actor (Ray restarts it; it rebuilds its heap from storage) while
    instances nap: no wake-up may be lost, and no step runs twice."""
    lab.cfg.fault, lab.cfg.kills = "timer", KILLS["timer"]
    cluster = lab.cluster()
    driver = lab.driver("d1", cluster)
    driver.finish(DEADLINE + 60)
    faults = _driver_faults(lab, "timer")
    assert len(faults) == KILLS["timer"], driver.tail()
    lab.finish(faults, per_fault_bound=0)


def test_whole_cluster_sigkill(lab: Lab) -> None:
    """SIGKILL every process of the cluster (and the driver) mid-run, start a new cluster on the
    same storage, and let a new driver finish."""
    cluster = lab.cluster(own=True)
    driver = lab.driver("d1", cluster)
    faults: list[cl.Fault] = []
    while len(faults) < KILLS["cluster"]:
        while lab.progress() < _threshold(len(faults), KILLS["cluster"]) or not cl.in_flight(
            lab.cfg.ledger, 0.1
        ):
            assert _running(driver), driver.tail()
            time.sleep(0.03)
        with cl.quiet_sends(lab.cfg.lockfile, lab.cfg.holdfile):  # no event half-sent
            victims = {p for p in cl.ledger_processes(lab.cfg.ledger) if cl.alive(*p)}
            flying = len(cl.in_flight(lab.cfg.ledger, 5.0))
            killed = cluster.kill()
            cl.kill_process(driver.proc)
        assert not any(cl.alive(*p) for p in victims), "an instance actor survived the kill"
        faults.append(cl.Fault("cluster", victims, f"{killed} processes, {flying} in flight"))
        cl.record_fault(lab.cfg.ledger, "cluster", processes=killed, in_flight=flying)
        shutil.rmtree(cluster.temp, ignore_errors=True)
        cluster = lab.cluster(own=True)
        driver = lab.driver(f"d{len(faults) + 1}", cluster)
    driver.finish(DEADLINE + 60)
    lab.finish(faults, per_fault_bound=CONCURRENCY)


def test_driver_kill_during_create_batch(lab: Lab) -> None:
    """SIGKILL the driver while it creates batches; new drivers re-run every create_batch call
    (existing ids are skipped, each batch all or nothing) and finish. Instances created so far
    keep running without any driver."""
    cluster = lab.cluster()
    batches = -(-N // BATCH)
    faults: list[cl.Fault] = []
    acked: list[int] = []  # batches each killed driver acknowledged (printed)
    Path(lab.cfg.holdfile).touch()  # the doomed drivers create but never send events
    try:
        for j in range(KILLS["driver"]):
            driver = lab.driver(f"d{j + 1}", cluster)
            # kill just after this driver acknowledged one batch more than its predecessor
            target = min((acked[-1] if acked else 0) + 1, batches - 1) - 1
            deadline = time.time() + 120
            while not any(line.startswith(f"BATCH {target} ") for line in driver.lines()):
                assert _running(driver) and time.time() < deadline, driver.tail()
                time.sleep(0.005)
            time.sleep(random.uniform(0, 0.03))
            cl.kill_process(driver.proc)
            acked.append(sum(1 for line in driver.lines() if line.startswith("BATCH ")))
            faults.append(cl.Fault("driver", set(), f"{acked[-1]} batches acknowledged"))
            cl.record_fault(lab.cfg.ledger, "driver", acked=acked[-1])
    finally:
        os.unlink(lab.cfg.holdfile)
    final = lab.driver("final", cluster)
    final.finish(DEADLINE + 60)

    # every create_batch call, by any driver, created all of its batch or none of it; the final
    # driver re-ran every batch and created exactly the ones nobody had committed
    rows = cl.query(lab.cfg.ledger, "select driver, batch, size, created from batches")
    assert all(created in (0, size) for _, _, size, created in rows), rows
    by_driver = {d: {b: created for dd, b, _, created in rows if dd == d} for d, *_ in rows}
    assert sorted(by_driver["final"]) == list(range(batches))
    created_by = Counter(b for _, b, _, created in rows if created)
    # (a killed driver may have had its batch committed without writing the ledger row)
    assert all(created_by[b] <= 1 for b in range(batches)), created_by
    story = []
    for j, count in enumerate(acked):
        following = f"d{j + 2}" if j + 1 < len(acked) else "final"
        committed = sum(1 for c in by_driver[following].values() if c == 0)
        assert committed >= count, "an acknowledged batch was created again"
        story.append(f"d{j + 1} killed after {count} acknowledged, {committed} committed")
    lab.finish(
        faults,
        per_fault_bound=0,
        notes=[f"{'; '.join(story)} (of {batches} batches); re-runs skipped whole batches"],
    )
