"""Cron schedules: a workflow's declared crons create instances on time. Plain asyncio; no Ray.

Who runs them: the workflow's namespace (its NamespaceActor: one per workflow and storage,
detached, restarted by Ray). A binding that declares schedules (the config's `schedules`, or
`raydo.workflow(..., schedules=[...])`) stores them in the storage; the namespace runs one loop per
cron from then on, and again from storage after any restart.

A tick fires once: its instance has a deterministic id (`cron-<digest of the cron>-<tick time>`)
and the schedule's last tick is written in the same transaction that creates it; a create of an
id that exists is skipped. Ticks missed while raydo was down fire once, for the latest of them,
when the namespace starts again (the older ones are not replayed). A schedule declared for the
first time starts from its next tick. On a cluster every node's namespace runs the schedule and
a tick is fired by the one node that claims it (`claim`, runtime/tick_claims.py). Cron
expressions are read by croniter in UTC (5 fields, a 6th for seconds, or @hourly/@daily/...).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from ..errors import InvalidInputError
from ..storage.codec import encode
from ..storage.kv import Writer
from .clock import Clock
from .rules import show

log = logging.getLogger("raydo")

MAX_NAP = 60.0  # a loop looks at the wall clock at least this often (it may jump)


class Creator(Protocol):
    def create(
        self,
        items: list[tuple[str, bytes]],
        skip_existing: bool,
        retention: dict[str, float] | None = None,
        schedule: dict[str, Any] | None = None,
        also: Callable[[Writer], None] | None = None,
    ) -> list[str]: ...


class Ticks(Protocol):
    def crons(self) -> list[str]: ...
    def set_crons(self, crons: list[str]) -> None: ...
    def last_tick(self, cron: str) -> float | None: ...
    def set_last_tick(self, cron: str, tick: float) -> None: ...
    def mark_tick(self, cron: str, tick: float) -> Callable[[Writer], None]: ...


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise InvalidInputError(
            "cron schedules need croniter: pip install 'raydo[cron]'", value="croniter"
        ) from None
    return croniter


def check_cron(cron: Any) -> str:
    """A cron expression croniter can read, else a typed error naming it and the rule."""
    if not isinstance(cron, str) or "\x00" in cron or not _croniter().is_valid(cron):
        raise InvalidInputError(
            f"schedule {show(cron)} is not a cron expression; write 5 fields (minute hour "
            "day-of-month month day-of-week), e.g. '0 9 * * 1', or @hourly/@daily/...",
            value=show(cron),
        )
    return cron


def check_crons(crons: Any) -> list[str]:
    if isinstance(crons, str) or not isinstance(crons, (list, tuple)):
        raise InvalidInputError(
            f"schedules {show(crons)} must be a list of cron expressions", value=show(crons)
        )
    return [check_cron(c) for c in crons]


def next_tick(cron: str, after: float) -> float:
    """The first tick of `cron` strictly after `after` (epoch seconds, UTC)."""
    return float(_croniter()(cron, datetime.fromtimestamp(after, UTC)).get_next(float))


def due_tick(cron: str, last: float, now: float) -> float | None:
    """The latest tick in (last, now], or None: after downtime, only the newest missed tick."""
    first = next_tick(cron, last)
    if first > now:
        return None
    latest = float(_croniter()(cron, datetime.fromtimestamp(now, UTC)).get_prev(float))
    if next_tick(cron, latest) <= now:
        latest = next_tick(cron, latest)  # get_prev is strictly before now; a tick at now counts
    return max(first, latest)


def tick_id(cron: str, tick: float) -> str:
    """The instance id of one tick: the same tick always gets the same id."""
    digest = hashlib.sha256(cron.encode()).hexdigest()[:8]
    return f"cron-{digest}-{datetime.fromtimestamp(tick, UTC):%Y%m%dT%H%M%SZ}"


class Scheduler:
    """One loop per declared cron, creating an instance per tick through the namespace."""

    def __init__(
        self,
        creator: Creator,
        ticks: Ticks,
        clock: Clock,
        retention: dict[str, float] | None = None,
        claim: Callable[[str, float], bool] | None = None,
    ) -> None:
        self.creator, self.ticks, self.clock, self.retention = creator, ticks, clock, retention
        self.claim = claim  # (cron, tick) -> may this namespace fire it; None: always
        self._loops: dict[str, asyncio.Task[None]] = {}
        self.fired = 0  # ticks that created an instance since start (metrics)

    @property
    def crons(self) -> list[str]:
        return list(self._loops)

    def start(self) -> None:
        """Run the schedules stored for this workflow (after a start or a restart)."""
        crons = self.ticks.crons()
        try:
            self._run(check_crons(crons))
        except InvalidInputError as exc:
            log.error("cron schedules %s not run: %s", crons, exc)

    def use(self, crons: list[str]) -> None:
        """Declare the workflow's schedules (replacing the stored ones) and run them."""
        crons = list(dict.fromkeys(check_crons(crons)))
        self.ticks.set_crons(crons)
        self._run(crons)

    def stop(self) -> None:
        self._run([])

    def _run(self, crons: list[str]) -> None:
        for cron in [c for c in self._loops if c not in crons]:
            self._loops.pop(cron).cancel()
        for cron in crons:
            if cron not in self._loops:
                self._loops[cron] = asyncio.ensure_future(self._loop(cron))

    async def _loop(self, cron: str) -> None:
        """Fire each tick as it falls due. Never stops on an error (a loop that halts stops
        every tick of its schedule)."""
        last = self.ticks.last_tick(cron)
        if last is None:
            last = self.clock.now()
            self.ticks.set_last_tick(cron, last)
        while True:
            try:
                tick = due_tick(cron, last, self.clock.now())
                if tick is not None:
                    self.fire(cron, tick)
                    last = tick
                    continue
                left = next_tick(cron, last) - self.clock.now()
                await self.clock.sleep(min(MAX_NAP, max(0.0, left)))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("schedule %r failed; trying again in a second", cron)
                await self.clock.sleep(1.0)

    def fire(self, cron: str, tick: float) -> bool:
        """Create the instance of one tick (skipped if its id exists, or if another node
        claimed the tick); True if created."""
        if self.claim is not None and not self.claim(cron, tick):
            return False
        schedule = {"cron": cron, "scheduled_time": tick}
        created = self.creator.create(
            [(tick_id(cron, tick), encode(None))],
            True,
            self.retention,
            schedule,
            self.ticks.mark_tick(cron, tick),
        )
        self.fired += len(created)
        return bool(created)
