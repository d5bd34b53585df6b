"""`Pending`: what every binding method returns. Await it in async code or call `.result()`
in sync code (Ray Serve's response convention). The call is sent when the method is called."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import ray
from ray.exceptions import GetTimeoutError, RayTaskError

from ..errors import WaitTimeoutError

T = TypeVar("T")


def unwrap(exc: BaseException) -> BaseException:
    """The user's view of an error that crossed an actor: the original, not Ray's wrapper."""
    while isinstance(exc, RayTaskError) and exc.cause is not None:
        exc = exc.cause
    return exc


class Pending(Generic[T]):
    def __init__(self, ref: Any, transform: Callable[[Any], T] = lambda v: v) -> None:
        self._ref = ref
        self._transform = transform

    def __await__(self) -> Generator[Any, None, T]:
        return self._await().__await__()

    async def _await(self) -> T:
        try:
            value = await self._ref
        except RayTaskError as exc:
            raise unwrap(exc) from None
        return self._transform(value)

    def result(self, timeout: float | None = None) -> T:
        """Block until done (at most `timeout` seconds) and return the value or raise the error."""
        try:
            value = ray.get(self._ref, timeout=timeout)
        except RayTaskError as exc:
            raise unwrap(exc) from None
        except GetTimeoutError:
            raise WaitTimeoutError(f"no result within {timeout} seconds") from None
        return self._transform(value)
