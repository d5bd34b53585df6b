"""raydo at scale on one node: the capacity set of issue 11 in one command.

    python benchmarks/scale.py                      # every phase, 100,000 waiting instances
    python benchmarks/scale.py --quick              # smoke size (a few hundred), ~1-2 minutes
    python benchmarks/scale.py --phases waiting --waiting 1000000   # how far 1M waiting gets
    python benchmarks/scale.py --json               # one JSON object on stdout

Phases (`--phases`, comma separated, default all):
  creates    creates/s through create_batch (batches of 100) and through create (one at a time,
             `--create-clients` of them at once)
  sleepflow  step, sleep, step by `--sleepflow` instances: instances/s = n / (end to end - sleep)
  waiting    `--waiting` instances sleeping until one shared time, then `--waiting` waiting for an
             event: memory growth of every raydo process (PSS, shared pages counted once:
             driver, namespace, timer and instance actors) while they wait, LMDB size, instance
             actors alive, wake lateness p50/p99/max, time to drain
  recovery   `--recovery` instances waiting; raydo (and its Ray) shut down; init again once their
             time has passed: time until the namespace has recovered, until the first overdue
             instance has run, until all have
  flat       create / status / send_event latency and per-step cost on an empty storage, then again
             with `--finished` finished instances (written straight through the storage layer)
  hold       `--hold` instances asleep for a day (written through the storage layer's own
             methods, as a run leaves them); raydo restarted on them: time to the first call,
             a new instance's run meanwhile, memory and LMDB size (the 1,000,000 of issue 11)

Every phase prints the 1-minute load average beside its figures: on a shared machine they skew.
Everything runs on a fresh temporary storage under `--storage-root` with a private local Ray.
From Python (the smoke test): `from benchmarks.scale import main; main(["--quick", "--quiet"])`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import raydo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import StepLoop, pct  # the same step loop and nearest-rank percentile

# --------------------------------------------------------------------------------------------------
# workflows under test (module level, so Ray can ship them)


class SleepUntil(raydo.WorkflowEntrypoint):
    """Sleeps until payload["at"]; returns how late it woke."""

    async def run(self, event: Any, step: Any) -> Any:
        at = float(event.payload["at"])
        # a start later than `at` (a long queue) sleeps 0 s instead of failing sleep_until
        started = float(await step.do("started", time.time))
        await step.sleep("nap", max(0.0, at - started))
        return float(await step.do("woke", time.time)) - at


class AwaitsGo(raydo.WorkflowEntrypoint):
    """Waits for a "go" event; returns how long after its sending the instance ran on."""

    async def run(self, event: Any, step: Any) -> Any:
        got = await step.wait_for_event("go", type="go", timeout="1 day")
        return float(await step.do("woke", time.time)) - float(got.payload["sent"])


class StepSleepStep(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        async def one() -> int:
            return 1

        await step.do("before", one)
        await step.sleep("nap", float(event.payload["sleep"]))
        return await step.do("after", one)


# --------------------------------------------------------------------------------------------------
# helpers

VERBOSE = True


def log(msg: str) -> None:
    if VERBOSE:
        print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def spread(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": pct(values, 50) * 1e3,
        "p99_ms": pct(values, 99) * 1e3,
        "max_ms": max(values, default=float("nan")) * 1e3,
    }


def raydo_processes() -> dict[int, str]:
    """This driver and every raydo actor process of the local Ray this run started (children of
    its raylet: other Rays on a shared machine are left out)."""
    import psutil
    import ray

    procs = {os.getpid(): "driver"}
    node = ray._private.worker._global_node
    raylet = node.all_processes["raylet"][0].process.pid
    for child in psutil.Process(raylet).children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        for kind in ("NamespaceActor", "InstanceActor", "TimerActor", "NodeActor"):
            if f"ray::{kind}" in cmd:
                procs[child.pid] = kind
    return procs


def lmdb_mb(storage: str) -> float:
    """Disk blocks the storage's LMDB file holds, in MB."""
    return round(os.stat(os.path.join(storage, "data.mdb")).st_blocks * 512 / 1e6, 1)


def _rollup(pid: int) -> dict[str, float]:
    """Rss, Pss and Pss_Anon of one process in MB (Linux smaps_rollup)."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss", "Pss_Anon"):
                out[name] = int(rest.split()[0]) / 1e3
    return out


def memory() -> dict[str, Any]:
    """Memory of every raydo process, in MB, and how many instance actors are alive.

    `total_mb` sums PSS: each page shared by several processes (the LMDB file every actor maps,
    the Python and Ray libraries) counted once, split among them; `heap_mb` is the anonymous
    (private heap) part of it. RSS (`rss_mb`) counts the mapped LMDB file once per process that
    touched it, so it grows with the storage in every actor while no heap grows."""
    by_kind: dict[str, float] = {}
    heap = rss = 0.0
    procs = raydo_processes()
    for pid, kind in procs.items():
        try:
            m = _rollup(pid)
        except OSError:
            continue
        by_kind[kind] = by_kind.get(kind, 0.0) + m.get("Pss", 0.0)
        heap += m.get("Pss_Anon", 0.0)
        rss += m.get("Rss", 0.0)
    return {
        "total_mb": round(sum(by_kind.values()), 1),
        "heap_mb": round(heap, 1),
        "rss_mb": round(rss, 1),
        "by_kind_mb": {k: round(v, 1) for k, v in by_kind.items()},
        "instance_actors": sum(1 for k in procs.values() if k == "InstanceActor"),
    }


async def until(check: Any, what: str, limit: float) -> float:
    """Poll `check()` (an awaitable factory) until true; returns when it became true."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await check():
            return time.time()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what}: not within {limit:.0f} s")


async def count_in(wf: raydo.Workflow, status: str) -> int:
    return int((await wf.counts())[status])


async def create_many(
    wf: raydo.Workflow, payloads: list[dict[str, Any]]
) -> tuple[float, list[str]]:
    """create_batch in batches of 100, 8 batches in flight; returns creates/s and the ids."""
    t0 = time.perf_counter()
    chunks = [payloads[i : i + 100] for i in range(0, len(payloads), 100)]
    ids: list[str] = []
    for i in range(0, len(chunks), 8):
        made = await asyncio.gather(
            *(wf.create_batch([{"params": p} for p in c]) for c in chunks[i : i + 8])
        )
        ids += [inst.id for batch in made for inst in batch]
    return len(payloads) / (time.perf_counter() - t0), ids


async def outputs(wf: raydo.Workflow, ids: list[str]) -> list[float]:
    """Every instance's output (wait_all returns them), 1,000 per call."""
    found: list[float] = []
    for i in range(0, len(ids), 1000):
        found += [float(st.output) for st in await wf.wait_all(ids[i : i + 1000], timeout=600)]
    return found


def kill_namespace(wf: raydo.Workflow) -> None:
    """Drop a finished phase's namespace actor (its pooled instance actors die with it), so its
    processes weigh neither on the next phase's memory nor its CPU."""
    import ray

    ray.kill(wf.actor, no_restart=True)


# --------------------------------------------------------------------------------------------------
# phases


async def phase_creates(a: argparse.Namespace) -> dict[str, Any]:
    wf = raydo.workflow(AwaitsGo, name="scale_creates")
    batch_rate, _ = await create_many(wf, [{}] * a.creates)
    t0 = time.perf_counter()
    per_client = max(1, a.single_creates // a.create_clients)

    async def client() -> None:
        for _ in range(per_client):
            await wf.create(params={})

    await asyncio.gather(*(client() for _ in range(a.create_clients)))
    single_rate = per_client * a.create_clients / (time.perf_counter() - t0)
    kill_namespace(wf)
    return {
        "create_batch_per_s": round(batch_rate),
        "create_per_s": round(single_rate),
        "create_clients": a.create_clients,
        "load": load(),
    }


async def phase_sleepflow(a: argparse.Namespace) -> dict[str, Any]:
    wf = raydo.workflow(
        StepSleepStep, name="scale_sleepflow", concurrency=a.concurrency, actors=a.actors
    )
    t0 = time.perf_counter()
    rate, _ = await create_many(wf, [{"sleep": a.sleep}] * a.sleepflow)
    await until(lambda: _all_in(wf, "complete", a.sleepflow), "sleepflow completes", 3600 + a.sleep)
    total = time.perf_counter() - t0
    kill_namespace(wf)
    return {
        "instances": a.sleepflow,
        "sleep_s": a.sleep,
        "end_to_end_s": round(total, 1),
        "per_s": round(a.sleepflow / max(1e-9, total - a.sleep)),
        "create_batch_per_s": round(rate),
        "load": load(),
    }


async def _all_in(wf: raydo.Workflow, status: str, n: int) -> bool:
    return await count_in(wf, status) >= n


async def _settled(wf: raydo.Workflow, n: int) -> bool:
    """Every instance is asleep or already done."""
    counts = await wf.counts()
    return int(counts["waiting"]) + int(counts["complete"]) >= n


async def phase_waiting(a: argparse.Namespace, storage: str) -> dict[str, Any]:
    r: dict[str, Any] = {"instances": a.waiting, "memory_before": memory()}
    sleepers = raydo.workflow(
        SleepUntil, name="scale_sleep", concurrency=a.concurrency, actors=a.actors
    )
    at = time.time() + a.waiting / a.expected_create_rate + 15
    rate, ids = await create_many(sleepers, [{"at": at}] * a.waiting)
    r["create_batch_per_s"] = round(rate)
    created_late = max(0.0, time.time() - at)
    # all asleep at once, unless some started after the shared time (then they never wait)
    await until(lambda: _settled(sleepers, a.waiting), "sleepers wait", 3600)
    r["sleep_all_waiting_at_once"] = await _all_in(sleepers, "waiting", a.waiting)
    r["sleep_memory_waiting"] = memory()
    r["lmdb_mb_sleeping"] = lmdb_mb(storage)
    r["load_waiting"] = load()
    done = await until(lambda: _all_in(sleepers, "complete", a.waiting), "sleepers wake", 3600)
    r["sleep"] = {**spread(await outputs(sleepers, ids)), "drain_s": round(done - at, 2)}
    r["sleep"]["created_after_wake_time_s"] = round(created_late, 1)
    r["load_sleep"] = load()
    kill_namespace(sleepers)
    if "event" not in a.kinds.split(","):
        r["memory_growth_mb"] = round(
            r["sleep_memory_waiting"]["total_mb"] - r["memory_before"]["total_mb"], 1
        )
        return r

    waiters = raydo.workflow(
        AwaitsGo, name="scale_events", concurrency=a.concurrency, actors=a.actors
    )
    _, ids = await create_many(waiters, [{}] * a.waiting)
    await until(lambda: _all_in(waiters, "waiting", a.waiting), "event waiters wait", 3600)
    r["event_memory_waiting"] = memory()
    r["lmdb_mb_waiting"] = lmdb_mb(storage)
    t_send = time.time()
    for i in range(0, len(ids), 500):
        insts = [raydo.WorkflowInstance(waiters, iid) for iid in ids[i : i + 500]]
        await asyncio.gather(
            *(x.send_event(type="go", payload={"sent": time.time()}) for x in insts)
        )
    sent = time.time()
    done = await until(lambda: _all_in(waiters, "complete", a.waiting), "waiters finish", 3600)
    r["event"] = {
        **spread(await outputs(waiters, ids)),
        "send_s": round(sent - t_send, 2),
        "drain_s": round(done - t_send, 2),
    }
    r["load_event"] = load()
    kill_namespace(waiters)
    peak = max(r["sleep_memory_waiting"]["total_mb"], r["event_memory_waiting"]["total_mb"])
    r["memory_growth_mb"] = round(peak - r["memory_before"]["total_mb"], 1)
    return r


async def phase_recovery(a: argparse.Namespace, storage: str) -> dict[str, Any]:
    sleepers = raydo.workflow(
        SleepUntil, name="scale_recovery", concurrency=a.concurrency, actors=a.actors
    )
    at = time.time() + a.recovery / a.expected_create_rate + 10
    _, ids = await create_many(sleepers, [{"at": at}] * a.recovery)
    await until(lambda: _all_in(sleepers, "waiting", a.recovery), "recovery set waits", 3600)
    raydo.shutdown(kill_actors=True)
    await asyncio.sleep(max(0.0, at - time.time() + 1))  # every one of them is now overdue
    t0 = time.perf_counter()
    raydo.init(storage=storage, address="local", sync_commits=a.sync_commits == "on")
    t_init = time.perf_counter() - t0
    again = raydo.workflow(
        SleepUntil, name="scale_recovery", concurrency=a.concurrency, actors=a.actors
    )
    await again.counts()  # answered once the namespace has recovered (recovery runs first)
    t_recovered = time.perf_counter() - t0
    await until(lambda: _all_in(again, "complete", 1), "first overdue instance runs", 3600)
    t_first = time.perf_counter() - t0
    await until(lambda: _all_in(again, "complete", a.recovery), "all recovered finish", 3600)
    t_all = time.perf_counter() - t0
    late = spread(await outputs(again, ids))
    kill_namespace(again)
    return {
        "instances": a.recovery,
        "init_s": round(t_init, 2),
        "recovered_s": round(t_recovered, 2),
        "first_run_s": round(t_first, 2),
        "all_done_s": round(t_all, 2),
        "lateness_max_ms": late["max_ms"],
        "load": load(),
    }


async def costs(tag: str, n: int) -> dict[str, float]:
    """Median create / status / send_event latency (ms) and per-step cost (us)."""
    wf = raydo.workflow(AwaitsGo, name=f"scale_flat_{tag}")
    made, t_create = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        made.append(await wf.create(params={}))
        t_create.append(time.perf_counter() - t0)
    await until(lambda: _all_in(wf, "waiting", n), "flat set waits", 600)
    t_status, t_event = [], []
    for inst in made:
        t0 = time.perf_counter()
        await inst.status()
        t_status.append(time.perf_counter() - t0)
    for inst in made:
        t0 = time.perf_counter()
        await inst.send_event(type="go", payload={"sent": time.time()})
        t_event.append(time.perf_counter() - t0)
    loop = raydo.workflow(StepLoop, name=f"scale_steps_{tag}")
    per_step = []
    for _ in range(3):
        inst = await loop.create(params={"n": 200})
        per_step.append(float((await inst.wait(timeout=600)).output["elapsed"]) / 200)
    kill_namespace(wf)
    kill_namespace(loop)
    return {
        "create_ms": statistics.median(t_create) * 1e3,
        "status_ms": statistics.median(t_status) * 1e3,
        "send_event_ms": statistics.median(t_event) * 1e3,
        "step_us": statistics.median(per_step) * 1e6,
    }


def fill_finished(storage: str, n: int) -> float:
    """`n` finished instances written straight through the storage layer (as raydo writes them:
    record, params, index and counters; 10,000 per transaction); returns seconds."""
    from raydo.storage import keys
    from raydo.storage.instances import InstanceStore
    from raydo.storage.kv import Writer, open_lmdb
    from raydo.storage.records import InstanceRecord, InstanceStatus

    kv = open_lmdb(storage)
    store = InstanceStore(kv, "scale_history")
    t0, now = time.perf_counter(), time.time() - 86400

    def chunk(w: Writer, start: int) -> None:
        for i in range(start, min(n, start + 10_000)):
            rec = InstanceRecord(f"h{i:08d}", "scale_history", InstanceStatus.COMPLETE, now + i)
            rec.started_at, rec.ended_at = now + i, now + i
            w.put(keys.params("scale_history", rec.id), b"\x80")
            store._put_record(w, rec)  # the write raydo's own settle makes

    for start in range(0, n, 10_000):
        kv.write(functools.partial(chunk, start=start), durable=False)
    # On disk before "full" is measured: a commit's fsync flushes every dirty page of the file,
    # so the first ones after an unsynced fill would time the fill's writeback, not raydo.
    kv.sync_committed()
    return time.perf_counter() - t0


async def phase_flat(a: argparse.Namespace, storage: str) -> dict[str, Any]:
    from raydo.storage.kv import open_lmdb

    empty = await costs("empty", a.flat_samples)
    used0 = open_lmdb(storage).used_bytes()
    fill_s = fill_finished(storage, a.finished)
    per_instance = (open_lmdb(storage).used_bytes() - used0) / max(1, a.finished)
    full = await costs("full", a.flat_samples)
    return {
        "finished": a.finished,
        "fill_s": round(fill_s, 1),
        "lmdb_bytes_per_finished_instance": round(per_instance),
        "empty": {k: round(v, 2) for k, v in empty.items()},
        "full": {k: round(v, 2) for k, v in full.items()},
        "full_over_empty": {k: round(full[k] / empty[k], 2) for k in empty},
        "load": load(),
    }


def fill_waiting(storage: str, workflow: str, n: int, wake_at: float) -> float:
    """`n` SleepUntil instances asleep until `wake_at`, written through the storage layer's own
    methods in the order a real run makes them (create, acquire, the `started` step, the `nap`
    sleep, the waiting settle: the same keys, history and indexes), unsynced; returns seconds.
    A real run gets there at the activation rate (~600/s here); this gets there in minutes."""
    from raydo.storage.codec import encode
    from raydo.storage.instances import InstanceStore
    from raydo.storage.kv import open_lmdb
    from raydo.storage.records import InstanceStatus, StepKind, StepRecord, StepState

    store = InstanceStore(open_lmdb(storage), workflow)
    params = encode({"at": wake_at})
    t0 = time.perf_counter()
    for start in range(0, n, 1_000):
        ids = [f"hold{i:08d}" for i in range(start, min(n, start + 1_000))]
        now = time.time()
        store.create([(iid, params) for iid in ids], now, False)
        leases = store.acquire(ids, now)
        for rec in store.get_many(ids):  # as acquire left them (running, started)
            assert rec is not None
            lease = leases[rec.id]
            done = StepRecord(StepKind.DO, 0, StepState.DONE, 1, value=encode(now))
            done.started_at = done.ended_at = now
            store.save_step(rec.id, lease, ("started", 1), done, durable=False)
            nap = StepRecord(StepKind.SLEEP, 1, StepState.PENDING, until=wake_at)
            nap.started_at = now
            store.save_step(rec.id, lease, ("nap", 1), nap, durable=False)
            rec.status, rec.wake_at = InstanceStatus.WAITING, wake_at
            store.settle(rec.id, lease, rec, None, durable=False)
    return time.perf_counter() - t0


async def phase_hold(a: argparse.Namespace, storage: str) -> dict[str, Any]:
    """`--hold` instances waiting at once, far from their wake-up: written through the storage
    layer (fill_waiting), then raydo restarted on that storage. How long the first call waits,
    whether the namespace still serves new work while it re-arms them, what memory and disk
    they take, and that no instance actor holds any of them."""
    name = "scale_hold"
    before_mb, memory_before = lmdb_mb(storage), memory()
    wake_at = time.time() + 86_400
    fill_s = fill_waiting(storage, name, a.hold, wake_at)
    r: dict[str, Any] = {"instances": a.hold, "fill_s": round(fill_s, 1)}
    r["lmdb_mb"] = lmdb_mb(storage)
    r["lmdb_bytes_per_waiting_instance"] = round((r["lmdb_mb"] - before_mb) * 1e6 / a.hold)
    raydo.shutdown(kill_actors=True)
    r["memory_before"] = memory_before
    t0 = time.perf_counter()
    raydo.init(storage=storage, address="local", sync_commits=a.sync_commits == "on")
    held = raydo.workflow(SleepUntil, name=name, concurrency=a.concurrency, actors=a.actors)
    counts = await held.counts()
    r["first_call_s"] = round(time.perf_counter() - t0, 2)
    r["waiting_counted"] = int(counts["waiting"])
    t1 = time.perf_counter()
    fresh = await held.create(params={"at": time.time()})
    await fresh.wait(timeout=600)
    r["new_instance_done_s"] = round(time.perf_counter() - t1, 2)
    await asyncio.sleep(a.hold / 20_000)  # the background pass: ~10,000 per chunk, fast
    r["memory_waiting"] = memory()
    r["memory_growth_mb"] = round(
        r["memory_waiting"]["total_mb"] - r["memory_before"]["total_mb"], 1
    )
    status = await raydo.WorkflowInstance(held, "hold00000007").status()
    r["one_of_them"] = str(status.status)
    r["load"] = load()
    kill_namespace(held)
    return r


# --------------------------------------------------------------------------------------------------

PHASES = ("creates", "sleepflow", "waiting", "recovery", "flat", "hold")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke sizes (a few hundred)")
    p.add_argument("--phases", default=",".join(PHASES))
    p.add_argument("--waiting", type=int, default=100_000)
    p.add_argument(
        "--kinds", default="sleep,event", help="waiting phase: sleepers, event waiters, or both"
    )
    p.add_argument("--recovery", type=int, default=100_000)
    p.add_argument("--sleepflow", type=int, default=20_000)
    p.add_argument("--sleep", type=float, default=30.0, help="sleepflow's sleep, seconds")
    p.add_argument("--creates", type=int, default=20_000)
    p.add_argument("--single-creates", type=int, default=2_000)
    p.add_argument("--create-clients", type=int, default=8)
    p.add_argument("--finished", type=int, default=1_000_000)
    p.add_argument("--hold", type=int, default=1_000_000, help="waiting instances for `hold`")
    p.add_argument("--flat-samples", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=4, help="instances running at once")
    p.add_argument(
        "--actors", type=int, default=None, help="instance actors (default: one per --concurrency)"
    )
    p.add_argument(
        "--expected-create-rate",
        type=float,
        default=250.0,
        help="instances started per second: places the shared wake time after the last start",
    )
    p.add_argument("--sync-commits", choices=("on", "off"), default="on")
    p.add_argument("--storage-root", default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.waiting = a.recovery = a.sleepflow = a.creates = 200
        a.single_creates, a.finished, a.flat_samples, a.sleep = 50, 2_000, 20, 2.0
        a.hold = 2_000
    return a


async def run_phases(a: argparse.Namespace, storage: str) -> dict[str, Any]:
    r: dict[str, Any] = {}
    for phase in a.phases.split(","):
        log(f"{phase} (load {load()})")
        if phase == "creates":
            r[phase] = await phase_creates(a)
        elif phase == "sleepflow":
            r[phase] = await phase_sleepflow(a)
        elif phase == "waiting":
            r[phase] = await phase_waiting(a, storage)
        elif phase == "recovery":
            r[phase] = await phase_recovery(a, storage)
        elif phase == "flat":
            r[phase] = await phase_flat(a, storage)
        elif phase == "hold":
            r[phase] = await phase_hold(a, storage)
        else:
            raise SystemExit(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}")
        log(f"{phase}: {json.dumps(r[phase], default=str)}")
    return r


def commit() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True)
    return out.stdout.decode().strip()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    global VERBOSE
    a = parse_args(argv)
    VERBOSE = not a.quiet
    import bench
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(bench)  # actors cannot import it: ship by value
    if __name__ != "__main__":  # imported: ship the workflows by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    root = tempfile.mkdtemp(prefix="raydo-scale-", dir=a.storage_root)
    storage = os.path.join(root, "storage")
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
        "cpus": os.cpu_count(),
        "load_at_start": load(),
    }
    raydo.init(storage=storage, address="local", sync_commits=a.sync_commits == "on")
    try:
        result = asyncio.run(run_phases(a, storage))
    finally:
        raydo.shutdown(kill_actors=True)
        import ray

        if ray.is_initialized():
            ray.shutdown()  # the local Ray this process started, and only it
        shutil.rmtree(root, ignore_errors=True)
    result["environment"] = {**env, "load_at_end": load()}
    print(json.dumps(result, indent=None if a.quiet else 2, default=str))
    return result


if __name__ == "__main__":
    main()
