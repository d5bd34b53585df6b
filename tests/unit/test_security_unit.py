"""Security posture without Ray: storage modes under any umask, refused and warned-about folders,
the storage identity, short error previews, log lines without values, installed-only classes.

Tests run as root here, and root passes every permission check: they assert modes and raydo's
refusal logic, not what the kernel would allow another user."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import shutil
import stat
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from harness import Harness

import raydo
from raydo import (
    PayloadError,
    ShippedCodeError,
    StorageError,
    StoragePermissionError,
    StoragePermissionWarning,
    WorkflowEntrypoint,
)
from raydo.bindings import client, shipping
from raydo.runtime.rules import SHOW_LIMIT, brief, seconds, show
from raydo.storage import codec, keys
from raydo.storage.instances import check_schema, storage_identity
from raydo.storage.kv import LmdbKV, MemoryKV
from raydo.storage.permissions import FILE_MODE, FOLDER_MODE, LMDB_FILES

MARKER = f"s3cr3t-{uuid.uuid4().hex}"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[Any]:
    """Set the process umask for one test; the old one comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _open(path: Path) -> LmdbKV:
    kv = LmdbKV(str(path))
    kv.write(lambda w: w.put(b"k", b"v"))
    return kv


# -- storage modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o002, 0o022, 0o077, 0o277])
def test_new_storage_is_private_whatever_the_umask(tmp_path: Path, umask: Any, mask: int) -> None:
    umask(mask)
    # A umask without owner write makes new parents unwritable to a non-root owner: no nesting.
    path = tmp_path / "store" if mask & 0o200 else tmp_path / "deep" / "store"
    kv = _open(path)
    assert _mode(path) == FOLDER_MODE
    for name in LMDB_FILES:
        assert _mode(path / name) == FILE_MODE, name
    kv.close()
    again = LmdbKV(str(path))  # and it opens again, with its data
    assert again.read(lambda r: r.get(b"k")) == b"v"
    again.close()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o720, 0o702, 0o1777])
def test_folder_others_can_write_is_refused_and_left_untouched(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "shared store"
    path.mkdir()
    path.chmod(mode)
    with pytest.raises(StoragePermissionError) as info:
        LmdbKV(str(path))
    err = info.value
    assert isinstance(err, StorageError)
    assert err.path == str(path) and err.mode == mode
    assert f"{mode:#o}" in str(err) and f"chmod 700 '{path}'" in str(err)
    assert list(path.iterdir()) == [] and _mode(path) == mode  # nothing created, nothing changed
    assert pickle.loads(pickle.dumps(err)).mode == mode


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o705, 0o711])
def test_folder_others_can_read_is_used_with_a_warning(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "store"
    path.mkdir()
    path.chmod(mode)
    with pytest.warns(StoragePermissionWarning, match=f"chmod 700 {path}") as record:
        kv = _open(path)
    assert f"{mode:#o}" in str(record[0].message)
    assert _mode(path) == mode  # the folder is the user's: raydo only says what to do
    kv.close()


def test_private_folder_opens_without_warning(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.mkdir(mode=0o700)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _open(path).close()


def test_existing_wide_lmdb_files_are_narrowed_and_keep_their_data(
    tmp_path: Path, umask: Any
) -> None:
    umask(0o022)
    path = tmp_path / "old"
    kv = _open(path)
    kv.close()
    for name in LMDB_FILES:
        (path / name).chmod(0o644)  # as raydo before 0600 left them
    again = LmdbKV(str(path))
    assert again.read(lambda r: r.get(b"k")) == b"v"
    assert all(_mode(path / name) == FILE_MODE for name in LMDB_FILES)
    again.close()


def test_storage_path_that_is_a_file_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("not a folder")
    with pytest.raises(StorageError, match="is not a folder"):
        LmdbKV(str(path))


def test_init_refuses_a_writable_storage_before_starting_ray(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.mkdir()
    path.chmod(0o777)
    ray_was_up = ray.is_initialized()  # a session Ray of earlier tests may be running
    with pytest.raises(StoragePermissionError, match="chmod 700"):
        raydo.init(path)
    assert client._context is None and ray.is_initialized() == ray_was_up
    assert list(path.iterdir()) == []


# -- identity --------------------------------------------------------------------------------------


def test_identity_is_random_made_once_and_kept(tmp_path: Path) -> None:
    a, b = _open(tmp_path / "a"), _open(tmp_path / "b")
    check_schema(a)
    first = storage_identity(a)
    check_schema(a)
    assert storage_identity(a) == first and len(first) == 32
    assert storage_identity(b) != first  # made on first use when the store was never stamped
    a.close()
    reopened = LmdbKV(str(tmp_path / "a"))
    assert storage_identity(reopened) == first
    reopened.close()
    b.close()


def test_identity_is_not_a_function_of_the_path(tmp_path: Path) -> None:
    kv = _open(tmp_path / "s")
    first = storage_identity(kv)
    kv.close()
    shutil.rmtree(tmp_path / "s")
    kv = _open(tmp_path / "s")
    assert storage_identity(kv) != first
    kv.close()


def test_schema_mismatch_writes_no_identity() -> None:
    kv = MemoryKV()
    kv.write(lambda w: w.put(keys.SCHEMA_KEY, keys.encode_u64(99)))
    with pytest.raises(raydo.SchemaVersionError):
        check_schema(kv)
    assert kv.read(lambda r: r.get(keys.IDENTITY_KEY)) is None


# -- error messages and logs -----------------------------------------------------------------------


def test_show_quotes_a_short_preview_and_the_length() -> None:
    text = show("x" * 10_000)
    assert len(text) < SHOW_LIMIT + 40 and text.endswith("(10002 characters)")
    with pytest.raises(raydo.InvalidDurationError) as info:
        seconds(MARKER + " " + "y" * 1000)
    assert len(str(info.value)) < SHOW_LIMIT + 300


def test_payload_errors_give_type_and_size_not_content() -> None:
    with pytest.raises(PayloadError) as info:
        codec.encode({"card": MARKER, "x": object()}, "params of instance 'a'")
    assert "(dict)" in str(info.value) and MARKER not in str(info.value)
    with pytest.raises(PayloadError) as info:
        codec.encode([MARKER] * 40_000, "result of step 'big'")
    assert "(list)" in str(info.value) and "bytes serialized" in str(info.value)
    assert MARKER not in str(info.value)
    with pytest.raises(PayloadError) as info:
        codec.encode({(MARKER, 1): 2}, "payload of event 'e'")
    assert MARKER not in str(info.value)


def test_create_batch_error_names_keys_not_params() -> None:
    class Wf(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            return None

    wf = raydo.workflow(Wf, storage="/nonexistent")
    with pytest.raises(raydo.InvalidInputError) as info:
        wf.create_batch([{"params": {"card": MARKER}, "oops": 1}])
    assert "'oops'" in str(info.value) and MARKER not in str(info.value)


def test_brief_keeps_raydo_messages_and_drops_foreign_ones() -> None:
    assert brief(ValueError(MARKER)) == "ValueError"
    assert brief(raydo.NonRetryableError(MARKER)) == "NonRetryableError"
    step_error = raydo.WorkflowStepError(MARKER, "ValueError", MARKER, "s", 1)
    assert brief(step_error) == "WorkflowStepError"
    assert brief(StorageError("disk gone")) == "StorageError: disk gone"


class Leaky(WorkflowEntrypoint):
    """Holds the marker in params, a step result, an event payload and two error messages."""

    async def run(self, event: Any, step: Any) -> Any:
        secret = await step.do("read", lambda: {"token": event.payload["token"]})
        got = await step.wait_for_event("approve", type="ok", timeout="1 hour")

        def fail() -> None:
            raise ValueError(f"card {secret['token']} declined")

        with contextlib.suppress(raydo.WorkflowStepError):
            await step.do("charge", fail, retries={"limit": 1, "delay": 1})
        raise RuntimeError(f"gave up on {got.payload['token']}")


def test_engine_logs_no_values_at_info(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        h = Harness(Leaky)
        h.create("a", {"token": MARKER})
        await h.settle()
        h.ns.send_event("a", "ok", codec.encode({"token": MARKER}))
        await h.settle()
        await h.advance(2)
        assert h.status("a") == "errored"
        assert MARKER in h.error("a")["message"]  # the user's own error, kept for the user

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert any("instance a errored: RuntimeError" in r.getMessage() for r in caplog.records)
    assert MARKER not in caplog.text


# -- installed workflow classes only ---------------------------------------------------------------


class Shipped(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return None


def test_installed_only_refuses_a_class_that_would_ship_by_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(shipping.INSTALLED_ONLY_ENV, "1")
    with pytest.raises(ShippedCodeError) as info:
        raydo.workflow(Shipped)
    err = info.value
    assert err.workflow_class == f"{__name__}.Shipped" and err.module == __name__
    assert "not under site-packages" in str(err) and "pip install" in str(err)
    assert pickle.loads(pickle.dumps(err)).workflow_class == err.workflow_class
    monkeypatch.setenv(shipping.INSTALLED_ONLY_ENV, "0")
    assert raydo.workflow(Shipped).cls is Shipped


def test_installed_only_refuses_main_and_local_classes() -> None:
    class Local(WorkflowEntrypoint):
        pass

    with pytest.raises(ShippedCodeError, match="not reachable"):
        shipping.check_installed(Local)
    Main = type("Main", (WorkflowEntrypoint,), {"__module__": "__main__"})
    with pytest.raises(ShippedCodeError, match="__main__"):
        shipping.check_installed(Main)


def test_installed_only_accepts_a_class_from_site_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "installed_wf.py").write_text(
        "from raydo import WorkflowEntrypoint\n\nclass Deployed(WorkflowEntrypoint):\n"
        "    async def run(self, event, step):\n        return None\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(shipping, "_INSTALLED", (os.path.realpath(site),))
    from installed_wf import Deployed  # type: ignore[import-not-found]

    shipping.check_installed(Deployed)
    shipping.check_installed(WorkflowEntrypoint)  # raydo's own classes travel by reference
    monkeypatch.setenv(shipping.INSTALLED_ONLY_ENV, "1")
    assert raydo.workflow(Deployed).cls is Deployed


def test_init_setting_applies_to_bindings_made_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = raydo.workflow(Shipped)  # allowed: nothing asked for installed-only yet
    monkeypatch.setattr(client, "_context", client.Context(str(tmp_path), False, False))
    with pytest.raises(ShippedCodeError):
        _ = wf.actor
    assert wf._actor is None
