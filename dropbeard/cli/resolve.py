"""`dropbeard resolve PATH --keep local|DEVICE_ID`: settle a conflict, then sync (IO)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import anyio

from dropbeard.cli.sync import run_sync_pass
from dropbeard.core.errors import UsageError
from dropbeard.core.paths import normalize_path
from dropbeard.sync.resolve import conflict_base, settle
from dropbeard.sync.root import RootPaths, find_root, open_online, root_lock


def _locate(path: Path) -> tuple[RootPaths, str]:
    target = Path(os.path.abspath(path))
    paths = RootPaths(find_root(target))
    try:
        return paths, normalize_path(target.relative_to(paths.root).as_posix())
    except ValueError:
        raise UsageError(f"{target} is not inside a dropbeard root") from None


async def resolve_command(args: argparse.Namespace) -> int:
    paths, rel = await anyio.to_thread.run_sync(_locate, args.path)
    _cfg, state = await anyio.to_thread.run_sync(open_online, paths)
    try:
        with root_lock(paths):
            base = await anyio.to_thread.run_sync(conflict_base, state, rel)
            done = await anyio.to_thread.run_sync(settle, paths.root, rel, base, args.keep)
    finally:
        state.close()
    if not args.quiet:
        for line in done:
            print(line)
    return await run_sync_pass(paths, quiet=args.quiet)
