"""A root's `.dropbear/root.toml` as Structs: its identity, mode and `[remote]`, with the
remote URL grammar (pure: the caller reads the file and passes its text).

Every problem is a one-line `UsageError` that names the file, the key and what is wrong.
The daemon's config.toml is `dropbeard.core.daemonconfig`.
"""

from __future__ import annotations

import re
from typing import Literal, get_args
from urllib.parse import unquote, urlsplit

import msgspec

from dropbeard.core.configtable import ConfigTable, load_table, shown
from dropbeard.core.ids import validate_id

Mode = Literal["bidirectional", "upload-only", "download-only", "archive-only"]
AddressingStyle = Literal["auto", "path", "virtual"]

MODES: tuple[Mode, ...] = get_args(Mode)
ADDRESSING_STYLES: tuple[AddressingStyle, ...] = get_args(AddressingStyle)

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


_ROOT_TOML_KEYS = ("root_id", "device_id", "mode", "remote")
_REMOTE_KEYS = ("url", "endpoint_url", "region", "profile", "addressing_style")


# --- remote URLs ---------------------------------------------------------------------------


def parse_remote_url(url: str) -> RemoteURL:
    """`s3://bucket[/prefix]`, `file:///abs/dir` or `/abs/dir`; ValueError otherwise.

    Messages never repeat a URL that holds credentials."""
    if not url.strip():
        raise ValueError(f"remote url is empty: {_URL_HELP}")
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        _refuse_mistyped_scheme(url)
        return _local_url(url)
    scheme = scheme.lower()
    if scheme == "s3":
        return _s3_url(rest)
    if scheme == "file":
        host, _, path = rest.partition("/")
        _refuse_credentials(host)
        if host not in ("", "localhost"):
            raise ValueError(f"file url names host {shown(host)}: use file:///absolute/path")
        return _local_url("/" + unquote(path))
    if scheme in ("http", "https"):
        raise ValueError(
            f"{shown(scheme + '://')} is a server's address, not a remote: use "
            "s3://BUCKET[/PREFIX] and give the server with --endpoint-url"
        )
    raise ValueError(f"unsupported remote url scheme {shown(scheme + '://')}: {_URL_HELP}")


def looks_like_url(text: str) -> bool:
    """True if `text` starts like a URL of a scheme dropbeard knows (`s3:`, `file:`,
    `http:`, `https:`), even mistyped (`s3:/bucket`): never a relative directory path."""
    scheme, sep, _ = text.partition(":")
    return bool(sep) and scheme.lower() in _KNOWN_SCHEMES


_KNOWN_SCHEMES = ("s3", "file", "http", "https")


def _refuse_mistyped_scheme(url: str) -> None:
    """`s3:/bucket/x`, `s3:bucket` and the like: a typo for a URL, never a local path."""
    if looks_like_url(url):
        scheme, _, rest = url.partition(":")
        scheme = scheme.lower()
        slashes = "///" if scheme == "file" else "//"  # file URLs hold an absolute path
        suggestion = f"{scheme}:{slashes}{rest.lstrip('/')}"
        raise ValueError(f"{shown(url)} is not a valid url: did you mean {shown(suggestion)}?")


def check_endpoint_url(value: str) -> str:
    """`value` if it is an http(s) URL with a host (and no credentials), else ValueError
    saying what to write."""
    parts = urlsplit(value)
    if "@" in parts.netloc:
        raise ValueError("must not contain credentials")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        if "://" not in value:
            raise ValueError(
                f"{shown(value)} has no scheme: add http:// or https:// "
                f"(e.g. http://{value.lstrip('/')})"
            )
        raise ValueError(f"expected an http:// or https:// URL, got {shown(value)}")
    return value


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
            f"invalid bucket name {shown(bucket)}: 3-63 lowercase letters, digits, dots and "
            "hyphens, starting and ending with a letter or digit"
        )
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"invalid prefix {shown(prefix)}: empty, '.' or '..' parts")
    if not prefix.isprintable():
        raise ValueError(f"invalid prefix {shown(prefix)}: control characters")
    return RemoteURL(kind="s3", bucket=bucket, prefix=prefix)


def _local_url(path: str) -> RemoteURL:
    if "\0" in path:
        raise ValueError("remote path contains a NUL character")
    if not path.startswith("/"):
        raise ValueError(f"remote path {shown(path)} is not absolute: {_URL_HELP}")
    return RemoteURL(kind="local", path=path.rstrip("/") or "/")


def _endpoint_url(table: ConfigTable) -> str | None:
    value = table.string("endpoint_url") or None
    if value is None:
        return None
    try:
        return check_endpoint_url(value)
    except ValueError as exc:
        raise table.error("endpoint_url", str(exc)) from None


# --- root.toml ------------------------------------------------------------------------------


def parse_root_config(text: str, source: str) -> RootConfig:
    """The RootConfig in root.toml `text`; `source` (its path) is named in errors."""
    top = load_table(text, source, _ROOT_TOML_KEYS)
    root_id = _identifier(top, "root_id")
    device_id = _identifier(top, "device_id")
    mode = top.choice("mode", MODES, "bidirectional")
    return RootConfig(root_id=root_id, device_id=device_id, mode=mode, remote=_remote(top))


def _identifier(table: ConfigTable, key: str) -> str:
    value = table.string(key, required=True)
    assert value is not None
    try:
        return validate_id(value)
    except ValueError as exc:
        raise table.error(key, str(exc)) from None


def _remote(top: ConfigTable) -> RemoteConfig:
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
            raise ValueError(f"cannot write {shown(value)} to TOML: not valid Unicode")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
