"""The daemon's config.toml as Structs, each root's effective settings, and where the config
file and control socket live by default (pure: text, environment, platform and home are
passed in)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import msgspec

from dropbeard.core.configtable import ConfigTable, described, load_table, shown

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
MAX_CONCURRENCY = 256
#: Requests in flight by default (`--concurrency`, `concurrency`): many small files keep
#: this many busy; large ones are held back by the bytes they need in memory.
DEFAULT_CONCURRENCY = 16
#: gc (then the repair of this device's head) runs this often per root (SPEC 7).
DEFAULT_GC_INTERVAL = 86_400.0


class RootEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One `[[roots]]` of the daemon config; None means "use the daemon-wide value"."""

    path: str
    poll_interval: float | None = None
    interval: float | None = None
    debounce: float | None = None
    max_delay: float | None = None
    concurrency: int | None = None
    gc_interval: float | None = None


class RootSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the daemon runs one root with: its entry with the overrides applied."""

    path: str
    poll_interval: float
    interval: float
    debounce: float
    max_delay: float
    concurrency: int
    gc_interval: float = DEFAULT_GC_INTERVAL  # 0: never


class DaemonConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The daemon's config.toml. Durations are seconds; `socket` "" means the default path."""

    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"
    poll_interval: float = 30.0
    interval: float = 300.0
    debounce: float = 1.0
    max_delay: float = 10.0
    concurrency: int = DEFAULT_CONCURRENCY
    #: bytes per second for every transfer of the daemon together; None: no limit
    bandwidth_limit: int | None = None
    gc_interval: float = DEFAULT_GC_INTERVAL
    socket: str = ""
    roots: tuple[RootEntry, ...] = ()


_SETTINGS_KEYS = (
    "poll_interval", "interval", "debounce", "max_delay", "concurrency", "gc_interval",
)  # fmt: skip
_DAEMON_KEYS = ("log_format", "log_level", *_SETTINGS_KEYS, "bandwidth_limit", "socket", "roots")
_ROOT_ENTRY_KEYS = ("path", *_SETTINGS_KEYS)


def parse_daemon_config(text: str, source: str, *, home: str) -> DaemonConfig:
    """The DaemonConfig in config.toml `text`; `~` in paths expands to `home`."""
    top = load_table(text, source, _DAEMON_KEYS)
    socket = top.string("socket") or ""
    if socket:
        socket = _absolute_path(top, "socket", socket, home)
    return msgspec.structs.replace(
        DaemonConfig(),
        log_format=top.choice("log_format", LOG_FORMATS, "auto"),
        log_level=top.choice("log_level", LOG_LEVELS, "info"),
        bandwidth_limit=top.bandwidth("bandwidth_limit"),
        socket=socket,
        roots=_root_entries(top, home),
        **_settings(top),
    )


def _settings(table: ConfigTable) -> dict[str, float | int]:
    found: dict[str, float | int | None] = {
        "poll_interval": table.duration("poll_interval", zero_ok=False),
        "interval": table.duration("interval", zero_ok=False),
        "debounce": table.duration("debounce", zero_ok=True),
        "max_delay": table.duration("max_delay", zero_ok=True),
        "concurrency": table.count("concurrency", 1, MAX_CONCURRENCY),
        "gc_interval": table.duration("gc_interval", zero_ok=True),
    }
    return {key: value for key, value in found.items() if value is not None}


def _root_entries(top: ConfigTable, home: str) -> tuple[RootEntry, ...]:
    value = top.data.get("roots", [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise top.error("roots", f"expected [[roots]] tables, got {described(value)}")
    entries: list[RootEntry] = []
    for index, item in enumerate(value):
        table = ConfigTable(
            item,
            source=top.source,
            where=f"roots[{index}].",
            header=f"[[roots]][{index}]",
            keys=_ROOT_ENTRY_KEYS,
        )
        path = table.string("path", required=True)
        assert path is not None
        path = _absolute_path(table, "path", path, home)
        _refuse_overlap(table, path, entries)
        entries.append(msgspec.structs.replace(RootEntry(path=path), **_settings(table)))
    return tuple(entries)


def _absolute_path(table: ConfigTable, key: str, path: str, home: str) -> str:
    """`path` with `~` expanded and trailing slashes dropped; it must be absolute."""
    if path == "~" or path.startswith("~/"):
        path = home.rstrip("/") + path[1:]
    elif path.startswith("~"):
        raise table.error(key, f"{shown(path)}: only '~' (your own home) can be expanded")
    if "\0" in path:
        raise table.error(key, "contains a NUL character")
    if not path.startswith("/"):
        raise table.error(key, f"{shown(path)} is not absolute: write the full path or ~/...")
    return path.rstrip("/") or "/"


def _refuse_overlap(table: ConfigTable, path: str, earlier: Sequence[RootEntry]) -> None:
    """Two roots must not share files: no duplicates, no root inside another."""
    mine = posixpath.normpath(path)
    for index, other in enumerate(earlier):
        theirs = posixpath.normpath(other.path)
        if mine == theirs:
            raise table.error("path", f"{shown(path)} is already roots[{index}]")
        if nested(mine, theirs):
            raise table.error("path", f"{shown(path)} overlaps roots[{index}] {shown(other.path)}")


def nested(a: str, b: str) -> bool:
    """True if one of two different normalised absolute paths lies inside the other."""
    inner, outer = sorted((a, b), key=len, reverse=True)
    return outer == "/" or inner.startswith(outer + "/")


def effective(root: RootEntry, cfg: DaemonConfig) -> RootSettings:
    """`root`'s settings: its own overrides, else the daemon-wide values."""
    return RootSettings(
        path=root.path,
        poll_interval=cfg.poll_interval if root.poll_interval is None else root.poll_interval,
        interval=cfg.interval if root.interval is None else root.interval,
        debounce=cfg.debounce if root.debounce is None else root.debounce,
        max_delay=cfg.max_delay if root.max_delay is None else root.max_delay,
        concurrency=cfg.concurrency if root.concurrency is None else root.concurrency,
        gc_interval=cfg.gc_interval if root.gc_interval is None else root.gc_interval,
    )


# --- default locations -----------------------------------------------------------------------


def _app_dir(env: Mapping[str, str], platform: str, home: str) -> str:
    if platform == "darwin":
        return posixpath.join(home, "Library", "Application Support", "dropbeard")
    base = env.get("XDG_CONFIG_HOME", "")
    if not base.startswith("/"):  # XDG: relative or empty values are ignored
        base = posixpath.join(home, ".config")
    return posixpath.join(base, "dropbeard")


def default_config_path(env: Mapping[str, str], platform: str, home: str) -> str:
    """Where the daemon config lives when no `-c` is given (`platform` as `sys.platform`)."""
    return posixpath.join(_app_dir(env, platform, home), "config.toml")


def default_socket_path(env: Mapping[str, str], platform: str, home: str, uid: int) -> str:
    """Where the control socket lives when neither the config nor `--socket` says."""
    if platform == "darwin":
        return posixpath.join(_app_dir(env, platform, home), "control.sock")
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        return posixpath.join(runtime, "dropbeard", "control.sock")
    return f"/tmp/dropbeard-{uid}/control.sock"
