"""Configuration as Structs: a root's `.dropbear/root.toml` and the daemon's config.toml (pure).

The caller reads the file and passes its text; every problem is a one-line `UsageError` that
names the file, the key and what is wrong. Also here: the remote URL grammar, and where the
config file and control socket live by default (from the environment, platform and home
passed in — nothing is read from the process).
"""

from __future__ import annotations

import difflib
import posixpath
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import unquote, urlsplit

import msgspec

from dropbeard.core.duration import parse_duration
from dropbeard.core.errors import UsageError
from dropbeard.core.ids import validate_id

Mode = Literal["bidirectional", "upload-only", "download-only", "archive-only"]
AddressingStyle = Literal["auto", "path", "virtual"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

MODES: tuple[Mode, ...] = get_args(Mode)
ADDRESSING_STYLES: tuple[AddressingStyle, ...] = get_args(AddressingStyle)
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
MAX_CONCURRENCY = 256

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+", re.ASCII)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*", re.ASCII)
_URL_HELP = "use s3://bucket[/prefix] or an absolute directory path"


class RemoteURL(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed remote: `bucket` and `prefix` (no leading/trailing slash, may be "") for s3,
    `path` (absolute, no trailing slash) for a local directory."""

    kind: Literal["s3", "local"]
    bucket: str = ""
    prefix: str = ""
    path: str = ""


class RemoteConfig(msgspec.Struct, frozen=True, kw_only=True):
    """`[remote]` of root.toml. `url` is kept as written; it is known to parse."""

    url: str
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    addressing_style: AddressingStyle = "auto"


class RootConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A root's identity and remote, from `.dropbear/root.toml`."""

    root_id: str
    device_id: str
    remote: RemoteConfig
    mode: Mode = "bidirectional"


class RootEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One `[[roots]]` of the daemon config; None means "use the daemon-wide value"."""

    path: str
    poll_interval: float | None = None
    interval: float | None = None
    debounce: float | None = None
    max_delay: float | None = None
    concurrency: int | None = None


class RootSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the daemon runs one root with: its entry with the overrides applied."""

    path: str
    poll_interval: float
    interval: float
    debounce: float
    max_delay: float
    concurrency: int


class DaemonConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The daemon's config.toml. Durations are seconds; `socket` "" means the default path."""

    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"
    poll_interval: float = 30.0
    interval: float = 300.0
    debounce: float = 1.0
    max_delay: float = 10.0
    concurrency: int = 8
    socket: str = ""
    roots: tuple[RootEntry, ...] = ()


_ROOT_TOML_KEYS = ("root_id", "device_id", "mode", "remote")
_REMOTE_KEYS = ("url", "endpoint_url", "region", "profile", "addressing_style")
_SETTINGS_KEYS = ("poll_interval", "interval", "debounce", "max_delay", "concurrency")
_DAEMON_KEYS = ("log_format", "log_level", *_SETTINGS_KEYS, "socket", "roots")
_ROOT_ENTRY_KEYS = ("path", *_SETTINGS_KEYS)
_S = TypeVar("_S", bound=str)


# --- reading TOML tables with good errors ------------------------------------------------


def _shown(value: str) -> str:
    """`value` quoted for a one-line message: shortened, control characters escaped."""
    if len(value) > 60:
        value = value[:57] + "..."
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in value) + "'"


def _described(value: object) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{_shown(value)} (a string)"
    if isinstance(value, int | float):
        return f"{value} (a number)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{value} (a date/time)"


class _Table:
    """One TOML table being read; knows where it is so errors can name the key."""

    def __init__(
        self, data: dict[str, Any], *, source: str, where: str, header: str, keys: Sequence[str]
    ) -> None:
        self.data, self.source, self.where = data, source, where
        for key in data:
            if key not in keys:
                hint = difflib.get_close_matches(key, keys, n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
                raise _error(source, f"unknown key {_shown(key)} in {header}{suggestion}")

    def error(self, key: str, problem: str) -> UsageError:
        return _error(self.source, f"{self.where}{key}: {problem}")

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise _error(self.source, f"{self.where}{key}: missing (it is required)")
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_described(value)}")
        return value

    def choice(self, key: str, choices: tuple[_S, ...], default: _S) -> _S:
        value = self.string(key)
        if value is None:
            return default
        for choice in choices:
            if value == choice:
                return choice
        raise self.error(key, f"must be one of {', '.join(choices)}, got {_shown(value)}")

    def duration(self, key: str, *, zero_ok: bool) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(key, f"expected a duration like '30s', got {_described(value)}")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        if seconds == 0 and not zero_ok:
            raise self.error(key, "must be more than 0s")
        return seconds

    def count(self, key: str, low: int, high: int) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"expected a whole number {low}-{high}, got {_described(value)}")
        return value

    def table(self, key: str, header: str, keys: Sequence[str]) -> _Table:
        value = self.data.get(key)
        if value is None:
            raise _error(self.source, f"missing {header} table (it is required)")
        if not isinstance(value, dict):
            raise self.error(key, f"expected a {header} table, got {_described(value)}")
        return _Table(value, source=self.source, where=f"{key}.", header=header, keys=keys)


def _error(source: str, message: str) -> UsageError:
    return UsageError(f"config {source}: {message}")


def _load(text: str, source: str, keys: Sequence[str]) -> _Table:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _error(source, f"not valid TOML: {exc}") from None
    return _Table(data, source=source, where="", header="top level", keys=keys)


# --- remote URLs ---------------------------------------------------------------------------


def parse_remote_url(url: str) -> RemoteURL:
    """`s3://bucket[/prefix]`, `file:///abs/dir` or `/abs/dir`; ValueError otherwise.

    Messages never repeat a URL that holds credentials."""
    if not url.strip():
        raise ValueError(f"remote url is empty: {_URL_HELP}")
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return _local_url(url)
    scheme = scheme.lower()
    if scheme == "s3":
        return _s3_url(rest)
    if scheme == "file":
        host, _, path = rest.partition("/")
        _refuse_credentials(host)
        if host not in ("", "localhost"):
            raise ValueError(f"file url names host {_shown(host)}: use file:///absolute/path")
        return _local_url("/" + unquote(path))
    raise ValueError(f"unsupported remote url scheme {_shown(scheme + '://')}: {_URL_HELP}")


def _refuse_credentials(netloc: str) -> None:
    if "@" in netloc:
        raise ValueError(
            "remote url must not contain credentials: they come from the AWS credential chain "
            "or the DROPBEAR_S3_* environment variables"
        )


def _s3_url(rest: str) -> RemoteURL:
    bucket, _, prefix = rest.partition("/")
    _refuse_credentials(bucket)
    if "?" in rest or "#" in rest:
        raise ValueError("s3 url must not have a query (?) or fragment (#)")
    if not bucket:
        raise ValueError("s3 url has no bucket: use s3://bucket[/prefix]")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IPV4.fullmatch(bucket):
        raise ValueError(
            f"invalid bucket name {_shown(bucket)}: 3-63 lowercase letters, digits, dots and "
            "hyphens, starting and ending with a letter or digit"
        )
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"invalid prefix {_shown(prefix)}: empty, '.' or '..' parts")
    if not prefix.isprintable():
        raise ValueError(f"invalid prefix {_shown(prefix)}: control characters")
    return RemoteURL(kind="s3", bucket=bucket, prefix=prefix)


def _local_url(path: str) -> RemoteURL:
    if "\0" in path:
        raise ValueError("remote path contains a NUL character")
    if not path.startswith("/"):
        raise ValueError(f"remote path {_shown(path)} is not absolute: {_URL_HELP}")
    return RemoteURL(kind="local", path=path.rstrip("/") or "/")


def _endpoint_url(table: _Table) -> str | None:
    value = table.string("endpoint_url") or None
    if value is None:
        return None
    parts = urlsplit(value)
    if "@" in parts.netloc:
        raise table.error("endpoint_url", "must not contain credentials")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise table.error("endpoint_url", f"expected an http(s):// URL, got {_shown(value)}")
    return value


# --- root.toml ------------------------------------------------------------------------------


def parse_root_config(text: str, source: str) -> RootConfig:
    """The RootConfig in root.toml `text`; `source` (its path) is named in errors."""
    top = _load(text, source, _ROOT_TOML_KEYS)
    root_id = _identifier(top, "root_id")
    device_id = _identifier(top, "device_id")
    mode = top.choice("mode", MODES, "bidirectional")
    return RootConfig(root_id=root_id, device_id=device_id, mode=mode, remote=_remote(top))


def _identifier(table: _Table, key: str) -> str:
    value = table.string(key, required=True)
    assert value is not None
    try:
        return validate_id(value)
    except ValueError as exc:
        raise table.error(key, str(exc)) from None


def _remote(top: _Table) -> RemoteConfig:
    table = top.table("remote", "[remote]", _REMOTE_KEYS)
    url = table.string("url", required=True)
    assert url is not None
    try:
        location = parse_remote_url(url)
    except ValueError as exc:
        raise table.error("url", str(exc)) from None
    remote = RemoteConfig(
        url=url,
        endpoint_url=_endpoint_url(table),
        region=table.string("region") or None,
        profile=table.string("profile") or None,
        addressing_style=table.choice("addressing_style", ADDRESSING_STYLES, "auto"),
    )
    if location.kind == "local":
        s3_only = {
            "endpoint_url": remote.endpoint_url,
            "region": remote.region,
            "profile": remote.profile,
            "addressing_style": None if remote.addressing_style == "auto" else "set",
        }
        for key, value in s3_only.items():
            if value is not None:
                raise table.error(key, "only applies to s3:// remotes")
    return remote


def render_root_config(cfg: RootConfig) -> str:
    """root.toml text for `cfg`; `parse_root_config` of it gives `cfg` back."""
    lines = [
        "# dropbeard root: identity and remote (credentials never go here).",
        f"root_id = {_toml_string(cfg.root_id)}",
        f"device_id = {_toml_string(cfg.device_id)}",
        f"mode = {_toml_string(cfg.mode)}",
        "",
        "[remote]",
        f"url = {_toml_string(cfg.remote.url)}",
    ]
    for key in ("endpoint_url", "region", "profile"):
        value = getattr(cfg.remote, key)
        if value is not None:
            lines.append(f"{key} = {_toml_string(value)}")
    if cfg.remote.addressing_style != "auto":
        lines.append(f"addressing_style = {_toml_string(cfg.remote.addressing_style)}")
    return "\n".join(lines) + "\n"


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_TOML_ESCAPES["\r"] = "\\r"


def _toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out: list[str] = []
    for char in value:
        code = ord(char)
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"cannot write {_shown(value)} to TOML: not valid Unicode")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


# --- daemon config --------------------------------------------------------------------------


def parse_daemon_config(text: str, source: str, *, home: str) -> DaemonConfig:
    """The DaemonConfig in config.toml `text`; `~` in paths expands to `home`."""
    top = _load(text, source, _DAEMON_KEYS)
    socket = top.string("socket") or ""
    if socket:
        socket = _absolute_path(top, "socket", socket, home)
    return msgspec.structs.replace(
        DaemonConfig(),
        log_format=top.choice("log_format", LOG_FORMATS, "auto"),
        log_level=top.choice("log_level", LOG_LEVELS, "info"),
        socket=socket,
        roots=_root_entries(top, home),
        **_settings(top),
    )


def _settings(table: _Table) -> dict[str, float | int]:
    found: dict[str, float | int | None] = {
        "poll_interval": table.duration("poll_interval", zero_ok=False),
        "interval": table.duration("interval", zero_ok=False),
        "debounce": table.duration("debounce", zero_ok=True),
        "max_delay": table.duration("max_delay", zero_ok=True),
        "concurrency": table.count("concurrency", 1, MAX_CONCURRENCY),
    }
    return {key: value for key, value in found.items() if value is not None}


def _root_entries(top: _Table, home: str) -> tuple[RootEntry, ...]:
    value = top.data.get("roots", [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise top.error("roots", f"expected [[roots]] tables, got {_described(value)}")
    entries: list[RootEntry] = []
    for index, item in enumerate(value):
        table = _Table(
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


def _absolute_path(table: _Table, key: str, path: str, home: str) -> str:
    """`path` with `~` expanded and trailing slashes dropped; it must be absolute."""
    if path == "~" or path.startswith("~/"):
        path = home.rstrip("/") + path[1:]
    elif path.startswith("~"):
        raise table.error(key, f"{_shown(path)}: only '~' (your own home) can be expanded")
    if "\0" in path:
        raise table.error(key, "contains a NUL character")
    if not path.startswith("/"):
        raise table.error(key, f"{_shown(path)} is not absolute: write the full path or ~/...")
    return path.rstrip("/") or "/"


def _refuse_overlap(table: _Table, path: str, earlier: Sequence[RootEntry]) -> None:
    """Two roots must not share files: no duplicates, no root inside another."""
    mine = posixpath.normpath(path)
    for index, other in enumerate(earlier):
        theirs = posixpath.normpath(other.path)
        if mine == theirs:
            raise table.error("path", f"{_shown(path)} is already roots[{index}]")
        inner, outer = sorted((mine, theirs), key=len, reverse=True)
        if outer == "/" or inner.startswith(outer + "/"):
            raise table.error(
                "path", f"{_shown(path)} overlaps roots[{index}] {_shown(other.path)}"
            )


def effective(root: RootEntry, cfg: DaemonConfig) -> RootSettings:
    """`root`'s settings: its own overrides, else the daemon-wide values."""
    return RootSettings(
        path=root.path,
        poll_interval=cfg.poll_interval if root.poll_interval is None else root.poll_interval,
        interval=cfg.interval if root.interval is None else root.interval,
        debounce=cfg.debounce if root.debounce is None else root.debounce,
        max_delay=cfg.max_delay if root.max_delay is None else root.max_delay,
        concurrency=cfg.concurrency if root.concurrency is None else root.concurrency,
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
