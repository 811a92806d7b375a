"""The daemon's structured logs: structlog, one event per line — JSON when stderr is not
a terminal, one readable line on a terminal (coloured unless NO_COLOR is set) — (IO:
writes to the given stream).

Events carry `event` (e.g. `tick_end`), `level`, `timestamp` (UTC, ISO 8601) and their own
fields. Nothing secret is ever passed to a logger: remotes are shown as their URL, which
never holds credentials (`config.parse_remote_url` refuses them).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, TextIO

import structlog

from dropbeard.core.daemonconfig import LogFormat, LogLevel
from dropbeard.daemon.console import console_line

_LEVELS: dict[LogLevel, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":"))


def configure_logging(fmt: LogFormat, level: LogLevel, stream: TextIO | None = None) -> None:
    """Route every structlog logger to `stream` (stderr by default) at `level` and above."""
    out = sys.stderr if stream is None else stream
    as_json = fmt == "json" or (fmt == "auto" and not _isatty(out))
    colors = _isatty(out) and not os.environ.get("NO_COLOR")
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if as_json
        else _ConsoleRenderer(colors=colors)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks
            if as_json
            else structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


class _ConsoleRenderer:
    """One readable line per event (`dropbeard.daemon.console`); a traceback, if any,
    below it."""

    def __init__(self, *, colors: bool) -> None:
        self._colors = colors

    def __call__(self, logger: Any, name: str, event: dict[str, Any]) -> str:
        trace = event.pop("exception", None)
        line = console_line(event, colors=self._colors)
        return line if not trace else f"{line}\n{trace}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def get_logger() -> Any:
    """The daemon's logger (a structlog BoundLogger)."""
    return structlog.get_logger("dropbeard")
