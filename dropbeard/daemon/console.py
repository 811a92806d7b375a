"""The daemon's log on a terminal: one short readable line per event — the time, the
root, what happened — instead of a rendered dict (pure: formats an event's fields)."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from dropbeard.core.summary import Summary
from dropbeard.core.units import human_bytes

_PATH_EVENTS = ("uploaded", "downloaded", "deleted", "conflict", "problem")
_COLORS = {"warning": "\033[33m", "error": "\033[31m", "critical": "\033[31m"}
_DIM, _RESET = "\033[2m", "\033[0m"
_MAX_VALUE = 120


def console_line(event: dict[str, Any], *, colors: bool) -> str:
    """`HH:MM:SS [root] what happened` for one structlog event dict (consumed)."""
    stamp = str(event.pop("timestamp", ""))[11:19]
    level = str(event.pop("level", "info"))
    name = str(event.pop("event", ""))
    root = event.pop("root", None)
    text = _describe(name, event)
    where = f"{root}: " if root and name != "tick_end" else ""
    line = f"{stamp} {where}{text}"
    if level not in ("info", "debug"):
        line = f"{stamp} {level.upper()} {where}{text}"
    if not colors:
        return line
    color = _COLORS.get(level, "")
    return f"{_DIM}{stamp}{_RESET} {color}{line[len(stamp) + 1 :]}{_RESET if color else ''}"


def _describe(name: str, fields: dict[str, Any]) -> str:
    if name == "tick_end" and isinstance(fields.get("summary"), dict):
        summary = msgspec.convert(fields.pop("summary"), Summary)
        fields.pop("scope", None)
        reason = fields.pop("reason", None)
        return summary.describe() + (f" ({reason})" if reason else "") + _rest(fields)
    if name in _PATH_EVENTS and "path" in fields:
        path = fields.pop("path")
        size = fields.pop("bytes", 0)
        detail = fields.pop("detail", None) or fields.pop("message", None)
        where = fields.pop("where", None)
        text = f"{name} {path}"
        if size:
            text += f" ({human_bytes(size)})"
        if where:
            text += f" ({where})"
        if detail:
            text += f": {detail}"
        return text + _rest(fields)
    return name + _rest(fields)


def _rest(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(shown) > _MAX_VALUE:
            shown = shown[: _MAX_VALUE - 1] + "…"
        parts.append(f"{key}={shown}")
    return (" " + " ".join(parts)) if parts else ""
