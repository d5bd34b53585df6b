"""Security posture on real Ray and LMDB: no params, step results or event payloads in any log,
and actor names that only a process able to read the storage can compute.

Logs are collected from every place they go: the driver's records (caplog) and console (capfd),
every file in the Ray session's log folder (each worker's stdout/stderr), and a tap on the root
logger at INFO inside raydo's actor processes. The tap travels with the workflow class (a class
attribute whose unpickling installs it), so it is live in the namespace and instance actors
however they were started. A control test proves each route carries what an actor logs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

import raydo
from raydo import InstanceStatus, NonRetryableError, WorkflowEntrypoint, WorkflowStepError
from raydo.actors import handles

pytestmark = pytest.mark.ray

TAP_DIR = os.path.join(tempfile.gettempdir(), f"raydo-logtap-{os.getpid()}-{uuid.uuid4().hex[:8]}")
TAP_READY = "raydo log tap installed"


def _install_tap(folder: str) -> _LogTap:
    """Runs where the workflow class is unpickled: every INFO+ record of this process to a file."""
    os.makedirs(folder, exist_ok=True)
    root = logging.getLogger()
    if not any(getattr(h, "raydo_tap", False) for h in root.handlers):
        handler = logging.FileHandler(os.path.join(folder, f"{os.getpid()}.log"))
        handler.setLevel(logging.INFO)
        handler.raydo_tap = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        logging.getLogger("raydo").setLevel(logging.INFO)
        handler.stream.write(f"{TAP_READY} pid={os.getpid()}\n")
        handler.flush()
    return _LogTap(folder)


class _LogTap:
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __reduce__(self) -> tuple[Any, ...]:
        return (_install_tap, (self.folder,))


@pytest.fixture(scope="module", autouse=True)
def _tap_folder() -> Iterator[None]:
    yield
    shutil.rmtree(TAP_DIR, ignore_errors=True)


class Payments(WorkflowEntrypoint):
    """Holds its params' token in step results, events, its output and several error messages."""

    tap = _LogTap(TAP_DIR)

    async def run(self, event: Any, step: Any) -> Any:
        token = event.payload["card"]
        seen = await step.do("read card", lambda: {"card": token, "digits": len(token)})

        def unstorable() -> Any:
            return {"card": token, "handle": object()}  # PayloadError: fails for good

        with contextlib.suppress(WorkflowStepError):
            await step.do("keep handle", unstorable)

        def declined(ctx: Any) -> None:
            if ctx.attempt == 1:
                raise ConnectionError(f"gateway lost card {token}")
            raise NonRetryableError(f"card {token} declined", name="Declined")

        with contextlib.suppress(WorkflowStepError):
            await step.do("charge", declined, retries={"limit": 3, "delay": 0.05})
        ev = await step.wait_for_event("confirm", type="confirmed", timeout="1 minute")
        if event.payload.get("fail"):
            raise RuntimeError(f"could not refund {ev.payload['card']}")
        return {"seen": seen, "confirmed": ev.payload}


class Blabber(WorkflowEntrypoint):
    """The control: logs and prints its params from inside a step, as user code may."""

    tap = _LogTap(TAP_DIR)

    async def run(self, event: Any, step: Any) -> Any:
        def blab() -> None:
            logging.getLogger("raydo").info("user code logs %s", event.payload)
            print(f"user code prints {event.payload}", file=sys.stderr, flush=True)

        await step.do("blab", blab)


def _logs_dir() -> Path:
    node = ray._private.worker._global_node
    assert node is not None, "the session's Ray runs in this process"
    return Path(node.get_logs_dir_path())


def _files_with(folder: Path, needle: str) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and needle.encode() in path.read_bytes():
                found.append(path)
    return found


def _wait_for(check: Any, what: str, limit: float = 60.0) -> Any:
    deadline = time.monotonic() + limit
    while not (result := check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)
    return result


def test_the_scan_sees_what_actors_log(raydo_env: Path) -> None:
    marker = f"control-{uuid.uuid4().hex}"
    wf = raydo.workflow(Blabber, name="blabber", concurrency=1)
    st = wf.create(params=marker).result(timeout=60).wait(timeout=120).result()
    assert st.status is InstanceStatus.COMPLETE
    _wait_for(lambda: _files_with(Path(TAP_DIR), marker), "the tap to record the log line")
    _wait_for(lambda: _files_with(_logs_dir(), marker), "a worker log file to hold the print")


def test_no_params_results_or_payloads_in_any_log(
    raydo_env: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    marker = f"s3cr3t-{uuid.uuid4().hex}"
    caplog.set_level(logging.INFO)
    wf = raydo.workflow(Payments, name="payments", concurrency=2)
    ok = wf.create(id="ok", params={"card": marker}).result(timeout=60)
    bad = wf.create(id="bad", params={"card": marker, "fail": True}).result(timeout=60)
    for inst in (ok, bad):
        inst.send_event(type="confirmed", payload={"card": marker}).result(timeout=60)
    done, failed = ok.wait(timeout=120).result(), bad.wait(timeout=120).result()

    # The values are where the user asked for them: status, outputs and the user's own errors.
    assert done.status is InstanceStatus.COMPLETE and done.output["confirmed"] == {"card": marker}
    assert failed.status is InstanceStatus.ERRORED and marker in failed.error.message
    steps = {s.name: s for s in ok.status(steps=True).result(timeout=60).steps}
    assert steps["keep handle"].error.name == "PayloadError"
    assert marker not in steps["keep handle"].error.message  # type and size, not content
    assert steps["charge"].error.name == "Declined" and marker in steps["charge"].error.message

    # The tap was live in the instance actors (their INFO line about `bad`) and in the namespace.
    tapped = _wait_for(
        lambda: _files_with(Path(TAP_DIR), "instance bad errored: RuntimeError"), "the INFO line"
    )
    assert len(_files_with(Path(TAP_DIR), TAP_READY)) >= 2, "namespace and instance actors"
    assert tapped

    leaks = _files_with(Path(TAP_DIR), marker) + _files_with(_logs_dir(), marker)
    assert leaks == [], f"the marker is in {leaks}"
    assert marker not in caplog.text
    out, err = capfd.readouterr()
    assert marker not in out and marker not in err


def test_actor_names_need_the_storage_identity(raydo_env: Path, tmp_path: Path) -> None:
    other = str(tmp_path / "other app")
    mine = raydo.workflow(Payments, name="payments")
    theirs = raydo.workflow(Payments, name="payments", storage=other)
    try:
        for wf in (mine, theirs):
            wf.create(id="probe", params={"card": "x"}).result(timeout=60)
        names = {
            entry["name"]
            for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry["namespace"] == handles.RAY_NAMESPACE
        }
        mine_name = handles.namespace_name(str(raydo_env), "payments")
        theirs_name = handles.namespace_name(other, "payments")
        assert mine_name != theirs_name and {mine_name, theirs_name} <= names

        # Knowing a storage's path is not enough: no hash of it appears in any name.
        for path in (str(raydo_env), other):
            for digest in (hashlib.sha1, hashlib.sha256, hashlib.md5):
                guess = digest(path.encode()).hexdigest()
                assert [name for name in names if guess[:8] in name] == []
                with pytest.raises(ValueError):
                    ray.get_actor(f"ns:{guess[:12]}:payments", namespace=handles.RAY_NAMESPACE)
        assert ray.get_actor(theirs_name, namespace=handles.RAY_NAMESPACE) is not None
    finally:
        handles.kill_storage_actors(other)
