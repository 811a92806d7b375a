"""`dropbeard init`: make a folder a root and register this device in the bucket (IO).

The root joined is the one the remote holds unless told otherwise (`sync.joining`).
`.dropbear/` is prepared under a temporary name and renamed into place last, once the
device is registered; the temporary folder stays behind only when the registration may
have landed unseen, so that running the same `init` again completes it. A folder `init`
created is removed again when it fails and nothing had to stay.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path

import anyio
import msgspec

from dropbeard.core.config import (
    MODES,
    RemoteConfig,
    RootConfig,
    check_endpoint_url,
    parse_remote_url,
    render_root_config,
)
from dropbeard.core.errors import DropbeardError, NotFound, UsageError
from dropbeard.core.ids import validate_id
from dropbeard.core.keys import RootKeys
from dropbeard.core.timestamps import utc_iso
from dropbeard.store.base import Store
from dropbeard.sync.joining import Incoming, RootChoice, choose_root, incoming
from dropbeard.sync.probe import ignored_conditions
from dropbeard.sync.registry import register, update_registry
from dropbeard.sync.root import DOT, RootPaths
from dropbeard.sync.state import State
from dropbeard.sync.workers import first_error


class InitRequest(msgspec.Struct, frozen=True):
    path: Path
    remote: RemoteConfig
    root_id: str | None = None
    device_id: str | None = None
    mode: str = "bidirectional"
    take_over: bool = False
    #: create a root even though the remote already holds some
    new_root: bool = False


def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")


def derive_id(text: str, what: str, flag: str) -> str:
    """A valid id from a folder or host name: lowercased, other characters become '-'."""
    candidate = _normalised(text)[:64]
    try:
        return validate_id(candidate)
    except ValueError:
        raise UsageError(f"cannot derive a {what} from {text!r}: pass {flag}") from None


def typed_id(text: str, flag: str) -> str:
    """An id the person typed, normalised as a derived one is (`Sync` -> `sync`, `My
    Laptop` -> `my-laptop`) but never cut short; UsageError if nothing valid remains."""
    candidate = _normalised(text)
    try:
        return validate_id(candidate)
    except ValueError as exc:
        shown = "" if candidate == text else f" (from {text!r})"
        raise UsageError(f"{flag}: {exc}{shown}") from None


def prepare(req: InitRequest) -> RootConfig:
    """Validate the request and return the root.toml to write (no IO on the bucket). Its
    root id is the one typed, else the folder's name, until `init_root` settles it
    against the roots the remote holds."""
    if req.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}")
    try:
        url = parse_remote_url(req.remote.url)
    except ValueError as exc:
        raise UsageError(f"--remote: {exc}") from None
    if req.remote.endpoint_url is not None:
        if url.kind != "s3":
            raise UsageError("--endpoint-url only applies to s3:// remotes")
        try:
            check_endpoint_url(req.remote.endpoint_url)
        except ValueError as exc:
            raise UsageError(f"--endpoint-url: {exc}") from None
    path = req.path.absolute()
    root_id = (
        typed_id(req.root_id, "--root-id")
        if req.root_id is not None
        else derive_id(path.name, "root id", "--root-id")
    )
    device_id = (
        typed_id(req.device_id, "--device-id")
        if req.device_id is not None
        else derive_id(socket.gethostname().split(".")[0], "device id", "--device-id")
    )
    if (path / DOT / "root.toml").exists():
        raise UsageError(f"{path} is already a dropbeard root ({path / DOT / 'root.toml'})")
    return RootConfig(
        root_id=root_id,
        device_id=device_id,
        mode=req.mode,
        remote=req.remote,
    )


class Enrolled(msgspec.Struct, frozen=True):
    """What `init_root` did: the root, its config, whether it joined a root the remote
    held and (when it did) what the other devices will send (None if that could not be
    read), and the conditional writes the server ignores (`dropbeard.sync.probe`; empty
    when it honours them all)."""

    paths: RootPaths
    cfg: RootConfig
    choice: RootChoice
    incoming: Incoming | None
    ignored: list[str]


async def init_root(req: InitRequest, cfg: RootConfig, store: Store) -> Enrolled:
    """Settle the root id (`sync.joining.choose_root`), register the device, probe the
    server, then create `.dropbear/` atomically; meanwhile, count what the other devices
    of a joined root will send.

    Retry-safe: from the registry write on, a failure keeps the staging folder with the
    registration it attempted (`registration.json`), since the write may have landed
    unseen (a reply lost after the last retry). The same `init` run again finds it and
    accepts the active record that registration made as its own. Any other failure
    leaves nothing behind, not even the folder if this call created it."""
    choice = await choose_root(
        store, cfg.root_id, typed=req.root_id is not None, new_root=req.new_root
    )
    cfg = msgspec.structs.replace(cfg, root_id=choice.root_id)
    path, created = _root_folder(req)
    counted: list[Incoming] = []

    async def count() -> None:
        with contextlib.suppress(DropbeardError):  # counting is a nicety
            counted.append(await incoming(store, cfg))

    try:
        # What the others will send is counted while the device registers (it reads
        # only their heads and snapshots), and given up if the registration fails.
        with first_error():
            async with anyio.create_task_group() as tg:
                if choice.joined:
                    tg.start_soon(count)
                paths, ignored = await _register(req, cfg, store, path)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty: never what a person (or a retry) needs
        raise
    return Enrolled(paths, cfg, choice, counted[0] if counted else None, ignored)


async def _register(
    req: InitRequest, cfg: RootConfig, store: Store, path: Path
) -> tuple[RootPaths, list[str]]:
    """The registration and `.dropbear/` of `init_root`; the server's ignored conditions."""
    paths = RootPaths(path)
    staging = path / f"{DOT}.init-tmp"
    earlier = _attempted(staging, cfg)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    keep = writing = False
    ignored: list[str] = []
    try:
        keys = RootKeys(cfg.root_id)
        now = earlier or utc_iso(datetime.now(UTC))

        async def probe() -> None:  # what it finds changes only what init says
            ignored.extend(await ignored_conditions(store, keys, cfg.device_id))

        try:
            # The probe's five round trips run while the device registers (three).
            with first_error():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(probe)
                    adopted = await _existing_head(store, keys, cfg.device_id)
                    _stage(staging, cfg, now, adopted)
                    change = register(
                        cfg.device_id, cfg.mode, now, take_over=req.take_over, ours=earlier
                    )
                    writing = True
                    await update_registry(store, keys, change)
        except UsageError:
            raise
        except BaseException:
            keep = writing  # registered, maybe: remembered for the next init
            raise
        (staging / _ATTEMPT).unlink()
        staging.rename(paths.dot)
    finally:
        if not keep:
            shutil.rmtree(staging, ignore_errors=True)
    return paths, ignored


_ATTEMPT = "registration.json"


class _Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """A registration `init` made, kept in its staging folder until it is known to have
    landed: which root, device and remote, and the `registered_at` it wrote."""

    root_id: str
    device_id: str
    remote: str
    registered_at: str


def _attempted(staging: Path, cfg: RootConfig) -> str | None:
    """The `registered_at` of an earlier `init` of this same root, device and remote whose
    registration may have landed unseen, or None."""
    try:
        attempt = msgspec.json.decode((staging / _ATTEMPT).read_bytes(), type=_Attempt)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if (attempt.root_id, attempt.device_id, attempt.remote) != (
        cfg.root_id,
        cfg.device_id,
        cfg.remote.url,
    ):
        return None
    return attempt.registered_at


def _root_folder(req: InitRequest) -> tuple[Path, bool]:
    """The root folder, made if missing; True if this call made it."""
    path = req.path.absolute()
    if not path.exists():
        if not path.parent.is_dir():
            raise UsageError(f"cannot create {path}: {path.parent} does not exist")
        path.mkdir()
        return path, True
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory")
    return path, False


async def _existing_head(store: Store, keys: RootKeys, device_id: str) -> str | None:
    """The etag of a head this device id already has (an earlier holder of the id, taken
    over or re-registered after retirement), or None."""
    try:
        got = await store.get_if_changed(keys.head(device_id), None)
    except NotFound:
        return None
    return None if got is None else got[1]


def _stage(staging: Path, cfg: RootConfig, registered_at: str, adopted: str | None) -> None:
    """Fill the staging folder: root.toml, a new state.sqlite, tmp/, and the attempt."""
    (staging / "root.toml").write_text(render_root_config(cfg), encoding="utf-8")
    state = State.open(staging / "state.sqlite", create=True)
    try:
        with state.transaction():
            state.set_meta("root_id", cfg.root_id)
            state.set_meta("device_id", cfg.device_id)
            state.set_meta("counter", "0")
            state.set_meta("tombstone_seq", "0")
            if adopted is not None:  # not this folder's: see dropbeard.sync.recovery
                state.set_meta("adopted_head_etag", adopted)
    finally:
        state.close()
    (staging / "tmp").mkdir()
    attempt = _Attempt(
        root_id=cfg.root_id,
        device_id=cfg.device_id,
        remote=cfg.remote.url,
        registered_at=registered_at,
    )
    (staging / _ATTEMPT).write_bytes(msgspec.json.encode(attempt))
