"""The service definitions shipped next to the code: the systemd user unit and the launchd
agent parse, and say what the README promises (Type=notify, the daemon command, restarts)."""

from __future__ import annotations

import configparser
import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "dropbeard.service"
PLIST = REPO / "launchd" / "dev.dropbeard.daemon.plist"


def _unit() -> configparser.RawConfigParser:
    # systemd allows repeated keys; the last one wins, as with strict=False here.
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_the_systemd_unit_is_a_notify_user_service_running_the_daemon() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].split() == ["%h/.dropbeard/bin/dropbeard", "daemon"]
    assert service["Restart"] == "on-failure"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["NoNewPrivileges"] == "yes"
    # Roots may live outside $HOME (/srv, /media): the system must not be read-only there.
    assert service.get("ProtectSystem") != "strict" or "ReadWritePaths" in service
    assert unit["Install"]["WantedBy"] == "default.target"


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    home = tmp_path / "home"
    exe = home / ".dropbeard" / "bin" / "dropbeard"  # what ExecStart=%h/... points at
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(runtime))
    done = subprocess.run(
        [analyze, "--user", "verify", str(UNIT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if done.returncode != 0 and "Failed to initialize manager" in done.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # no unknown keys, no warnings


def test_the_launchd_agent_keeps_the_daemon_running() -> None:
    with PLIST.open("rb") as f:
        agent = plistlib.load(f)
    assert agent["Label"] == "dev.dropbeard.daemon"
    assert agent["ProgramArguments"] == ["__HOME__/.dropbeard/bin/dropbeard", "daemon"]
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] in (True, {"SuccessfulExit": False})
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert agent[key].startswith("__HOME__/Library/Logs/"), key


def test_the_readme_installs_both() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## Running as a service" in readme
    assert "cp systemd/dropbeard.service ~/.config/systemd/user/" in readme
    assert "systemctl --user enable --now dropbeard" in readme
    assert "~/Library/LaunchAgents/dev.dropbeard.daemon.plist" in readme
    assert "launchctl bootstrap" in readme
