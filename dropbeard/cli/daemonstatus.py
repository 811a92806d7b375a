"""`dropbeard status` answered by the running daemon: ask it over the control socket, print
its view of the roots (or JSON), or say why the root must be read directly (IO: socket,
stdout)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from dropbeard.cli.terminal import human_bytes
from dropbeard.core.duration import format_duration
from dropbeard.daemon.control import NoDaemon, ask
from dropbeard.sync.report import StatusReport, render
from dropbeard.sync.root import find_root


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
    return 0 if all(r["report"]["online"] for r in roots) else 3


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
            lines.append(f"  last pass: {last['ended_at']} ({last['reason']}) {what}")
        if root.get("next_pass_at"):
            lines.append(f"  next pass: {root['next_pass_at']} ({root['next_pass_reason']})")
        if root.get("pending_count"):
            shown = ", ".join(root["pending_paths"][:5])
            more = "…" if root["pending_count"] > 5 else ""
            lines.append(f"  pending: {root['pending_count']} paths ({shown}{more})")
        for t in root.get("transfers", []):
            total = "?" if t["bytes_total"] is None else human_bytes(t["bytes_total"])
            lines.append(
                f"  {t['direction']}: {t['key']} {human_bytes(t['bytes_done'])}/{total} "
                f"at {human_bytes(t['rate_bytes_per_s'])}/s"
            )
    return "\n".join(lines)
