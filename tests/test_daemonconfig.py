"""The daemon config and default locations."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from dropbeard.core.daemonconfig import (
    DaemonConfig,
    RootEntry,
    RootSettings,
    default_config_path,
    default_socket_path,
    effective,
    parse_daemon_config,
)
from dropbeard.core.errors import UsageError

HOME = "/home/u"
SRC = "/home/u/.config/dropbeard/config.toml"
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
        concurrency=16,
        bandwidth_limit=None,
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
        bandwidth_limit = "10M"
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
        bandwidth_limit=10 * 1024 * 1024,
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
        ('bandwidth_limit = "fast"', "bandwidth_limit: invalid bandwidth limit 'fast'"),
        ('bandwidth_limit = "100B"', "bandwidth_limit: invalid bandwidth limit '100B'"),
        ("bandwidth_limit = true", "bandwidth_limit: expected a rate like '10M', got true"),
        ('[[roots]]\npath="/a"\nbandwidth_limit="1M"', "unknown key 'bandwidth_limit' in"),
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


def test_gc_runs_daily_by_default_and_a_root_may_change_or_disable_it() -> None:
    assert daemon("").gc_interval == 86_400.0
    cfg = daemon(
        'gc_interval = "12h"\n[[roots]]\npath = "/a"\n[[roots]]\npath = "/b"\ngc_interval = 0\n'
    )
    first, second = (effective(root, cfg) for root in cfg.roots)
    assert (first.gc_interval, second.gc_interval) == (43_200.0, 0.0)
    assert "gc_interval" in daemon_error('gc_interval = "soon"')
