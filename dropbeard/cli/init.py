"""`dropbeard init`: make a folder a root on a remote and register this device (IO)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import anyio

from dropbeard.cli.patience import watched
from dropbeard.cli.terminal import human_bytes
from dropbeard.core.config import RemoteConfig, looks_like_url, parse_remote_url
from dropbeard.core.errors import UsageError
from dropbeard.store.factory import open_store
from dropbeard.sync.enroll import Enrolled, InitRequest, init_root, prepare
from dropbeard.sync.probe import ignored_warning


async def init_command(args: argparse.Namespace) -> int:
    remote = RemoteConfig(
        url=_absolute_remote(args.remote),
        endpoint_url=args.endpoint_url or None,
        region=args.region or None,
        profile=args.profile or None,
        addressing_style=args.addressing_style,
    )
    req = InitRequest(
        path=args.path,
        remote=remote,
        root_id=args.root_id,
        device_id=args.device_id,
        mode=args.mode,
        take_over=args.take_over,
        new_root=args.new_root,
    )
    cfg = prepare(req)
    made_remote = await _make_local_remote(remote)
    try:
        store = watched(open_store(remote))
        try:
            done = await init_root(req, cfg, store)
        finally:
            await store.aclose()
    except BaseException:
        if made_remote is not None:  # a failed init leaves no folder it created
            with contextlib.suppress(OSError):
                await made_remote.rmdir()
        raise
    if done.ignored:  # said even with --quiet: the person must know
        print(ignored_warning(store.description, done.ignored), file=sys.stderr)
    if not args.quiet:
        print(describe(done))
    return 0


async def _make_local_remote(remote: RemoteConfig) -> anyio.Path | None:
    """Create a local-directory remote's folder (its parent must exist); the folder if
    this call created it."""
    url = parse_remote_url(remote.url)
    if url.kind != "local":
        return None
    folder = anyio.Path(url.path)
    if await folder.exists():
        return None
    if not await folder.parent.is_dir():
        raise UsageError(f"--remote {url.path}: its parent folder does not exist")
    await folder.mkdir()
    return folder


def describe(done: Enrolled) -> str:
    """What `init` did, in one or two lines: the root joined (and what it will receive)
    or created."""
    cfg = done.cfg
    where = f"on {cfg.remote.url}, as device {cfg.device_id!r} ({cfg.mode})"
    if not done.choice.joined:
        return f"initialised {done.paths.root}: created root {cfg.root_id!r} {where}"
    line = f"initialised {done.paths.root}: joined root {cfg.root_id!r} {where}"
    got = done.incoming
    if cfg.mode == "upload-only":
        tail = "upload-only: this device sends its files and receives none"
    elif got is None:
        tail = "could not read what the other devices hold; `dropbeard sync` will fetch it"
    elif not got.devices:
        tail = "no other device has published yet"
    else:
        tail = (
            f"{got.files} files ({human_bytes(got.bytes)}) to receive from {', '.join(got.devices)}"
        )
    return f"{line}\n  {tail}; run `dropbeard sync {done.paths.root}` or the daemon to sync"


def _absolute_remote(url: str) -> str:
    """A directory remote made absolute for root.toml; URLs (even mistyped ones, which
    parsing then explains) unchanged."""
    if "://" in url or looks_like_url(url):
        return url
    return os.path.abspath(os.path.expanduser(url))
