"""What the runtime needs from storage, as Protocols the runtime owns (Ray Serve's KVStoreBase
pattern): storage/instances.py implements them over LMDB or memory; tests may fake them.

Every method is one transaction. Writes of a running instance carry its lease and raise `Fenced`
(storage.records) when the lease is no longer current.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..storage.instances import Loaded
from ..storage.kv import Writer
from ..storage.records import EventRecord, InstanceRecord, StepRecord


class Store(Protocol):
    """The instances of one workflow."""

    @property
    def workflow(self) -> str: ...

    # reading
    def get(self, iid: str) -> InstanceRecord | None: ...
    def require(self, iid: str) -> InstanceRecord: ...
    def records(self) -> list[InstanceRecord]: ...
    def listed(
        self,
        status: str | None,
        reverse: bool,
        limit: int,
        after: tuple[float, str] | None = None,
        span: tuple[float | None, float | None] = (None, None),
    ) -> list[InstanceRecord]: ...
    def counts(self) -> dict[str, int]: ...
    def params(self, iid: str) -> bytes | None: ...
    def output(self, iid: str) -> bytes | None: ...
    def steps(self, iid: str) -> dict[tuple[str, int], StepRecord]: ...
    def load(self, iid: str) -> Loaded: ...
    def has_events(self, iid: str, types: Iterable[str]) -> bool: ...

    # the namespace's writes (the instance holds no actor, or is being taken from it)
    def create(
        self,
        items: list[tuple[str, bytes]],
        now: float,
        skip_existing: bool,
        retention: dict[str, float] | None = None,
        schedule: dict[str, Any] | None = None,
        also: Callable[[Writer], None] | None = None,
    ) -> list[InstanceRecord]: ...
    def save(self, rec: InstanceRecord, durable: bool = True) -> None: ...
    def acquire(self, iids: list[str], now: float) -> dict[str, int]: ...
    def fence(self, iid: str) -> None: ...
    def add_event(self, iid: str, type_: str, payload: bytes, now: float) -> InstanceRecord: ...
    def shift_pending(self, iid: str, since: float, delta: float) -> None: ...
    def erase_steps(self, iid: str, from_seq: int | None) -> None: ...
    def delete(self, iid: str) -> None: ...

    # the running activation's writes (fenced by its lease)
    def save_step(
        self, iid: str, lease: int, step_id: tuple[str, int], step: StepRecord, durable: bool
    ) -> None: ...
    def take_event(
        self, iid: str, lease: int, step_id: tuple[str, int], step: StepRecord
    ) -> EventRecord | None: ...
    def settle(
        self, iid: str, lease: int, rec: InstanceRecord, output: bytes | None, durable: bool
    ) -> None: ...


class Timers(Protocol):
    """The durable timer index of a storage."""

    def due(self, until: float) -> list[tuple[float, str, str]]:
        """(due, workflow, id) of every timer due at or before `until`, earliest first."""
        ...
