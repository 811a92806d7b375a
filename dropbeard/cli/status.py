"""`dropbeard status`: asked of the running daemon over its control socket when one runs,
else read from the root and the bucket directly; rendered for people or as JSON (IO:
socket, stdout)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from dropbeard.cli.patience import watched
from dropbeard.cli.roots import chosen_roots
from dropbeard.cli.terminal import human_bytes
from dropbeard.core.config import RemoteConfig
from dropbeard.core.duration import format_duration
from dropbeard.core.errors import ExitCode
from dropbeard.daemon.control import NoDaemon, ask
from dropbeard.store.base import Store
from dropbeard.store.factory import open_store
from dropbeard.sync.report import StatusReport, gather
from dropbeard.sync.root import RootPaths, find_root


async def status_from_daemon(
    path: Path | None, *, socket_path: str, offline: bool, as_json: bool
) -> int | None:
    """Print the daemon's status (of the root holding `path`, or of all its roots) and
    return the exit code; None, after saying so, when the root must be read directly."""
    try:
        reply = await ask(socket_path, {"op": "status", "offline": offline})
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise NoDaemon(f"the daemon on {socket_path} failed: {_reply_error(reply)}")
    except NoDaemon as exc:
        if not as_json:
            print(f"({exc}; reading the root directly)")
        return None
    roots: list[dict[str, Any]] = reply["roots"]
    if path is not None:
        want = await anyio.to_thread.run_sync(_real, find_root, path)
        roots = [r for r in roots if await anyio.to_thread.run_sync(_real, str, r["path"]) == want]
        if not roots:
            if not as_json:
                print(f"(the daemon on {socket_path} does not sync {want}; reading it directly)")
            return None
    if as_json:
        out = {"source": "daemon", "socket": socket_path, "daemon": reply["daemon"], "roots": roots}
        print(msgspec.json.encode(out).decode())
    else:
        print(render_daemon_status(socket_path, reply["daemon"], roots))
    return daemon_exit_code(roots)


def daemon_exit_code(roots: list[dict[str, Any]]) -> ExitCode:
    """1 if a root's last pass failed, else 3 if one is offline, else 4 if conflicts,
    problems or a halted delete remain, else 0."""
    if any((r.get("last_pass") or {}).get("outcome") == "error" for r in roots):
        return ExitCode.FAILURE
    reports = [msgspec.convert(r["report"], StatusReport) for r in roots]
    return exit_code(reports)


def exit_code(reports: list[StatusReport]) -> ExitCode:
    """3 if a root is offline, else 4 if conflicts, problems or a halted delete remain."""
    if not all(r.online for r in reports):
        return ExitCode.OFFLINE
    if any(r.needs_attention for r in reports):
        return ExitCode.CONFLICTS
    return ExitCode.OK


def _real(find: Callable[[Any], Any], path: Any) -> str:
    return os.path.realpath(str(find(path)))


def _reply_error(reply: Any) -> str:
    return str(reply.get("error")) if isinstance(reply, dict) else "malformed reply"


def render_daemon_status(
    socket_path: str, daemon: dict[str, Any], roots: list[dict[str, Any]]
) -> str:
    lines = [
        f"daemon: pid {daemon['pid']}, up {format_duration(round(daemon['uptime_s']))}, "
        f"{len(roots)} roots (answered on {socket_path})"
    ]
    for root in roots:
        lines.append(render(msgspec.convert(root["report"], StatusReport)))
        state = root["state"] + (f" ({root['reason']})" if root.get("reason") else "")
        lines.append(f"  daemon state: {state}")
        lines += [f"  WARNING: {warning}" for warning in root.get("warnings", [])]
        if root.get("running"):
            run = root["running"]
            lines.append(f"  syncing since {run['started_at']} ({run['reason']}, {run['scope']})")
        last = root.get("last_pass")
        if last:
            what = last.get("outcome", "?")
            if last.get("summary"):
                s = last["summary"]
                what += (
                    f": {s['uploaded']} up, {s['downloaded']} down, "
                    f"{s['deleted_local']} deleted here, {s['conflicts']} conflicts"
                )
            elif last.get("error"):
                what += f": {last['error']}"
                if last.get("exit_code") is not None:
                    what += f" (exit {last['exit_code']})"
            lines.append(f"  last pass: {last['ended_at']} ({last['reason']}) {what}")
        if root.get("next_pass_at"):
            lines.append(f"  next pass: {root['next_pass_at']} ({root['next_pass_reason']})")
        if root.get("pending_count"):
            shown = ", ".join(root["pending_paths"][:5])
            more = "…" if root["pending_count"] > 5 else ""
            lines.append(f"  pending: {root['pending_count']} paths ({shown}{more})")
        if root.get("progress"):
            lines.append(f"  {progress_line(root['progress'])}")
        for t in root.get("transfers", []):
            total = "?" if t["bytes_total"] is None else human_bytes(t["bytes_total"])
            lines.append(
                f"  {t['direction']}: {t['path']} {human_bytes(t['bytes_done'])}/{total} "
                f"at {human_bytes(t['rate_bytes_per_s'])}/s"
            )
    return "\n".join(lines)


def progress_line(p: dict[str, Any]) -> str:
    """A running pass's stage as `uploading: 12/300 files, 155.0 MB/500.0 MB, 31%,
    32.0 MB/s, ETA 10s, notes/todo.md`."""
    files = f"{p['files_done']}" + ("" if p["files_total"] is None else f"/{p['files_total']}")
    done = human_bytes(p["bytes_done"])
    size = done if p["bytes_total"] is None else f"{done}/{human_bytes(p['bytes_total'])}"
    parts = [f"{files} files", size]
    if p["percent"] is not None:
        parts.append(f"{p['percent']:.0f}%")
    parts.append(f"{human_bytes(p['rate_bytes_per_s'])}/s")
    if p["eta_s"] is not None:
        parts.append(f"ETA {format_duration(round(p['eta_s']))}")
    if p["current"]:
        parts.append(p["current"])
    return f"{p['stage']}: {', '.join(parts)}"


async def status_command(args: argparse.Namespace) -> int:
    """Status read from the roots themselves: the one holding PATH, else the one holding
    the current folder, else every configured root."""
    chosen = await anyio.to_thread.run_sync(chosen_roots, args.path, args.config)
    reports = [
        await gather(RootPaths(root), offline=args.offline, opener=_watched_store)
        for root in chosen.roots
    ]
    if args.json:
        out: Any = {"source": "config", "roots": reports} if chosen.configured else reports[0]
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
    else:
        print("\n".join(render(report) for report in reports))
    return exit_code(reports)


def _watched_store(remote: RemoteConfig) -> Store:
    return watched(open_store(remote))


def render(r: StatusReport) -> str:
    if not r.online:
        return f"{r.root}: OFFLINE — {r.reason}"
    lines = [
        f"{r.root}: online — root {r.root_id}, device {r.device_id}, mode {r.mode}",
        f"  remote: {r.remote}",
    ]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(r.counts.items())) or "nothing tracked yet"
    lines.append(f"  paths: {counts}")
    lines.append(f"  last publish: {r.last_snapshot or 'never'}")
    if r.halted:
        lines.append(f"  HALTED: {r.halted}")
    for c in r.conflicts:
        lines.append(f"  conflict: {c.path} (copies: {', '.join(c.copies) or 'none'})")
    for p in r.problems[:50]:
        lines.append(f"  problem: {p['path']}: {p['message']}")
    for line in r.drift:
        lines.append(f"  DRIFT: {line}")

    for d in r.devices:
        caught = {
            True: "has seen our latest",
            False: "not yet confirmed our latest (its head predates it)",
            None: "unknown",
        }
        lines.append(
            f"  device {d.device_id}: snapshot {d.snapshot or '-'} "
            f"published {d.published_at or '?'}, {caught[d.seen_our_latest]}"
        )
    if r.devices_error:
        lines.append(f"  other devices: could not read the bucket ({r.devices_error})")
    elif not r.devices_checked:
        lines.append("  other devices: not checked (--offline)")
    elif not r.devices:
        lines.append("  other devices: none")
    return "\n".join(lines)
