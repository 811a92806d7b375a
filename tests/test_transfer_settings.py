"""How many requests fly and how fast bytes go, as a person sets them: `--concurrency` and
`--bwlimit` on `sync` and `daemon`, and the daemon config's `concurrency` and
`bandwidth_limit`, the command line winning."""

from __future__ import annotations

import io
import time
from functools import partial
from pathlib import Path

import anyio
import pytest

from dropbeard.cli.main import build_parser
from dropbeard.core.daemonconfig import DEFAULT_CONCURRENCY
from dropbeard.core.errors import UsageError
from dropbeard.daemon.service import Daemon
from dropbeard.daemon.settings import DaemonOptions, load_settings
from tests.converge import Cli

MiB = 1024 * 1024


def test_sync_defaults_to_the_default_concurrency_and_no_limit() -> None:
    args = build_parser().parse_args(["sync"])
    assert (args.concurrency, args.bwlimit) == (DEFAULT_CONCURRENCY, None)


@pytest.mark.parametrize(
    ("flags", "concurrency", "bwlimit"),
    [
        (["--concurrency", "32", "--bwlimit", "10M"], 32, 10 * MiB),
        (["--bwlimit", "512"], DEFAULT_CONCURRENCY, 512 * 1024),  # KiB/s, as in rclone
        (["--bwlimit", "off"], DEFAULT_CONCURRENCY, 0),
    ],
)
def test_sync_flags(flags: list[str], concurrency: int, bwlimit: int) -> None:
    args = build_parser().parse_args(["sync", *flags])
    assert (args.concurrency, args.bwlimit) == (concurrency, bwlimit)


@pytest.mark.parametrize(
    "flags",
    [["--concurrency", "0"], ["--concurrency", "257"], ["--concurrency", "x"], ["--bwlimit", "?"]],
)
def test_bad_transfer_flags_are_usage_errors(flags: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        build_parser().parse_args(["sync", *flags])
    assert info.value.exit_code == 2
    assert flags[0] in str(info.value)


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        text + f'\n[[roots]]\npath = "{tmp_path}/a"\nconcurrency = 2\n'
        f'[[roots]]\npath = "{tmp_path}/b"\n'
    )
    return str(path)


def test_the_daemon_takes_concurrency_and_bandwidth_from_its_config(tmp_path: Path) -> None:
    settings = load_settings(
        DaemonOptions(config_path=_config(tmp_path, 'concurrency = 4\nbandwidth_limit = "1M"'))
    )
    assert [r.concurrency for r in settings.roots] == [2, 4]
    assert settings.config.bandwidth_limit == MiB


def test_daemon_flags_override_the_config_for_every_root(tmp_path: Path) -> None:
    config = _config(tmp_path, 'concurrency = 4\nbandwidth_limit = "1M"')
    args = build_parser().parse_args(
        ["daemon", "-c", config, "--concurrency", "32", "--bwlimit", "5M"]
    )
    settings = load_settings(
        DaemonOptions(
            config_path=args.config,
            concurrency=args.concurrency,
            bandwidth_limit=args.bwlimit,
        )
    )
    assert [r.concurrency for r in settings.roots] == [32, 32]
    assert settings.config.bandwidth_limit == 5 * MiB
    off = load_settings(DaemonOptions(config_path=config, bandwidth_limit=0))
    assert off.config.bandwidth_limit is None  # `--bwlimit off` lifts the config's limit


def test_daemon_flags_default_to_the_config() -> None:
    args = build_parser().parse_args(["daemon"])
    assert (args.concurrency, args.bwlimit) == (None, None)


@pytest.mark.anyio
async def test_the_daemon_s_stores_share_one_limit_that_a_reload_changes(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'bandwidth_limit = "1M"\n[[roots]]\npath = "{tmp_path}/a"\n')
    daemon = Daemon(
        DaemonOptions(config_path=str(config), socket=str(tmp_path / "sock")),
        log_stream=io.StringIO(),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(daemon.run, signals=False))
        with anyio.fail_after(20):
            await daemon.ready.wait()
        try:
            assert daemon.bandwidth.rate == MiB
            config.write_text(f'bandwidth_limit = "off"\n[[roots]]\npath = "{tmp_path}/a"\n')
            await daemon.reload()
            assert daemon.bandwidth.rate is None
        finally:
            daemon.shutdown()


def test_sync_bwlimit_holds_back_a_whole_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(capsys)
    root, remote = tmp_path / "root", tmp_path / "remote"
    root.mkdir()
    for i in range(3):
        (root / f"f{i}.bin").write_bytes(bytes([i]) * (256 * 1024))
    assert (
        cli("init", str(root), "--remote", str(remote), "--root-id", "r", "--device-id", "a").code
        == 0
    )
    began = time.monotonic()
    result = cli("-q", "sync", str(root), "--bwlimit", "512K")
    elapsed = time.monotonic() - began
    assert result.code == 0, result.err
    # 768 KiB of blobs (plus a small manifest) at 512 KiB/s: the first piece goes at once,
    # the other 512 KiB take a second.
    assert elapsed >= 0.95
    assert sorted(p.name for p in root.iterdir()) == [".dropbear", "f0.bin", "f1.bin", "f2.bin"]
