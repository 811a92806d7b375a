"""`dropbeard init`: make a folder a root and register this device in the bucket (IO).

Nothing local is left behind unless registration succeeded: `.dropbear/` is prepared
under a temporary name and renamed into place last.
"""

from __future__ import annotations

import re
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dropbeard.core.config import (
    MODES,
    RemoteConfig,
    RootConfig,
    parse_remote_url,
    render_root_config,
)
from dropbeard.core.errors import UsageError
from dropbeard.core.ids import validate_id
from dropbeard.core.keys import RootKeys
from dropbeard.core.timestamps import utc_iso
from dropbeard.store.base import Store
from dropbeard.sync.probe import ignored_conditions
from dropbeard.sync.registry import register, update_registry
from dropbeard.sync.root import DOT, RootPaths
from dropbeard.sync.state import State


@dataclass(frozen=True, slots=True)
class InitRequest:
    path: Path
    remote: RemoteConfig
    root_id: str | None = None
    device_id: str | None = None
    mode: str = "bidirectional"
    take_over: bool = False


def derive_id(text: str, what: str, flag: str) -> str:
    """A valid id from a folder or host name: lowercased, other characters become '-'."""
    candidate = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:64]
    try:
        return validate_id(candidate)
    except ValueError:
        raise UsageError(f"cannot derive a {what} from {text!r}: pass {flag}") from None


def prepare(req: InitRequest) -> RootConfig:
    """Validate the request and return the root.toml to write (no IO on the bucket)."""
    if req.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}")
    try:
        parse_remote_url(req.remote.url)
    except ValueError as exc:
        raise UsageError(f"--remote: {exc}") from None
    path = req.path.absolute()
    # An id given explicitly, even an empty one, is validated as given, never replaced.
    root_id = (
        req.root_id if req.root_id is not None else derive_id(path.name, "root id", "--root-id")
    )
    device_id = (
        req.device_id
        if req.device_id is not None
        else derive_id(socket.gethostname().split(".")[0], "device id", "--device-id")
    )
    for value, flag in ((root_id, "--root-id"), (device_id, "--device-id")):
        try:
            validate_id(value)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    if (path / DOT / "root.toml").exists():
        raise UsageError(f"{path} is already a dropbeard root ({path / DOT / 'root.toml'})")
    return RootConfig(
        root_id=root_id,
        device_id=device_id,
        mode=req.mode,
        remote=req.remote,
    )


@dataclass(frozen=True, slots=True)
class Enrolled:
    """What `init_root` did: the root, and the conditional writes the server ignores
    (`dropbeard.sync.probe`; empty when it honours them all)."""

    paths: RootPaths
    ignored: list[str]


async def init_root(req: InitRequest, cfg: RootConfig, store: Store) -> Enrolled:
    """Probe the server, register the device, then create `.dropbear/` atomically."""
    path = req.path.absolute()
    if not path.exists():
        if not path.parent.is_dir():
            raise UsageError(f"cannot create {path}: {path.parent} does not exist")
        path.mkdir()
    elif not path.is_dir():
        raise UsageError(f"{path} is not a directory")
    paths = RootPaths(path)
    staging = path / f"{DOT}.init-tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    try:
        (staging / "root.toml").write_text(render_root_config(cfg), encoding="utf-8")
        state = State.open(staging / "state.sqlite", create=True)
        try:
            with state.transaction():
                state.set_meta("root_id", cfg.root_id)
                state.set_meta("device_id", cfg.device_id)
                state.set_meta("counter", "0")
                state.set_meta("tombstone_seq", "0")
        finally:
            state.close()
        (staging / "tmp").mkdir()
        now = utc_iso(datetime.now(UTC))
        keys = RootKeys(cfg.root_id)
        ignored = await ignored_conditions(store, keys, cfg.device_id)
        await update_registry(
            store, keys, register(cfg.device_id, cfg.mode, now, take_over=req.take_over)
        )
        staging.rename(paths.dot)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Enrolled(paths, ignored)
