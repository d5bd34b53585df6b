"""`create_batch(items, per_item=True)`: the object form of a batch create.

The plain form raises on the first bad item and creates nothing (one durable write, all or
nothing). The object form checks every item on its own: the good ones are created together in one
write, and the answer says per item, in the order given, whether it was created, already existed
(skipped, as in the plain form) or was rejected, with the typed error's name and message.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..runtime.model import ErrorInfo
from .pending import Pending

if TYPE_CHECKING:
    from .workflow import Workflow, WorkflowInstance


@dataclass(frozen=True)
class BatchItem:
    """One item's outcome in `create_batch(items, per_item=True)`."""

    index: int
    """The item's position in the list given."""
    id: str | None
    """The instance id (generated when the item gave none); None when the item was rejected
    before an id could be read from it."""
    instance: WorkflowInstance | None
    """A handle to the instance: the new one, or the one that already had this id. None when
    the item was rejected."""
    created: bool
    """True when this call created the instance; False when it existed (or was rejected)."""
    error: ErrorInfo | None = None
    """Why the item was rejected: the raydo error's class name and message."""

    @property
    def ok(self) -> bool:
        return self.error is None


def create_per_item(
    workflow: Workflow, items: list[dict[str, Any]], prepare: Any, send: Any
) -> Pending[list[BatchItem]]:
    """Check each item (prepare(index, entry) -> (id, params bytes)), send the good ones in one
    create, and answer one BatchItem per item."""
    good: list[tuple[int, tuple[str, bytes]]] = []
    rejected: dict[int, tuple[str | None, ErrorInfo]] = {}
    for index, entry in enumerate(items):
        try:
            good.append((index, prepare(index, entry)))
        except InvalidInputError as err:
            rejected[index] = (_id_of(entry), ErrorInfo(name=type(err).__name__, message=str(err)))
    if good:
        ref = send([item for _, item in good])
    else:
        ref = concurrent.futures.Future()
        ref.set_result([])

    def answer(created_ids: list[str]) -> list[BatchItem]:
        from .workflow import WorkflowInstance

        made = set(created_ids)  # an id given twice was created by its first item only
        out = []
        for i, (iid, _) in good:
            out.append(BatchItem(i, iid, WorkflowInstance(workflow, iid), iid in made))
            made.discard(iid)
        out += [BatchItem(i, iid, None, False, error) for i, (iid, error) in rejected.items()]
        return sorted(out, key=lambda item: item.index)

    return Pending(ref, answer)


def _id_of(entry: Any) -> str | None:
    iid = entry.get("id") if isinstance(entry, dict) else None
    return iid if isinstance(iid, str) else None
