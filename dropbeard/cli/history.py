"""`dropbeard ls`, `versions` and `restore`: what the bucket's history holds, and bringing
it back (IO: store, the root's files, stdout).

Tables for people, `--json` for machines. Times given with `--at` are a time ago (`2h`,
`3d`) or an ISO time (local unless it names a zone); times shown are UTC, as snapshot ids
are.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec

from dropbeard.cli.rootbucket import RootBucket, open_root_bucket, root_relative
from dropbeard.cli.terminal import ProgressDisplay, human_bytes
from dropbeard.core.errors import ExitCode, UsageError
from dropbeard.core.history import Version, choose_version, parse_when, short
from dropbeard.core.model import Snapshot
from dropbeard.core.tree import TreeEntry
from dropbeard.sync.devicelog import snapshot_time
from dropbeard.sync.history import History, load_history
from dropbeard.sync.restore import (
    Item,
    check_destinations,
    expand,
    plan_items,
    sha256_of_file,
    write_items,
)
from dropbeard.sync.root import reset_tmp, root_lock
from dropbeard.sync.treeread import folder_entries


def _emit_json(obj: Any) -> None:
    sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    local = datetime.now().astimezone().tzinfo or UTC
    return parse_when(text, datetime.now(UTC), local)


async def _history(rb: RootBucket, device: str | None) -> History:
    return await load_history(rb.store, rb.keys, rb.trees(), rb.reader(), device=device)


def _say_problems(history: History) -> None:
    for line in history.problems:
        print(f"dropbeard: warning: skipped {line}", file=sys.stderr)


# --- ls -------------------------------------------------------------------------------


async def ls_command(args: argparse.Namespace) -> int:
    target = args.path if args.path is not None else Path.cwd()
    async with open_root_bucket(target) as rb:
        rel = root_relative(rb.paths.root, target)
        device = args.device or rb.device_id
        history = await _history(rb, device)
        snap = _snapshot_of(history, device, _when(args.at))
        entry = await history.entry(snap.tree, rel)
        if entry is None:
            raise UsageError(
                f"{rel or '/'} is not in {device}'s snapshot of {snapshot_time(snap.snapshot)}"
            )
        if entry.type == "dir" and entry.tree is not None:
            listed = [(e.name, e) async for e in folder_entries(history.trees, entry.tree)]
        else:
            listed = [(rel, entry)]
    _say_problems(history)
    if args.json:
        _emit_json({"device": device, "snapshot": snap.snapshot, "path": rel,
                    "entries": [_entry_json(name, e) for name, e in listed]})  # fmt: skip
    else:
        if not args.quiet:
            print(f"{rel or '/'} in {device}'s snapshot of {snapshot_time(snap.snapshot)}:")
        for name, e in listed:
            print(_ls_line(name, e))
    return ExitCode.OK


def _snapshot_of(history: History, device: str, at: datetime | None) -> Snapshot:
    snaps = history.snapshots.get(device, {})
    head = history.heads.heads.get(device)
    if at is None and head is not None and head.snapshot in snaps:
        return snaps[head.snapshot]
    chosen = history.snapshot_at(at or datetime.now(UTC), device)
    if chosen is None:
        when = f"at {at:%Y-%m-%d %H:%M:%SZ}" if at else "at all"
        raise UsageError(f"{device} has no retained snapshot {when} (see `dropbeard devices`)")
    return chosen


def _ls_line(name: str, e: TreeEntry) -> str:
    kind = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}.get(e.type, stat.S_IFREG)
    size = f"{e.size:>12,}" if e.size is not None else f"{'-':>12}"
    when = (
        datetime.fromtimestamp(e.mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
        if e.mtime_ns is not None
        else " " * 16
    )
    shown = name + ("/" if e.type == "dir" else f" -> {e.target}" if e.target else "")
    return f"{stat.filemode(kind | e.mode)} {size} {when} {short(e.sha256):12} {shown}"


def _entry_json(name: str, e: TreeEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": e.type, "mode": e.mode, "version": e.version}
    for field in ("size", "mtime_ns", "sha256", "target"):
        if getattr(e, field) is not None:
            out[field] = getattr(e, field)
    return out


# --- versions -------------------------------------------------------------------------


async def versions_command(args: argparse.Namespace) -> int:
    async with open_root_bucket(args.path) as rb:
        rel = root_relative(rb.paths.root, args.path)
        if not rel:
            raise UsageError("versions: name a file or folder inside the root")
        history = await _history(rb, args.device)
        rows = await history.versions(rel, args.device)
    _say_problems(history)
    if args.json:
        _emit_json([_version_json(v) for v in rows])
    elif not rows:
        print(f"{rel}: no retained version")
    else:
        print(f"{'WHEN':<20}  {'DEVICE':<12}  {'WHAT':<22}  {'SHA256':<12}  FROM")
        for v in rows:
            print(_version_line(v))
    return ExitCode.OK


def _version_line(v: Version) -> str:
    what = v.kind if v.size is None else f"{v.kind} {human_bytes(v.size)}"
    if v.kind == "symlink" and v.entry is not None:
        what = f"symlink -> {v.entry.target}"
    if v.seq is not None:
        source = f"tombstone {v.seq}"
    elif v.snapshot and v.until and v.until != v.snapshot:
        source = f"snapshots {v.snapshot}..{v.until}"
    else:
        source = f"snapshot {v.snapshot}"
    return (
        f"{v.time:%Y-%m-%d %H:%M:%SZ}  {v.device:<12}  {what:<22}  {short(v.sha256):<12}  {source}"
    )


def _version_json(v: Version) -> dict[str, Any]:
    return {
        "device": v.device, "time": f"{v.time:%Y-%m-%dT%H:%M:%SZ}", "kind": v.kind,
        "size": v.size, "sha256": v.sha256, "version": v.version, "snapshot": v.snapshot,
        "until": v.until, "tombstone_seq": v.seq,
        "target": v.entry.target if v.entry is not None else None,
    }  # fmt: skip


# --- restore --------------------------------------------------------------------------


async def restore_command(args: argparse.Namespace) -> int:
    if args.at is not None and args.version is not None:
        raise UsageError("restore: give --at or --version, not both")
    async with open_root_bucket(args.path) as rb:
        root = rb.paths.root
        rel = root_relative(root, args.path)
        into = None if args.to is None else _outside(args.to, root)
        history = await _history(rb, args.device)
        entry, label, sha = await _source(history, rel, args, root)
        if entry is None:  # known only from a tombstone: its one blob
            dest = (into / rel.rpartition("/")[2]) if into else root / rel
            items = [Item(rel, dest, None, sha)]
        else:
            found = await expand(history, rel, entry) if entry.type == "dir" else [(rel, entry)]
            items = plan_items(found, rel, into or root, into is None)
        display = None if (args.quiet or args.json) else ProgressDisplay.for_stderr()
        with contextlib.ExitStack() as held:
            if into is None:
                held.enter_context(root_lock(rb.paths))
                await anyio.to_thread.run_sync(reset_tmp, rb.paths)
            checked = await check_destinations(items, history, None if into else root)
            if display is not None:
                held.enter_context(display)
            done = await write_items(
                rb.store, history, items, checked, rb.paths.tmp if into is None else into,
                meter=display.meter if display else None,
            )  # fmt: skip
    _say_problems(history)
    if args.json:
        _emit_json({"path": rel, "from": label, "into": str(into or root),
                    "written": done.written, "unchanged": done.unchanged,
                    "skipped": done.skipped, "bytes": done.bytes})  # fmt: skip
    elif not args.quiet:
        print(f"restored {len(done.written):,} of {len(items):,} items ({human_bytes(done.bytes)}) "
              f"of {rel or '/'} from {label} into {into or root}")  # fmt: skip
        if done.skipped:
            print(f"left alone (changed while restoring): {', '.join(done.skipped[:10])}")
        if into is None and done.written:
            print("the next sync publishes them as new versions")
    return ExitCode.OK


def _outside(to: Path, root: Path) -> Path:
    target = Path(os.path.abspath(to))
    if target == root or root in target.parents:
        raise UsageError(f"--to {target} is inside the root: restore without --to instead")
    return target


async def _source(
    history: History, rel: str, args: argparse.Namespace, root: Path
) -> tuple[TreeEntry | None, str, str | None]:
    """What to restore at `rel`: its entry (None for a file known only from a tombstone),
    where it comes from, and its sha256 when it is a file."""
    if args.version is None and (args.at is not None or not rel):
        at = _when(args.at) or datetime.now(UTC)
        snap = history.snapshot_at(at, args.device)
        if snap is None:
            raise UsageError(f"no retained snapshot at {at:%Y-%m-%d %H:%M:%SZ}")
        return await _in_snapshot(history, snap, rel)
    rows = await history.versions(rel, args.device)
    if not rows:
        raise UsageError(f"{rel}: no retained version (see `dropbeard versions {rel}`)")
    folders = [v for v in rows if v.kind == "dir" and v.until]
    if args.version is None and folders and rows[-1].sha256 is None:
        # a folder, still there or deleted: as the newest snapshot holding it had it
        newest = max(folders, key=lambda v: (v.until or "", v.device))
        return await _in_snapshot(
            history, history.snapshots[newest.device][newest.until or ""], rel
        )
    current = await anyio.to_thread.run_sync(_current_sha256, root / rel)
    chosen = choose_version(rows, sha_prefix=args.version, current_sha256=current)
    if chosen.seq is not None:
        label = f"{chosen.device}'s tombstone {chosen.seq} ({chosen.time:%Y-%m-%d %H:%M:%SZ})"
    else:
        label = f"{chosen.device}'s snapshot of {snapshot_time(chosen.snapshot or '')}"
    entry = chosen.entry if chosen.kind == "file" else None
    return entry, label, chosen.sha256


async def _in_snapshot(
    history: History, snap: Snapshot, rel: str
) -> tuple[TreeEntry | None, str, str | None]:
    label = f"{snap.device_id}'s snapshot of {snapshot_time(snap.snapshot)}"
    entry = await history.entry(snap.tree, rel)
    if entry is None:
        raise UsageError(f"{rel} is not in {label}")
    return entry, label, entry.sha256


def _current_sha256(path: Path) -> str | None:
    """The SHA-256 of the regular file at `path`, or None when there is none."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
    except FileNotFoundError:
        return None
    return sha256_of_file(path)
