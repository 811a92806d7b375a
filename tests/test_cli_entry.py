"""The `dropbeard` command's entry (`dropbeard.cli.main.run`): `main`, then a cheaper exit
(the collector frozen, so the interpreter's last collection skips what the command made)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PYTHON_M = """
import atexit, gc, runpy, sys
called = []
real = gc.freeze
gc.freeze = lambda: (called.append(1), real())[1]
atexit.register(lambda: print("frozen" if called else "not frozen"))
sys.argv = ["dropbeard", "--version"]
runpy.run_module("dropbeard", run_name="__main__")
"""


def test_python_m_dropbeard_freezes_the_collector_before_it_exits() -> None:
    done = subprocess.run([sys.executable, "-c", PYTHON_M], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    version, frozen = done.stdout.splitlines()
    assert version.startswith("dropbeard ") and frozen == "frozen"


def test_the_console_script_is_the_same_entry() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["dropbeard"] == "dropbeard.cli.main:run"


def test_an_import_error_inside_a_command_runs_it_once_and_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The event loop's choice (uvloop if importable) must not catch what the command
    # raises: an ImportError from inside a command once ran the whole command again.
    cli = importlib.import_module("dropbeard.cli.main")  # the package exports `main`
    calls: list[str] = []

    async def failing(args: object) -> int:
        calls.append("ran")
        raise ImportError("no module named 'lost'")

    monkeypatch.setitem(cli._COMMANDS, "status", failing)
    code = cli.main(["status", "/nonexistent"])
    assert calls == ["ran"]
    assert code == 1
    assert "internal error: ImportError: no module named 'lost'" in capsys.readouterr().err
