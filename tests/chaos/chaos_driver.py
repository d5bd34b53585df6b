"""Driver of the crash matrix: `chaos_driver.py CONFIG TAG`, joined to the cluster in RAY_ADDRESS.

Idempotent from the top, so a new driver finishes what a killed one started: it re-runs every
create_batch call (existing ids are skipped), sends the events the ledger does not list as sent
(early ones at once, late ones once the instance waits at that event), optionally kills the
namespace or timer actor at set points of progress, waits until every instance is complete and
writes every instance's status with its step table to the results file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import chaoslib as cl
import ray
from ray.exceptions import GetTimeoutError, RayActorError

import raydo
from raydo.actors import handles


def getpid(_actor: Any) -> int:
    return os.getpid()


def actor_pid(handle: Any, other_than: int | None = None, timeout: float = 60) -> int:
    """The actor's pid; after a kill, waits until a new process answers (the restart)."""
    deadline = time.time() + timeout
    while True:
        try:
            pid = int(ray.get(handle.__ray_call__.remote(getpid), timeout=10))
            if pid != other_than:
                return pid
        except (RayActorError, GetTimeoutError):
            pass
        if time.time() > deadline:
            raise TimeoutError(f"actor {handle} did not come back")
        time.sleep(0.1)


def in_flight_at(ledger: str, t: float) -> set[tuple[int, float]]:
    """Processes running an attempt at time `t` (started before, not ended before)."""
    rows = cl.query(
        ledger, "select pid, ctime from attempts where t0 <= ? and (t1 is null or t1 > ?)", (t, t)
    )
    return {(int(p), float(c)) for p, c in rows}


class Run:
    def __init__(self, cfg: cl.Config, tag: str) -> None:
        self.cfg, self.tag = cfg, tag
        raydo.init(cfg.storage)
        self.wf = raydo.workflow(cl.ChaosFlow, name=cl.WORKFLOW, concurrency=cfg.concurrency)
        self.ids = [cl.iid_of(n) for n in range(cfg.n)]
        self.handles: dict[str, Any] = {}
        self.faults_done = len(
            cl.query(cfg.ledger, "select 1 from faults where kind = ?", (cfg.fault or "",))
        )

    # -- creation ----------------------------------------------------------------------------

    def create(self) -> None:
        cfg = self.cfg
        for b in range(0, cfg.n, cfg.batch):
            chunk = self.ids[b : b + cfg.batch]
            items = [{"id": i, "params": {"n": cl.n_of(i), "ledger": cfg.ledger}} for i in chunk]
            created = self.wf._create_new(items).result()  # only the ids this call created
            cl.ledger_write(
                cfg.ledger,
                "insert into batches values (?, ?, ?, ?, ?)",
                (self.tag, b // cfg.batch, len(chunk), len(created), time.time()),
            )
            print(f"BATCH {b // cfg.batch} {len(created)}", flush=True)
        print("CREATED", flush=True)

    # -- events ------------------------------------------------------------------------------

    def send(self, iid: str, k: int, late: bool) -> None:
        cfg = self.cfg
        with cl.send_lock(cfg.lockfile, cfg.holdfile):
            inst = self.handles.get(iid)
            if inst is None:
                inst = self.handles[iid] = self.wf.get(iid).result()
            inst.send_event(type="go", payload=cl.payload(iid, k)).result()
            cl.ledger_write(
                cfg.ledger,
                "insert into events values (?, ?, ?, ?, ?)",
                (iid, k, int(late), time.time(), self.tag),
            )

    def statuses(self) -> dict[str, str]:
        return {s.id: s.status.value for s in self.wf.instances().result()}

    # -- driver-side faults ------------------------------------------------------------------

    def maybe_fault(self, statuses: dict[str, str]) -> None:
        cfg = self.cfg
        if cfg.fault is None or self.faults_done >= cfg.kills:
            return
        progress = cl.finished_steps(cfg.ledger) / (cfg.n * len(cl.DO_STEPS))
        if progress < 0.9 * (self.faults_done + 1) / (cfg.kills + 1):
            return
        if cfg.fault == "namespace":
            # land it while steps run (their actors die with the namespace)
            if not cl.in_flight(cfg.ledger, 0.1) and time.time() < self._fault_wait_until():
                return
            self.kill_namespace()
        else:
            napping = sum(1 for s in statuses.values() if s == "waiting")
            if not napping and time.time() < self._fault_wait_until():
                return
            self.kill_timer(napping)
        self._fault_wait = None
        self.faults_done += 1

    _fault_wait: float | None = None

    def _fault_wait_until(self) -> float:
        if self._fault_wait is None:
            self._fault_wait = time.time() + 3.0
        return self._fault_wait

    def kill_namespace(self) -> None:
        cfg = self.cfg
        actor = self.wf.actor
        old_pid = actor_pid(actor)
        before = {p for p in cl.ledger_processes(cfg.ledger) if cl.alive(*p)}
        flying = cl.in_flight(cfg.ledger, 5.0)
        t = time.time()
        ray.kill(actor, no_restart=False)  # Ray restarts it: detached, max_restarts=-1
        print(f"KILL namespace {old_pid} at {t:.3f}", flush=True)
        new_pid = actor_pid(actor, other_than=old_pid)
        # its pooled instance actors die with it; also those whose first ledger row landed
        # after `before` was read, for an attempt in flight at the kill (read after the death
        # wait: a dead process writes no more rows)
        deadline = time.time() + 30
        while time.time() < deadline and any(cl.alive(*p) for p in before):
            time.sleep(0.1)
        before |= in_flight_at(cfg.ledger, t)
        while time.time() < deadline and any(cl.alive(*p) for p in before):
            time.sleep(0.1)
        victims = sorted(p for p in before if not cl.alive(*p))
        survivors = sorted(p for p in before if cl.alive(*p))
        cl.record_fault(
            cfg.ledger,
            "namespace",
            old_pid=old_pid,
            new_pid=new_pid,
            killed_at=t,
            in_flight=len(flying),
            victims=victims,
            survivors=survivors,
            restart_s=round(time.time() - t, 2),
        )
        print(
            f"FAULT namespace {old_pid}->{new_pid} in flight {len(flying)} "
            f"victims {len(victims)} survivors {len(survivors)}",
            flush=True,
        )

    def kill_timer(self, napping: int) -> None:
        cfg = self.cfg
        actor = ray.get_actor(handles.timer_name(raydo.init().storage), namespace="raydo")
        old_pid = actor_pid(actor)
        t = time.time()
        ray.kill(actor, no_restart=False)
        new_pid = actor_pid(actor, other_than=old_pid)
        cl.record_fault(
            cfg.ledger,
            "timer",
            old_pid=old_pid,
            new_pid=new_pid,
            killed_at=t,
            waiting=napping,
            restart_s=round(time.time() - t, 2),
        )
        print(f"FAULT timer {old_pid}->{new_pid} waiting {napping}", flush=True)

    # -- the loop ----------------------------------------------------------------------------

    def drive(self) -> None:
        cfg = self.cfg
        sent = {(i, k) for i, k in cl.query(cfg.ledger, "select iid, k from events")}
        pending = [(i, k) for i in self.ids for k in (0, 1) if (i, k) not in sent]
        deadline = time.time() + cfg.deadline
        last_report = 0.0
        while True:
            started = {(i, s) for i, s in cl.query(cfg.ledger, "select iid, step from attempts")}
            statuses = self.statuses()  # after the ledger: "waiting" is then at or past the wait
            self.maybe_fault(statuses)
            waiting_for = {iid for iid, _ in pending}
            for iid, k in list(pending):
                n = cl.n_of(iid)
                is_late = cl.late(n, k)
                if k == 1 and (iid, 0) in pending:
                    continue  # one event at a time, in order
                if is_late:
                    need = "s2" if k == 0 else "s3"
                    if (iid, need) not in started or statuses.get(iid) != "waiting":
                        continue
                self.send(iid, k, is_late)
                pending.remove((iid, k))
            done = sum(1 for s in statuses.values() if s == "complete")
            if done == cfg.n and not pending:
                break
            now = time.time()
            if now - last_report > 5:
                last_report = now
                print(
                    f"PROGRESS {dict(Counter(statuses.values()))} pending events {len(pending)} "
                    f"({len(waiting_for)} instances)",
                    flush=True,
                )
            if now > deadline:
                self.diagnose(statuses)
                sys.exit(2)
            time.sleep(0.2)

    def collect(self) -> None:
        out = {}
        for iid in self.ids:
            st = self.wf.get(iid).result().status(steps=True).result()
            out[iid] = {
                "status": st.status.value,
                "output": st.output,
                "error": None if st.error is None else [st.error.name, st.error.message],
                "steps": [
                    {
                        "name": s.name,
                        "count": s.count,
                        "type": s.type,
                        "state": s.state,
                        "attempts": s.attempts,
                        "output": s.output,
                        "error": None if s.error is None else [s.error.name, s.error.message],
                        "started_at": _ts(s.started_at),
                        "ended_at": _ts(s.ended_at),
                    }
                    for s in st.steps
                ],
            }
        Path(self.cfg.results).write_text(json.dumps(out))
        print("DONE", flush=True)

    def diagnose(self, statuses: dict[str, str]) -> None:
        print(f"TIMEOUT {dict(Counter(statuses.values()))}", flush=True)
        for iid, status in list((i, s) for i, s in statuses.items() if s != "complete")[:10]:
            st = self.wf.get(iid).result().status(steps=True).result()
            steps = [(s.name, s.state, s.attempts) for s in st.steps]
            print(f"  {iid} {status} wake_at={st.wake_at} steps={steps}", flush=True)
        print(f"  namespace stats {ray.get(self.wf.actor.stats.remote())}", flush=True)


def _ts(dt: Any) -> float | None:
    return None if dt is None else dt.timestamp()


def main() -> None:
    cfg = cl.Config.load(sys.argv[1])
    run = Run(cfg, sys.argv[2])
    print(f"START {os.getpid()}", flush=True)
    run.create()
    run.drive()
    run.collect()
    # joined, not started: the cluster keeps running, and raydo's actors too unless it is shared
    raydo.shutdown(kill_actors=cfg.kill_actors_at_end)


if __name__ == "__main__":
    main()
