"""Where the daemon's settings come from (IO: reads the config file): `-c CONFIG` or the
per-user default, overridden by the command line (roots, `--socket`, `--interval`,
`--concurrency`, `--bwlimit`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import msgspec

from dropbeard.core.daemonconfig import (
    DaemonConfig,
    RootEntry,
    RootSettings,
    default_config_path,
    default_socket_path,
    effective,
    nested,
    parse_daemon_config,
)
from dropbeard.core.errors import UsageError


def _home() -> str:
    return os.path.expanduser("~")


def default_socket() -> str:
    return default_socket_path(os.environ, sys.platform, _home(), os.getuid())


def load_config(path: str | None) -> tuple[DaemonConfig | None, str]:
    """The config at `path` (`-c`, which must exist) or at the default location (None when
    it does not exist), and the path it was looked for at."""
    where = path or default_config_path(os.environ, sys.platform, _home())
    try:
        text = Path(where).read_text(encoding="utf-8")
    except FileNotFoundError:
        if path is not None:
            raise UsageError(f"config {where}: no such file") from None
        return None, where
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"config {where}: cannot read it: {exc}") from None
    return parse_daemon_config(text, where, home=_home()), where


class DaemonOptions(msgspec.Struct):
    """The command line: `-c`, positional roots, `--socket`, `--interval`, `--concurrency`,
    `--bwlimit` (0: no limit, whatever the config says), `--verbose`. None: not given."""

    config_path: str | None = None
    roots: list[str] = msgspec.field(default_factory=list)
    socket: str | None = None
    interval: float | None = None
    concurrency: int | None = None
    bandwidth_limit: int | None = None
    verbose: bool = False


class DaemonSettings(msgspec.Struct):
    """What the daemon runs: the config file (or defaults) with the command line applied,
    each root's effective settings, and the control socket."""

    config: DaemonConfig
    config_path: str
    roots: list[RootSettings]
    socket: str
    private_socket_dir: bool


def load_settings(opts: DaemonOptions) -> DaemonSettings:
    """Config file + command line -> what to run; UsageError (exit 2) when there is nothing."""
    cfg, where = load_config(opts.config_path)
    if cfg is None:
        if not opts.roots:
            raise UsageError(
                f"no config at {where} and no ROOT given: run `dropbeard daemon ~/Sync` or "
                "create the config (see config.example.toml)"
            )
        cfg = DaemonConfig()
    if opts.roots:
        cfg = msgspec.structs.replace(cfg, roots=_cli_roots(opts.roots))
    if opts.interval is not None:
        entries = tuple(msgspec.structs.replace(e, interval=None) for e in cfg.roots)
        cfg = msgspec.structs.replace(cfg, interval=opts.interval, roots=entries)
    if opts.concurrency is not None:
        entries = tuple(msgspec.structs.replace(e, concurrency=None) for e in cfg.roots)
        cfg = msgspec.structs.replace(cfg, concurrency=opts.concurrency, roots=entries)
    if opts.bandwidth_limit is not None:
        cfg = msgspec.structs.replace(cfg, bandwidth_limit=opts.bandwidth_limit or None)
    if not cfg.roots:
        raise UsageError(f"config {where}: no [[roots]] to sync; add one or name ROOT")
    socket = opts.socket or cfg.socket
    return DaemonSettings(
        config=cfg,
        config_path=where,
        roots=[effective(entry, cfg) for entry in cfg.roots],
        socket=os.path.abspath(os.path.expanduser(socket)) if socket else default_socket(),
        private_socket_dir=not socket,
    )


def _cli_roots(paths: list[str]) -> tuple[RootEntry, ...]:
    found: list[str] = []
    for raw in paths:
        path = os.path.normpath(os.path.abspath(os.path.expanduser(raw)))
        for other in found:
            if path == other:
                raise UsageError(f"root {raw} is given twice")
            if nested(path, other):
                raise UsageError(f"roots {other} and {path} overlap: one is inside the other")
        found.append(path)
    return tuple(RootEntry(path=p) for p in found)
