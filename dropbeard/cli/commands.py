"""`init` and `sync`: open the root and the store, run, print the outcome (IO)."""

from __future__ import annotations

import argparse
import os
import sys

import anyio
import msgspec

from dropbeard.cli.terminal import ProgressLine, human_bytes
from dropbeard.core.config import RemoteConfig, parse_remote_url
from dropbeard.core.errors import DropbeardError, IntegrityError, UsageError
from dropbeard.core.summary import Summary
from dropbeard.store.factory import open_store
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.enroll import InitRequest, init_root, prepare
from dropbeard.sync.root import RootPaths, find_root, open_online, root_lock

EXIT_HALTED = 1
EXIT_CONFLICTS = 4
EXIT_INTEGRITY = 11


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
        paths = await init_root(req, cfg, store)
    finally:
        await store.aclose()
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


async def sync_command(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    paths = await anyio.to_thread.run_sync(lambda: RootPaths(find_root(args.path)))
    cfg, state = await anyio.to_thread.run_sync(open_online, paths)
    try:
        store = open_store(cfg.remote, concurrency=args.concurrency)
        progress = None if (args.quiet or args.json) else ProgressLine.for_stderr()
        try:
            with root_lock(paths):
                summary = await run_pass(
                    paths,
                    cfg,
                    state,
                    store,
                    PassOptions(
                        dry_run=args.dry_run,
                        allow_mass_delete=args.allow_mass_delete,
                        concurrency=args.concurrency,
                        progress=progress.add if progress else None,
                    ),
                )
        except BaseExceptionGroup as group:
            error = single_error(group)
            if error is None:
                raise
            raise error from group
        finally:
            if progress:
                progress.close()
            await store.aclose()
        problems = state.problems()
        open_conflicts = state.paths_with_status("conflict")
    finally:
        state.close()
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    elif not args.quiet:
        print(describe(summary))
        for p in problems[:20]:
            print(f"  problem: {p.path}: {p.message}")
        if len(problems) > 20:
            print(f"  … and {len(problems) - 20} more problems (dropbeard status)")
        if open_conflicts:
            print(f"  {len(open_conflicts)} conflicts open (dropbeard status lists them)")
    if any(p.kind == "integrity" for p in problems) and not args.dry_run:
        first = next(p for p in problems if p.kind == "integrity")
        raise IntegrityError(first.message)
    if summary.halted:
        print(f"dropbeard: halted: {summary.halted}", file=sys.stderr)
        return EXIT_HALTED
    if summary.conflicts or summary.problems or open_conflicts:  # found now or still open
        return EXIT_CONFLICTS
    return 0


def single_error(group: BaseExceptionGroup[BaseException]) -> DropbeardError | None:
    """The error to report for a failure inside a task group (anyio wraps it, with any
    sibling failures, in an ExceptionGroup): the first one, if every failure is a
    DropbeardError; None if any is not (a bug, to be shown as such)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = exc.exceptions
        else:
            leaves.append(exc)
    if leaves and all(isinstance(e, DropbeardError) for e in leaves):
        first = leaves[0]
        assert isinstance(first, DropbeardError)
        return first
    return None


def describe(s: Summary) -> str:
    verb = "would sync" if s.dry_run else "synced"
    parts = [f"scanned {s.scanned}", f"hashed {s.hashed}"]
    if s.dry_run:
        parts += [
            f"{s.planned_uploads} to upload",
            f"{s.planned_downloads} to download",
            f"{s.planned_local_deletes} to delete here",
            f"{s.planned_tombstones} deletes to publish",
        ]
    else:
        parts.append(f"uploaded {s.uploaded} ({human_bytes(s.uploaded_bytes)})")
        if s.skipped_existing:
            parts.append(f"{s.skipped_existing} already in the bucket")
        if s.downloaded:
            parts.append(f"downloaded {s.downloaded} ({human_bytes(s.downloaded_bytes)})")
        if s.deleted_local:
            parts.append(f"deleted {s.deleted_local} here")
        if s.tombstones:
            parts.append(f"published {s.tombstones} deletes")
    if s.conflicts:
        parts.append(f"{s.conflicts} conflicts")
    if s.problems:
        parts.append(f"{s.problems} problems")
    tail = f"; published manifest {s.manifest}" if s.manifest else "; nothing to publish"
    if s.dry_run:
        tail = ""
    return (
        f"{verb} {s.root} ({s.root_id}/{s.device_id}): {', '.join(parts)}{tail} "
        f"in {s.duration_s:.2f}s"
    )


async def run_sync_pass(paths: RootPaths, *, quiet: bool) -> int:
    """One ordinary `sync` of `paths` (used after `resolve` to publish the resolution)."""
    args = argparse.Namespace(
        path=paths.root,
        json=False,
        dry_run=False,
        allow_mass_delete=False,
        concurrency=8,
        quiet=quiet,
        verbose=False,
    )
    return await sync_command(args)
