"""The durable state of a workflow's cron schedules: which are declared, and the last tick each
fired. The last tick is written in the same transaction as the instance that tick created
(`mark_tick`, passed to `InstanceStore.create` as `also`), so a tick is fired once."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import CorruptRecordError
from . import keys
from .codec import pack, unpack
from .kv import KV, Reader, Writer


class ScheduleStore:
    def __init__(self, kv: KV, workflow: str) -> None:
        self.kv, self.workflow = kv, workflow

    def crons(self) -> list[str]:
        """The schedules last declared for this workflow (none if never declared)."""
        return self.kv.read(self._stored)

    def set_crons(self, crons: list[str]) -> None:
        """Declare the schedules; the last ticks of schedules no longer declared are dropped
        (declared again later, such a schedule starts from then, with no catch-up)."""

        def apply(w: Writer) -> None:
            for old in self._stored(w):
                if old not in crons:
                    w.delete(keys.schedule_tick(self.workflow, old))
            w.put(keys.schedules(self.workflow), pack({"crons": list(crons)}))

        self.kv.write(apply)

    def _stored(self, r: Reader) -> list[str]:
        raw = r.get(keys.schedules(self.workflow))
        what = f"schedules of workflow {self.workflow!r}"
        found = [] if raw is None else unpack(raw, what).get("crons")
        if not isinstance(found, list) or not all(isinstance(c, str) for c in found):
            raise CorruptRecordError(f"{what} are corrupt", what=what)
        return found

    def last_tick(self, cron: str) -> float | None:
        raw = self.kv.read(lambda r: r.get(keys.schedule_tick(self.workflow, cron)))
        return None if raw is None else keys.decode_f64(raw)

    def set_last_tick(self, cron: str, tick: float) -> None:
        self.kv.write(self.mark_tick(cron, tick))

    def mark_tick(self, cron: str, tick: float) -> Callable[[Writer], None]:
        """A write that records `tick` as fired, for the transaction that creates its instance."""
        key, value = keys.schedule_tick(self.workflow, cron), keys.encode_f64(tick)
        return lambda w: w.put(key, value)
