"""`dropbeard sync`: one pass over a root, its outcome printed (IO)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable

import anyio
import msgspec

from dropbeard.cli.patience import watched
from dropbeard.cli.roots import chosen_roots
from dropbeard.cli.terminal import ProgressDisplay, human_bytes
from dropbeard.core.changes import PathChange
from dropbeard.core.daemonconfig import DEFAULT_CONCURRENCY
from dropbeard.core.errors import (
    DropbeardError,
    ExitCode,
    UsageError,
    single_error,
)
from dropbeard.store.bandwidth import Bandwidth
from dropbeard.store.factory import open_store
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.root import RootPaths, open_online, root_lock


async def sync_command(args: argparse.Namespace) -> int:
    """`dropbeard sync`: one pass over the root holding PATH (or the current folder), or
    over every configured root in turn when neither is in one."""
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    chosen = await anyio.to_thread.run_sync(chosen_roots, args.path, args.config)
    if not chosen.configured:
        return await sync_root(RootPaths(chosen.roots[0]), args)
    codes: list[int] = []
    for root in chosen.roots:
        try:
            codes.append(await sync_root(RootPaths(root), args))
        except DropbeardError as exc:  # one root failing does not stop the others
            print(f"dropbeard: error: {root}: {exc}", file=sys.stderr)
            codes.append(exc.exit_code)
    return worst(codes)


def worst(codes: list[int]) -> int:
    """One exit code for several roots: the first failure, else 4 if conflicts or problems
    remain anywhere, else 0."""
    failures = [c for c in codes if c not in (ExitCode.OK, ExitCode.CONFLICTS)]
    if failures:
        return failures[0]
    return ExitCode.CONFLICTS if ExitCode.CONFLICTS in codes else ExitCode.OK


def _options(
    args: argparse.Namespace,
    display: ProgressDisplay | None,
    on_change: Callable[[PathChange], None] | None,
) -> PassOptions:
    """The pass's options from the command line."""
    return PassOptions(
        dry_run=args.dry_run,
        allow_mass_delete=args.allow_mass_delete,
        concurrency=args.concurrency,
        meter=None if display is None else display.meter,
        on_change=on_change,
        full_reconcile=args.full_reconcile,
        check_full=args.check_full,
    )


async def sync_root(paths: RootPaths, args: argparse.Namespace) -> int:
    """One pass over one root, its outcome printed; the exit code."""
    cfg, state = await anyio.to_thread.run_sync(open_online, paths)
    changes: list[PathChange] = []
    listed = args.dry_run or args.verbose  # --dry-run lists the plan, -v what was done
    try:
        bandwidth = Bandwidth(args.bwlimit or None)
        store = watched(open_store(cfg.remote, concurrency=args.concurrency, bandwidth=bandwidth))
        display = None if (args.quiet or args.json) else ProgressDisplay.for_stderr()
        opts = _options(args, display, changes.append if listed else None)
        try:
            with display or contextlib.nullcontext(), root_lock(paths):
                summary = await run_pass(paths, cfg, state, store, opts)
        except BaseExceptionGroup as group:
            error = single_error(group)
            if error is None:
                raise
            raise error from group
        finally:
            await store.aclose()
        problems = state.problems()
        open_conflicts = state.paths_with_status("conflict")
    finally:
        state.close()
    integrity = next((p.message for p in problems if p.kind == "integrity"), None)
    if args.dry_run:
        integrity = None
    if args.json:
        out = msgspec.to_builtins(summary)
        if listed:
            out["changes"] = msgspec.to_builtins(changes)
        if integrity is not None:  # one object on stdout: the summary and the failure
            out.update(error="integrity", exit_code=int(ExitCode.INTEGRITY), message=integrity)
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
    elif not args.quiet:
        print(summary.describe())
        if listed:
            for line in change_lines(changes, planned=args.dry_run):
                print(line)
        for p in problems[:20]:
            print(f"  problem: {p.path}: {p.message}")
        if len(problems) > 20:
            print(f"  … and {len(problems) - 20} more problems (dropbeard status)")
        if open_conflicts:
            print(f"  {len(open_conflicts)} conflicts open (dropbeard status lists them)")
    if integrity is not None:
        print(f"dropbeard: error: {integrity}", file=sys.stderr)
        return ExitCode.INTEGRITY
    if summary.halted:
        print(f"dropbeard: halted: {summary.halted}", file=sys.stderr)
        return ExitCode.FAILURE
    if summary.conflicts or summary.problems or open_conflicts:  # found now or still open
        return ExitCode.CONFLICTS
    return ExitCode.OK


_PLANNED = {"uploaded": "would upload", "downloaded": "would download", "deleted": "would delete"}


def change_lines(changes: list[PathChange], *, planned: bool) -> list[str]:
    """One line per changed path (problems are listed on their own)."""
    lines = []
    for c in changes:
        if c.event == "problem":
            continue
        name = c.path + ("/" if c.type == "dir" else "")
        what = _PLANNED.get(c.event, c.event) if planned else c.event
        extra = f" ({human_bytes(c.bytes)})" if c.bytes else ""
        if c.where:
            extra += f" ({c.where})"
        if c.detail:
            extra += f" -> {c.detail}"
        lines.append(f"  {what:<15} {name}{extra}")
    return lines


async def run_sync_pass(paths: RootPaths, *, quiet: bool) -> int:
    """One ordinary `sync` of `paths` (used after `resolve` to publish the resolution)."""
    args = argparse.Namespace(
        path=paths.root,
        config=None,
        json=False,
        dry_run=False,
        allow_mass_delete=False,
        concurrency=DEFAULT_CONCURRENCY,
        bwlimit=None,
        full_reconcile=False,
        check_full=False,
        quiet=quiet,
        verbose=False,
    )
    return await sync_command(args)
