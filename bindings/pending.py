"""`Pending`: what every binding method returns. Await it in async code or call `.result()`
in sync code (Ray Serve's response convention). The call is sent when the method is called.

A Pending waits on a Ray ObjectRef, or on a `concurrent.futures.Future` (raydo.testing's in-process
mode answers the same binding calls without Ray).

No Ray exception reaches a user from here: an error raised by raydo's actors arrives as itself
(unwrapped from Ray's RayTaskError), and Ray's own failures (an actor died, the cluster is gone)
arrive as ClusterError with Ray's error chained as `__cause__`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Generator
from typing import Any, Generic, NoReturn, TypeVar

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError

from ..errors import ClusterError, RaydoError, WaitTimeoutError
from ..runtime.rules import show_seconds

T = TypeVar("T")


def unwrap(exc: BaseException) -> BaseException:
    """The user's view of an error that crossed an actor: the original, not Ray's wrapper."""
    while isinstance(exc, RayTaskError) and exc.cause is not None:
        exc = exc.cause
    return exc


def raise_user_error(exc: BaseException) -> NoReturn:
    """Raise what the user sees for an error from Ray: the original error of raydo's actor, or
    a ClusterError chained to Ray's error when Ray itself failed."""
    original = unwrap(exc)
    if isinstance(original, RayError) or not isinstance(original, Exception):
        raise cluster_error(original) from original
    raise original from None


def cluster_error(exc: BaseException) -> ClusterError:
    name = type(exc).__name__
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    return ClusterError(
        f"Ray could not complete a call to raydo's actors ({name}: {first_line}); it may or may "
        "not have taken effect: check the instance's status",
        cause=name,
    )


def submit(send: Callable[..., Any], *args: Any) -> Any:
    """`send(*args)` (an actor method's `.remote`, or making an actor handle), with Ray's failure
    to send (e.g. to an actor of a cluster that is gone) raised as ClusterError."""
    try:
        return send(*args)
    except RaydoError:
        raise
    except Exception as exc:  # Ray raises a bare Exception when it cannot submit
        raise cluster_error(exc) from exc


class Pending(Generic[T]):
    """`ref` is a Ray ObjectRef, or a concurrent Future already running (a call routed across a
    cluster's nodes by bindings/cluster.py, or one of raydo.testing's LocalEnv); a Ray error
    out of either reaches the user unwrapped."""

    def __init__(self, ref: Any, transform: Callable[[Any], T] = lambda v: v) -> None:
        self._ref = ref
        self._transform = transform

    def __await__(self) -> Generator[Any, None, T]:
        return self._await().__await__()

    async def _await(self) -> T:
        try:
            if isinstance(self._ref, concurrent.futures.Future):
                value = await asyncio.wrap_future(self._ref)
            else:
                value = await self._ref
        except RayError as exc:
            raise_user_error(exc)
        return self._transform(value)

    def result(self, timeout: float | None = None) -> T:
        """Block until done (at most `timeout` seconds) and return the value or raise the error."""
        try:
            if isinstance(self._ref, concurrent.futures.Future):
                value = _future_result(self._ref, timeout)
            else:
                value = ray.get(self._ref, timeout=timeout)
        except GetTimeoutError:
            raise _no_result(timeout) from None
        except RayError as exc:
            raise_user_error(exc)
        return self._transform(value)


def _future_result(future: concurrent.futures.Future[Any], timeout: float | None) -> Any:
    """The routed call's value; Ray's GetTimeoutError when not done in `timeout` (an error the
    call itself raised, WaitTimeoutError included, passes as it is)."""
    try:
        # future.result itself: raydo.testing's futures refuse to block their own loop there
        return future.result(timeout)
    except TimeoutError:
        if future.done():
            raise  # the call's own error
        raise GetTimeoutError(f"no result within {timeout} seconds") from None


def _no_result(timeout: float | None) -> WaitTimeoutError:
    return WaitTimeoutError(f"no result within {show_seconds(timeout or 0.0)} seconds")
