"""root.toml, the daemon config, remote URLs and default locations."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.config import (
    DaemonConfig,
    RemoteConfig,
    RemoteURL,
    RootConfig,
    RootEntry,
    RootSettings,
    default_config_path,
    default_socket_path,
    effective,
    parse_daemon_config,
    parse_remote_url,
    parse_root_config,
    render_root_config,
)
from dropbeard.core.errors import UsageError

HOME = "/home/u"
SRC = "/home/u/.config/dropbeard/config.toml"
ROOT_SRC = "/data/.dropbear/root.toml"
EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def daemon(text: str) -> DaemonConfig:
    return parse_daemon_config(text, SRC, home=HOME)


def daemon_error(text: str) -> str:
    with pytest.raises(UsageError) as info:
        daemon(text)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config {SRC}: ")
    return message.removeprefix(f"config {SRC}: ")


def root_error(text: str) -> str:
    with pytest.raises(UsageError) as info:
        parse_root_config(text, ROOT_SRC)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)
    return str(info.value).removeprefix(f"config {ROOT_SRC}: ")


# --- daemon config ---------------------------------------------------------------------


def test_empty_daemon_config_is_all_defaults() -> None:
    cfg = daemon("")
    assert cfg == DaemonConfig(
        log_format="auto",
        log_level="info",
        poll_interval=30.0,
        interval=300.0,
        debounce=1.0,
        max_delay=10.0,
        concurrency=8,
        socket="",
        roots=(),
    )


def test_every_daemon_key() -> None:
    cfg = daemon(
        """
        log_format = "json"
        log_level = "debug"
        poll_interval = "1m"
        interval = "2h"
        debounce = "250ms"
        max_delay = 20
        concurrency = 64
        socket = "~/run/db.sock"

        [[roots]]
        path = "/srv/a"

        [[roots]]
        path = "~/b/"
        poll_interval = "5s"
        interval = 60
        debounce = 0.5
        max_delay = "1m30s"
        concurrency = 2
        """
    )
    assert cfg == DaemonConfig(
        log_format="json",
        log_level="debug",
        poll_interval=60.0,
        interval=7200.0,
        debounce=0.25,
        max_delay=20.0,
        concurrency=64,
        socket="/home/u/run/db.sock",
        roots=(
            RootEntry(path="/srv/a"),
            RootEntry(
                path="/home/u/b",
                poll_interval=5.0,
                interval=60.0,
                debounce=0.5,
                max_delay=90.0,
                concurrency=2,
            ),
        ),
    )


def test_per_root_overrides_apply_only_to_that_root() -> None:
    cfg = daemon(
        """
        poll_interval = "1m"
        concurrency = 4
        [[roots]]
        path = "/a"
        [[roots]]
        path = "/b"
        poll_interval = "10s"
        debounce = 0
        """
    )
    first, second = (effective(root, cfg) for root in cfg.roots)
    assert first == RootSettings(
        path="/a", poll_interval=60.0, interval=300.0, debounce=1.0, max_delay=10.0, concurrency=4
    )
    assert second == RootSettings(
        path="/b", poll_interval=10.0, interval=300.0, debounce=0.0, max_delay=10.0, concurrency=4
    )


def test_tilde_expands_to_the_given_home() -> None:
    cfg = daemon('[[roots]]\npath = "~"\n[[roots]]\npath = "/x/~y"\n')
    assert [r.path for r in cfg.roots] == ["/home/u", "/x/~y"]
    assert parse_daemon_config('[[roots]]\npath = "~/S"', SRC, home="/Users/me/").roots == (
        RootEntry(path="/Users/me/S"),
    )


def test_unknown_key_in_root_suggests_the_right_one() -> None:
    message = daemon_error('[[roots]]\npath = "/a"\npol_interval = "5s"\n')
    assert message == "unknown key 'pol_interval' in [[roots]][0]; did you mean 'poll_interval'?"


def test_unknown_top_level_key() -> None:
    assert daemon_error('log_levle = "info"') == (
        "unknown key 'log_levle' in top level; did you mean 'log_level'?"
    )
    assert daemon_error("frobnicate = 1") == "unknown key 'frobnicate' in top level"


def test_bad_duration_names_the_root_and_key() -> None:
    message = daemon_error('[[roots]]\npath = "/a"\n[[roots]]\npath = "/b"\npoll_interval = "5x"')
    assert message == (
        "roots[1].poll_interval: invalid duration '5x': use e.g. 500ms, 30s, 5m, 2h, 7d"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('debounce = "-1s"', "debounce: invalid duration '-1s'"),
        ("max_delay = -3", "max_delay: invalid duration '-3'"),
        ("interval = inf", "interval: invalid duration 'inf'"),
        ("poll_interval = 0", "poll_interval: must be more than 0s"),
        ('interval = "0s"', "interval: must be more than 0s"),
        ("debounce = true", "debounce: expected a duration like '30s', got true (a boolean)"),
        ("interval = [1]", "interval: expected a duration like '30s', got an array"),
    ],
)
def test_bad_durations(text: str, expected: str) -> None:
    assert daemon_error(text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("concurrency = 0", "concurrency: expected a whole number 1-256, got 0 (a number)"),
        ("concurrency = 257", "concurrency: expected a whole number 1-256, got 257 (a number)"),
        ("concurrency = 2.5", "concurrency: expected a whole number 1-256, got 2.5 (a number)"),
        ('concurrency = "8"', "concurrency: expected a whole number 1-256, got '8' (a string)"),
        ("concurrency = true", "concurrency: expected a whole number 1-256, got true (a boolean)"),
        ("log_level = 3", "log_level: expected a string, got 3 (a number)"),
        (
            'log_level = "verbose"',
            "log_level: must be one of debug, info, warning, error, got 'verbose'",
        ),
        ('log_format = "xml"', "log_format: must be one of auto, json, console, got 'xml'"),
        ("socket = 1979-05-27", "socket: expected a string, got 1979-05-27 (a date/time)"),
        ('socket = "run/db.sock"', "socket: 'run/db.sock' is not absolute"),
        ('[roots]\npath = "/a"', "roots: expected [[roots]] tables, got a table"),
        ('roots = ["/a"]', "roots: expected [[roots]] tables, got an array"),
        ("[[roots]]\ninterval = 5", "roots[0].path: missing (it is required)"),
        ("[[roots]]\npath = 5", "roots[0].path: expected a string, got 5 (a number)"),
        ('[[roots]]\npath = "~bob/x"', "roots[0].path: '~bob/x': only '~' (your own home)"),
        ("[[roots]]\nconcurrency = 0\npath='/a'", "roots[0].concurrency: expected a whole"),
        ("log_level = ", "not valid TOML: "),
    ],
)
def test_bad_values(text: str, expected: str) -> None:
    assert daemon_error(text).startswith(expected)


@pytest.mark.parametrize("path", ["Sync", "./Sync", "", "../x"])
def test_relative_root_path_is_rejected(path: str) -> None:
    message = daemon_error(f'[[roots]]\npath = "{path}"')
    assert message.startswith(f"roots[0].path: '{path}' is not absolute")


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("/a", "/a/", "roots[1].path: '/a' is already roots[0]"),
        ("/a", "/a/b", "roots[1].path: '/a/b' overlaps roots[0] '/a'"),
        ("/a/b", "/a", "roots[1].path: '/a' overlaps roots[0] '/a/b'"),
        ("/", "/x", "roots[1].path: '/x' overlaps roots[0] '/'"),
        ("~/S", "/home/u/S", "roots[1].path: '/home/u/S' is already roots[0]"),
    ],
)
def test_roots_must_not_overlap(first: str, second: str, expected: str) -> None:
    message = daemon_error(f'[[roots]]\npath = "{first}"\n[[roots]]\npath = "{second}"')
    assert message == expected


def test_sibling_roots_with_a_common_name_prefix_are_fine() -> None:
    cfg = daemon('[[roots]]\npath = "/a/b"\n[[roots]]\npath = "/a/bc"')
    assert [r.path for r in cfg.roots] == ["/a/b", "/a/bc"]


def test_example_file_parses_to_the_documented_defaults() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    cfg = parse_daemon_config(text, str(EXAMPLE), home=HOME)
    assert cfg == DaemonConfig(roots=(RootEntry(path="/home/u/Sync"),))
    # Every daemon key is written out (so documented), and every per-root key is mentioned.
    written = set(tomllib.loads(text))
    assert written == set(DaemonConfig.__struct_fields__)
    for key in RootEntry.__struct_fields__:
        assert f"# {key} = " in text or f"\n{key} = " in text


def test_example_file_with_comments_enabled_still_parses() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("# [[roots]]")
    enabled = lines[:start] + [line.removeprefix("# ") for line in lines[start:]]
    cfg = parse_daemon_config("\n".join(enabled), str(EXAMPLE), home=HOME)
    assert cfg.roots[1].path == "/srv/photos"
    assert cfg.roots[1].concurrency == 32


# --- root.toml -------------------------------------------------------------------------

MINIMAL_ROOT = """
root_id = "photos"
device_id = "laptop"
[remote]
url = "s3://my-bucket/dropbeard"
"""


def test_root_config_defaults() -> None:
    cfg = parse_root_config(MINIMAL_ROOT, ROOT_SRC)
    assert cfg == RootConfig(
        root_id="photos",
        device_id="laptop",
        mode="bidirectional",
        remote=RemoteConfig(url="s3://my-bucket/dropbeard", addressing_style="auto"),
    )


def test_root_config_every_key() -> None:
    cfg = parse_root_config(
        """
        root_id = "0.photos_2-x"
        device_id = "old-phone"
        mode = "archive-only"
        [remote]
        url = "s3://b12"
        endpoint_url = "http://127.0.0.1:8333"
        region = "eu-west-1"
        profile = "home"
        addressing_style = "path"
        """,
        ROOT_SRC,
    )
    assert cfg == RootConfig(
        root_id="0.photos_2-x",
        device_id="old-phone",
        mode="archive-only",
        remote=RemoteConfig(
            url="s3://b12",
            endpoint_url="http://127.0.0.1:8333",
            region="eu-west-1",
            profile="home",
            addressing_style="path",
        ),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('device_id = "a"\n[remote]\nurl="/x"', "root_id: missing (it is required)"),
        ('root_id = "a"\ndevice_id = "b"', "missing [remote] table (it is required)"),
        ('root_id = "a"\ndevice_id = "b"\nremote = "s3://x"', "remote: expected a [remote] table"),
        ('root_id = "A"\ndevice_id = "b"\n[remote]\nurl="/x"', "root_id: 'A' is not a valid id"),
        ('root_id = "-a"\ndevice_id = "b"\n[remote]\nurl="/x"', "root_id: '-a' is not a valid"),
        (f'root_id = "{"a" * 65}"\ndevice_id = "b"\n[remote]\nurl="/x"', "root_id: 'aaaa"),
        ('root_id = "a"\ndevice_id = "b c"\n[remote]\nurl="/x"', "device_id: 'b c' is not a"),
        ('root_id = "a"\ndevice_id = ""\n[remote]\nurl="/x"', "device_id: '' is not a valid id"),
        (
            'root_id = "a"\ndevice_id = "b"\nmode = "both"\n[remote]\nurl="/x"',
            "mode: must be one of bidirectional, upload-only, download-only, archive-only, "
            "got 'both'",
        ),
        ('root_id = "a"\ndevice_id = "b"\n[remote]\nurl="x"', "remote.url: remote path 'x' is"),
        ('root_id = "a"\ndevice_id = "b"\n[remote]\nregion="x"', "remote.url: missing"),
        (
            'root_id = "a"\ndevice_id = "b"\n[remote]\nurl="s3://b12"\nendpoint-url="http://h"',
            "unknown key 'endpoint-url' in [remote]; did you mean 'endpoint_url'?",
        ),
        (
            'root_id = "a"\ndevice_id = "b"\n[remote]\nurl="s3://b12"\nendpoint_url="h:9000"',
            "remote.endpoint_url: expected an http(s):// URL, got 'h:9000'",
        ),
        (
            'root_id = "a"\ndevice_id = "b"\n[remote]\nurl="s3://b12"\naddressing_style="dns"',
            "remote.addressing_style: must be one of auto, path, virtual, got 'dns'",
        ),
        (
            'root_id = "a"\ndevice_id = "b"\n[remote]\nurl="/mnt/nas"\nregion="eu"',
            "remote.region: only applies to s3:// remotes",
        ),
    ],
)
def test_root_config_errors(text: str, expected: str) -> None:
    assert root_error(text).startswith(expected)


def test_id_of_64_characters_is_accepted() -> None:
    cfg = parse_root_config(MINIMAL_ROOT.replace('"photos"', f'"{"p" * 64}"'), ROOT_SRC)
    assert cfg.root_id == "p" * 64


def test_endpoint_url_credentials_are_not_echoed() -> None:
    text = MINIMAL_ROOT + 'endpoint_url = "https://AKIA:s3cr3t@minio.local"\n'
    message = root_error(text)
    assert "s3cr3t" not in message
    assert message == "remote.endpoint_url: must not contain credentials"


def test_secret_in_remote_url_is_never_echoed() -> None:
    text = MINIMAL_ROOT.replace("s3://my-bucket/dropbeard", "s3://AKIAXYZ:s3cr3t@my-bucket")
    message = root_error(text)
    assert "s3cr3t" not in message
    assert "AKIAXYZ" not in message
    assert message.startswith("remote.url: remote url must not contain credentials")


def test_round_trip_full() -> None:
    cfg = RootConfig(
        root_id="photos",
        device_id="laptop",
        mode="download-only",
        remote=RemoteConfig(
            url="s3://my-bucket/a/b",
            endpoint_url="https://s3.example.com",
            region='we"ird\\region',
            profile="prof\tile ünï 🎉 \x01\x7f\n",
            addressing_style="virtual",
        ),
    )
    text = render_root_config(cfg)
    assert parse_root_config(text, ROOT_SRC) == cfg


def test_rendered_minimal_config_omits_unset_keys() -> None:
    cfg = parse_root_config(MINIMAL_ROOT, ROOT_SRC)
    text = render_root_config(cfg)
    assert "region" not in text
    assert "addressing_style" not in text
    assert parse_root_config(text, ROOT_SRC) == cfg


_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30)
_ids = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True)


@settings(max_examples=100)
@given(root_id=_ids, device_id=_ids, directory=_text, profile=_text, region=_text)
def test_round_trip_any_strings(
    root_id: str, device_id: str, directory: str, profile: str, region: str
) -> None:
    local = RootConfig(
        root_id=root_id,
        device_id=device_id,
        remote=RemoteConfig(url="/" + directory.replace("\0", "")),
    )
    assert parse_root_config(render_root_config(local), ROOT_SRC) == local
    s3 = RootConfig(
        root_id=root_id,
        device_id=device_id,
        mode="upload-only",
        remote=RemoteConfig(url="s3://bucket", profile=profile, region=region),
    )
    assert parse_root_config(render_root_config(s3), ROOT_SRC) == s3


# --- remote URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket", RemoteURL(kind="s3", bucket="bucket", prefix="")),
        ("s3://bucket/", RemoteURL(kind="s3", bucket="bucket", prefix="")),
        ("s3://my.bucket-1/a/b/", RemoteURL(kind="s3", bucket="my.bucket-1", prefix="a/b")),
        ("S3://bucket//x", RemoteURL(kind="s3", bucket="bucket", prefix="x")),
        ("/mnt/nas/sync", RemoteURL(kind="local", path="/mnt/nas/sync")),
        ("/mnt/nas/sync/", RemoteURL(kind="local", path="/mnt/nas/sync")),
        ("/", RemoteURL(kind="local", path="/")),
        ("/odd://name", RemoteURL(kind="local", path="/odd://name")),
        ("file:///mnt/usb", RemoteURL(kind="local", path="/mnt/usb")),
        ("file://localhost/mnt/my%20usb", RemoteURL(kind="local", path="/mnt/my usb")),
    ],
)
def test_remote_urls(url: str, expected: RemoteURL) -> None:
    assert parse_remote_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "remote url is empty"),
        ("s3://", "s3 url has no bucket"),
        ("s3:///prefix", "s3 url has no bucket"),
        ("s3://ab", "invalid bucket name 'ab'"),
        ("s3://" + "b" * 64, "invalid bucket name"),
        ("s3://My-Bucket", "invalid bucket name 'My-Bucket'"),
        ("s3://under_score", "invalid bucket name 'under_score'"),
        ("s3://-bucket", "invalid bucket name"),
        ("s3://bucket-", "invalid bucket name"),
        ("s3://a..b", "invalid bucket name 'a..b'"),
        ("s3://192.168.1.1", "invalid bucket name '192.168.1.1'"),
        ("s3://bucket:9000", "invalid bucket name 'bucket:9000'"),
        ("s3://bucket/a/../b", "invalid prefix 'a/../b'"),
        ("s3://bucket/a//b", "invalid prefix 'a//b'"),
        ("s3://bucket?x=1", "s3 url must not have a query"),
        ("gs://bucket", "unsupported remote url scheme 'gs://'"),
        ("https://bucket.s3.amazonaws.com", "unsupported remote url scheme 'https://'"),
        ("relative/dir", "remote path 'relative/dir' is not absolute"),
        ("~/sync", "remote path '~/sync' is not absolute"),
        ("file://nas/share", "file url names host 'nas'"),
        ("file://relative", "file url names host 'relative'"),
        ("/a\0b", "remote path contains a NUL"),
    ],
)
def test_remote_url_rejections(url: str, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_remote_url(url)
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAXYZ:s3cr3t@bucket",
        "s3://AKIAXYZ:s3cr3t@bucket/prefix",
        "s3://s3cr3t@bucket",
        "file://AKIAXYZ:s3cr3t@localhost/x",
    ],
)
def test_credentials_in_url_are_refused_without_echo(url: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_remote_url(url)
    message = str(info.value)
    assert "must not contain credentials" in message
    assert "s3cr3t" not in message
    assert "AKIAXYZ" not in message
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


# --- default locations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({}, "linux", "/home/u/.config/dropbeard/config.toml"),
        ({"XDG_CONFIG_HOME": "/xdg"}, "linux", "/xdg/dropbeard/config.toml"),
        ({"XDG_CONFIG_HOME": ""}, "linux", "/home/u/.config/dropbeard/config.toml"),
        ({"XDG_CONFIG_HOME": "rel"}, "linux", "/home/u/.config/dropbeard/config.toml"),
        ({}, "freebsd14", "/home/u/.config/dropbeard/config.toml"),
        ({}, "darwin", "/home/u/Library/Application Support/dropbeard/config.toml"),
        (
            {"XDG_CONFIG_HOME": "/xdg"},
            "darwin",
            "/home/u/Library/Application Support/dropbeard/config.toml",
        ),
    ],
)
def test_default_config_path(env: dict[str, str], platform: str, expected: str) -> None:
    assert default_config_path(env, platform, HOME) == expected


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, "linux", "/run/user/1000/dropbeard/control.sock"),
        ({}, "linux", "/tmp/dropbeard-1000/control.sock"),
        ({"XDG_RUNTIME_DIR": ""}, "linux", "/tmp/dropbeard-1000/control.sock"),
        ({}, "darwin", "/home/u/Library/Application Support/dropbeard/control.sock"),
        (
            {"XDG_RUNTIME_DIR": "/run/user/1000"},
            "darwin",
            "/home/u/Library/Application Support/dropbeard/control.sock",
        ),
    ],
)
def test_default_socket_path(env: dict[str, str], platform: str, expected: str) -> None:
    assert default_socket_path(env, platform, HOME, 1000) == expected
