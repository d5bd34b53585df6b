"""Shared pieces of the crash matrix: the workload, the ledger, the cluster and the verdict.

The workload (`ChaosFlow`): five steps, a durable sleep and two event waits of one type. Every step
attempt writes a row to a sqlite ledger that lives outside raydo (WAL mode, shared by every
process), so an attempt that ran twice is visible whatever raydo says about itself.

Two waits of one event type, not one: a re-delivered event would then show up as the second wait's
payload, and the order of the payloads checks first-in-first-out delivery.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import raydo

HERE = Path(__file__).parent
DRIVER = HERE / "chaos_driver.py"
RAY = Path(sys.executable).with_name("ray")
WORKFLOW = "chaos"
DO_STEPS = ("s0", "s1", "s2", "s3", "s4")
STEP_TIME = (0.05, 0.2)  # seconds each attempt sleeps, so kills land mid-step
NAP = "2 seconds"
NAP_SECONDS = 2.0


# -- the workload ------------------------------------------------------------------------------


def iid_of(n: int) -> str:
    return f"c{n:04d}"


def n_of(iid: str) -> int:
    return int(iid[1:])


def payload(iid: str, k: int) -> dict[str, Any]:
    return {"iid": iid, "k": k}


def late(n: int, k: int) -> bool:
    """Which events the test sends only once the wait is reached (the rest are sent right after
    creation and sit in the buffer): n%3 == 0 both early, 1 both late, 2 first early second late."""
    return {0: False, 1: True, 2: k == 1}[n % 3]


def expected_output(iid: str) -> dict[str, Any]:
    n = n_of(iid)
    return {
        "values": [n * 10 + i for i in range(len(DO_STEPS))],
        "events": [payload(iid, 0), payload(iid, 1)],
    }


_CTIME: dict[int, float] = {}


def _ctime() -> float:
    """This process's start time: with its pid, an identity that survives pid reuse."""
    pid = os.getpid()
    if pid not in _CTIME:
        import psutil

        _CTIME[pid] = psutil.Process(pid).create_time()
    return _CTIME[pid]


def ledger_write(ledger: str, sql: str, args: tuple[Any, ...]) -> int:
    last: Exception | None = None
    for _ in range(50):
        try:
            con = sqlite3.connect(ledger, timeout=30)
            try:
                with con:
                    cur = con.execute(sql, args)
                return int(cur.lastrowid or 0)
            finally:
                con.close()
        except sqlite3.OperationalError as exc:  # "database is locked" beyond the timeout
            last = exc
            time.sleep(0.05)
    raise RuntimeError(f"ledger write failed: {last}")


def work(ledger: str, iid: str, n: int, ctx: Any) -> int:
    """One step attempt: ledger row at the start, a short sync sleep, end time, the value."""
    name = ctx.step.name
    row = ledger_write(
        ledger,
        "insert into attempts (iid, step, attempt, pid, ctime, t0) values (?, ?, ?, ?, ?, ?)",
        (iid, name, ctx.attempt, os.getpid(), _ctime(), time.time()),
    )
    time.sleep(random.uniform(*STEP_TIME))
    ledger_write(ledger, "update attempts set t1 = ? where rowid = ?", (time.time(), row))
    return n * 10 + int(name[1:])


class ChaosFlow(raydo.WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        ledger, iid, n = event.payload["ledger"], event.instance_id, event.payload["n"]

        def do(name: str) -> Any:
            return step.do(
                name,
                lambda ctx: work(ledger, iid, n, ctx),
                retries={"limit": 20, "delay": "1 second", "backoff": "constant"},
                timeout="2 minutes",
            )

        values = [await do("s0"), await do("s1")]
        await step.sleep("nap", NAP)
        values.append(await do("s2"))
        first = await step.wait_for_event("first", type="go", timeout="1 hour")
        values.append(await do("s3"))
        second = await step.wait_for_event("second", type="go", timeout="1 hour")
        values.append(await do("s4"))
        return {"values": values, "events": [first.payload, second.payload]}


# -- the ledger --------------------------------------------------------------------------------

SCHEMA = """
create table if not exists attempts (
    iid text, step text, attempt int, pid int, ctime real, t0 real, t1 real);
create table if not exists events (iid text, k int, late int, sent_at real, driver text);
create table if not exists batches (driver text, batch int, size int, created int, t real);
create table if not exists faults (kind text, t real, detail text);
"""


def init_ledger(ledger: str) -> None:
    con = sqlite3.connect(ledger, timeout=30)
    try:
        con.execute("pragma journal_mode=wal")
        con.executescript(SCHEMA)
        con.commit()
    finally:
        con.close()


def query(ledger: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    for _ in range(50):
        try:
            con = sqlite3.connect(ledger, timeout=30)
            try:
                return list(con.execute(sql, args))
            finally:
                con.close()
        except sqlite3.OperationalError:
            time.sleep(0.05)
    raise RuntimeError("ledger unreadable")


def record_fault(ledger: str, kind: str, **detail: Any) -> None:
    ledger_write(
        ledger,
        "insert into faults values (?, ?, ?)",
        (kind, time.time(), json.dumps(detail)),
    )


def finished_steps(ledger: str) -> int:
    return int(query(ledger, "select count(*) from attempts where t1 is not null")[0][0])


def in_flight(ledger: str, younger_than: float = 10.0) -> list[tuple[str, str, int, float]]:
    """Attempts started in the last `younger_than` seconds and not ended: (iid, step, pid,
    ctime)."""
    return [
        (r[0], r[1], int(r[2]), float(r[3]))
        for r in query(
            ledger,
            "select iid, step, pid, ctime from attempts where t1 is null and t0 > ?",
            (time.time() - younger_than,),
        )
    ]


def just_ended(ledger: str, younger_than: float) -> list[tuple[str, str, int, float]]:
    """Attempts whose body ended in the last `younger_than` seconds: their process is now
    recording the result, replaying or moving on to the next step."""
    return [
        (r[0], r[1], int(r[2]), float(r[3]))
        for r in query(
            ledger,
            "select iid, step, pid, ctime from attempts where t1 > ?",
            (time.time() - younger_than,),
        )
    ]


def alive(pid: int, ctime: float) -> bool:
    import psutil

    try:
        return abs(psutil.Process(pid).create_time() - ctime) < 0.5
    except psutil.NoSuchProcess:
        return False


def ledger_processes(ledger: str) -> set[tuple[int, float]]:
    return {
        (int(p), float(c)) for p, c in query(ledger, "select distinct pid, ctime from attempts")
    }


# -- the send lock: a process kill never lands between an event's send and its ledger row -----


@contextlib.contextmanager
def send_lock(lockfile: str, holdfile: str) -> Iterator[None]:
    while os.path.exists(holdfile):  # a killer is waiting for the lock: let it have it
        time.sleep(0.02)
    with open(lockfile, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def quiet_sends(lockfile: str, holdfile: str) -> Iterator[None]:
    """Hold the send lock (no event is half-sent) while the body kills the driver."""
    Path(holdfile).touch()
    try:
        with open(lockfile, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        os.unlink(holdfile)


# -- a Ray cluster of our own -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """`ray start --head --block` with its own port and temp dir. Only processes descending from
    the head we started (or carrying our own temp dir in their command line) are ever killed."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.temp = root / f"raydo-chaos-{os.getpid()}-{self.port}"
        self.head = subprocess.Popen(
            [
                str(RAY),
                "start",
                "--head",
                "--block",
                f"--port={self.port}",
                f"--temp-dir={self.temp}",
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.killed = False

    @property
    def env(self) -> dict[str, str]:
        # `ray start` enables Ray's token auth; drivers send the token from ~/.ray/auth_token
        return {
            **os.environ,
            "RAY_ADDRESS": f"127.0.0.1:{self.port}",
            "RAY_AUTH_MODE": "token",
            "PYTHONUNBUFFERED": "1",
        }

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.head.poll() is None, "ray start exited"
            sockets = list(self.temp.glob("session_*/sockets/raylet"))
            if sockets:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=1),
                ):
                    return
            time.sleep(0.2)
        raise AssertionError("our Ray head did not come up")

    def processes(self) -> list[Any]:
        import psutil

        procs: dict[int, Any] = {}
        with contextlib.suppress(psutil.NoSuchProcess):
            head = psutil.Process(self.head.pid)
            procs[head.pid] = head
            for p in head.children(recursive=True):
                procs[p.pid] = p
        # a process that left the tree (re-parented) still names our unique temp dir
        marker = str(self.temp)
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                args = p.info["cmdline"] or []
                if p.pid not in procs and any(
                    a.endswith(marker) or f"{marker}/" in a for a in args
                ):
                    procs[p.pid] = p
        return list(procs.values())

    def owns(self, pid: int) -> bool:
        return any(p.pid == pid for p in self.processes())

    def kill(self) -> int:
        """SIGKILL every process of this cluster; returns how many."""
        import psutil

        total = 0
        for _ in range(3):  # a process spawned while we were killing is caught on the next pass
            victims = self.processes()
            if not victims:
                break
            for p in victims:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGKILL)
            psutil.wait_procs(victims, timeout=10)
            total += len(victims)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.head.wait(5)
        self.killed = True
        return total


def kill_process(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


# -- a driver ------------------------------------------------------------------------------------


@dataclass
class Config:
    storage: str
    ledger: str
    n: int
    batch: int
    concurrency: int
    lockfile: str
    holdfile: str
    results: str
    deadline: float
    fault: str | None = None  # driver-side fault: "namespace" | "timer"
    kills: int = 0
    # the driver that finishes kills this storage's actors: the cluster is shared with the next
    # scenario, whose victims must be its own
    kill_actors_at_end: bool = False

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__))

    @classmethod
    def load(cls, path: str) -> Config:
        return cls(**json.loads(Path(path).read_text()))


class Driver:
    """One run of chaos_driver.py against a cluster; stdout goes to a file we can poll."""

    def __init__(self, cfg_path: Path, tag: str, env: dict[str, str], logdir: Path) -> None:
        self.tag = tag
        self.out = logdir / f"driver-{tag}.out"
        self.err = logdir / f"driver-{tag}.err"
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(cfg_path), tag],
            stdout=self.out.open("w"),
            stderr=self.err.open("w"),
            env=env,
        )

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    def tail(self, chars: int = 4000) -> str:
        return (
            f"--- driver {self.tag} stdout ---\n{self.out.read_text()[-chars:]}\n"
            f"--- stderr ---\n{self.err.read_text()[-chars:]}"
        )

    def finish(self, timeout: float) -> None:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_process(self.proc)
            raise AssertionError(f"driver {self.tag} did not finish\n{self.tail()}") from None
        assert rc == 0, f"driver {self.tag} failed ({rc})\n{self.tail()}"


# -- the verdict ---------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    victims: set[tuple[int, float]] = field(default_factory=set)  # instance actors it killed
    detail: str = ""


@dataclass
class Verdict:
    scenario: str
    faults: list[Fault]
    instances: int
    steps: int
    attempts: int
    duplicates: int
    after_body: int  # of the duplicates: attempts whose body had returned when killed
    bound: int
    max_extra_per_instance: int
    events_sent: int
    events_late: int
    lost: int
    twice: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def row(self) -> list[str]:
        kinds = Counter(f.kind for f in self.faults)
        return [
            self.scenario,
            ", ".join(f"{k} x{v}" for k, v in kinds.items()) or "-",
            str(self.instances),
            str(self.steps),
            str(self.attempts),
            f"{self.duplicates} ({self.after_body} after body)",
            str(self.bound),
            str(self.max_extra_per_instance),
            f"{self.events_sent} ({self.events_late} late)",
            str(self.lost),
            str(self.twice),
            f"{self.seconds:.0f}",
        ]


VERDICTS: list[Verdict] = []  # every scenario's, for the terminal summary

HEADER = [
    "scenario",
    "faults injected",
    "instances",
    "steps",
    "attempts",
    "duplicates",
    "bound",
    "max extra/inst",
    "events sent",
    "lost",
    "twice",
    "secs",
]


def table(verdicts: list[Verdict]) -> str:
    rows = [HEADER, *[v.row() for v in verdicts]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def verify(
    scenario: str,
    cfg: Config,
    faults: list[Fault],
    per_fault_bound: int,
    seconds: float,
) -> Verdict:
    """Check every durability claim against the results the last driver collected and the
    ledger; raise AssertionError with the evidence on the first broken one."""
    results: dict[str, Any] = json.loads(Path(cfg.results).read_text())
    ids = [iid_of(n) for n in range(cfg.n)]
    problems: list[str] = []

    # 1. every instance complete with the right output
    assert sorted(results) == ids, f"instances found: {len(results)} of {cfg.n}"
    not_complete = {i: r["status"] for i, r in results.items() if r["status"] != "complete"}
    assert not not_complete, f"not complete: {dict(list(not_complete.items())[:20])}"
    wrong = {i: r["output"] for i, r in results.items() if r["output"] != expected_output(i)}

    # 2. events: each sent once, each delivered once, in order
    sent = query(cfg.ledger, "select iid, k, late, sent_at from events")
    sent_count = Counter((i, k) for i, k, _, _ in sent)
    assert all(c == 1 for c in sent_count.values()), "the test sent an event twice"
    assert set(sent_count) == {(i, k) for i in ids for k in (0, 1)}, "not every event was sent"
    lost = twice = 0
    for iid, r in results.items():
        got = (r["output"] or {}).get("events", [])
        want = [payload(iid, 0), payload(iid, 1)]
        lost += sum(1 for p in want if p not in got)
        twice += len(got) - len({json.dumps(p, sort_keys=True) for p in got})
    # a wait reached before its event was sent counts as a late delivery
    sent_at = {(i, k): t for i, k, _, t in sent}
    late_delivered = 0
    for iid, r in results.items():
        waits = {s["name"]: s for s in r["steps"] if s["type"] == "waitForEvent"}
        for k, name in enumerate(("first", "second")):
            w = waits.get(name)
            if w and w["started_at"] is not None and sent_at[(iid, k)] > w["started_at"]:
                late_delivered += 1

    # 3. the ledger: each finished step ran once, except attempts in flight at a kill
    rows = query(cfg.ledger, "select iid, step, attempt, pid, ctime, t0, t1 from attempts")
    by_step: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    for r in rows:
        by_step[(r[0], r[1])].append(r)
    want_steps = {(i, s) for i in ids for s in DO_STEPS}
    missing = want_steps - set(by_step)
    extra_keys = set(by_step) - want_steps
    assert not missing, f"steps never run: {sorted(missing)[:10]}"
    assert not extra_keys, f"steps of unknown instances: {sorted(extra_keys)[:10]}"
    victims = set().union(*(f.victims for f in faults)) if faults else set()
    duplicates = after_body = 0
    extra_per_instance: Counter[str] = Counter()
    non_final_per_process: Counter[tuple[int, float]] = Counter()
    for (iid, step), attempts in by_step.items():
        attempts.sort(key=lambda r: r[2])
        numbers = [r[2] for r in attempts]
        if len(set(numbers)) != len(numbers):
            problems.append(f"{iid}/{step}: attempt numbers repeat in the ledger: {numbers}")
        final = attempts[-1]
        if final[6] is None:
            problems.append(f"{iid}/{step}: its last attempt {final[2]} never ended")
        for r in attempts[:-1]:
            duplicates += 1
            after_body += r[6] is not None
            extra_per_instance[iid] += 1
            proc = (int(r[3]), float(r[4]))
            non_final_per_process[proc] += 1
            if not any(p == proc[0] and abs(c - proc[1]) < 0.5 for p, c in victims):
                problems.append(
                    f"{iid}/{step}: attempt {r[2]} ran again, but its process {proc[0]} was "
                    "not killed by a fault"
                )
        # statuses consistent with the ledger
        st = next((s for s in results[iid]["steps"] if s["name"] == step), None)
        if st is None or st["state"] != "done" or st["error"] is not None:
            problems.append(f"{iid}/{step}: status says {st}")
        elif st["attempts"] != final[2]:
            problems.append(
                f"{iid}/{step}: status counts {st['attempts']} attempts, the ledger's last "
                f"successful attempt is {final[2]}"
            )
        elif final[6] is not None and st["ended_at"] + 0.5 < final[6]:
            problems.append(f"{iid}/{step}: status ended before the ledger's attempt ended")
    for proc, count in non_final_per_process.items():
        if count > 1:
            problems.append(f"process {proc[0]} left {count} unfinished attempts (at most 1)")
    kills = len(faults) if per_fault_bound else 0
    over = {i: c for i, c in extra_per_instance.items() if c > kills}
    if over:
        problems.append(f"more extra attempts than kills ({kills}) for {over}")
    bound = per_fault_bound * len(faults)
    if duplicates > bound:
        problems.append(f"{duplicates} duplicate attempts, bound {bound}")

    # 4. the other steps: the sleep slept, the waits got their events
    for iid, r in results.items():
        kinds = Counter(s["type"] for s in r["steps"])
        if kinds != {"do": 5, "sleep": 1, "waitForEvent": 2}:
            problems.append(f"{iid}: step table {kinds}")
            continue
        for s in r["steps"]:
            if s["state"] != "done":
                problems.append(f"{iid}: step {s['name']} is {s['state']}")
            if s["type"] == "sleep" and s["ended_at"] - s["started_at"] < NAP_SECONDS - 0.05:
                problems.append(f"{iid}: the nap lasted {s['ended_at'] - s['started_at']:.2f}s")
        waits = [s for s in r["steps"] if s["type"] == "waitForEvent"]
        outs = [(w["output"] or {}).get("payload") for w in waits]
        if outs != [payload(iid, 0), payload(iid, 1)]:
            problems.append(f"{iid}: waits received {outs}")

    if wrong:
        problems.append(f"wrong outputs: {dict(list(wrong.items())[:5])}")
    if lost or twice:
        problems.append(f"events lost {lost}, delivered twice {twice}")
    assert not problems, "\n".join(problems[:40])
    return Verdict(
        scenario=scenario,
        faults=faults,
        instances=cfg.n,
        steps=len(by_step),
        attempts=len(rows),
        duplicates=duplicates,
        after_body=after_body,
        bound=bound,
        max_extra_per_instance=max(extra_per_instance.values(), default=0),
        events_sent=len(sent),
        events_late=late_delivered,
        lost=lost,
        twice=twice,
        seconds=seconds,
    )
