"""`dropbeard init`: make a folder a root on a remote and register this device (IO)."""

from __future__ import annotations

import argparse
import os
import sys

import anyio

from dropbeard.core.config import RemoteConfig, parse_remote_url
from dropbeard.core.errors import UsageError
from dropbeard.store.factory import open_store
from dropbeard.sync.enroll import InitRequest, init_root, prepare
from dropbeard.sync.probe import ignored_warning


async def init_command(args: argparse.Namespace) -> int:
    remote_url = _absolute_remote(args.remote)
    remote = RemoteConfig(
        url=remote_url,
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
    )
    cfg = prepare(req)
    url = parse_remote_url(remote.url)
    if url.kind == "local":
        folder = anyio.Path(url.path)
        if not await folder.exists():
            if not await folder.parent.is_dir():
                raise UsageError(f"--remote {url.path}: its parent folder does not exist")
            await folder.mkdir()
    store = open_store(remote)
    try:
        enrolled = await init_root(req, cfg, store)
    finally:
        await store.aclose()
    paths = enrolled.paths
    if enrolled.ignored:  # said even with --quiet: the person must know
        print(ignored_warning(store.description, enrolled.ignored), file=sys.stderr)
    if not args.quiet:
        print(
            f"initialised {paths.root}: root {cfg.root_id!r}, device {cfg.device_id!r}, "
            f"mode {cfg.mode}, remote {remote.url}"
        )
    return 0


def _absolute_remote(url: str) -> str:
    """A directory remote made absolute for root.toml; URLs unchanged."""
    if "://" in url:
        return url
    return os.path.abspath(os.path.expanduser(url))
