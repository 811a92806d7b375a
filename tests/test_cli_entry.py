"""The `dropbeard` command's entry (`dropbeard.cli.launch.run`): the command line's modules
load with the cyclic collector paused, then `cli.main.run`: `main`, and a cheaper exit
(the collector frozen, so the interpreter's last collection skips what the command made)."""

from __future__ import annotations

import gc
import importlib
import json  # noqa: F401 (imported again, quietly, below)
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dropbeard.core import imports

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
    assert project["project"]["scripts"]["dropbeard"] == "dropbeard.cli.launch:run"


PAUSED_WHILE_LOADING = """
import gc, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "dropbeard.cli.main":
            seen.append(gc.isenabled())
        return None
sys.meta_path.insert(0, Watch())
sys.argv = ["dropbeard", "--version"]
from dropbeard.cli.launch import run
code = run()
print(seen, gc.isenabled(), code)
"""


def test_the_command_lines_modules_load_with_the_collector_paused_and_it_resumes() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PAUSED_WHILE_LOADING], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[False] True 0"


def test_a_quiet_import_pauses_the_collector_and_gives_back_what_it_found() -> None:
    seen: list[bool] = []

    def fake_import(name: str) -> object:
        seen.append(gc.isenabled())
        return sys.modules[name]

    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(imports.importlib, "import_module", fake_import)
                assert imports.import_quietly("json") is sys.modules["json"]
            assert gc.isenabled() is enabled
        finally:
            gc.enable()
    assert seen == [False, False]


def test_an_import_error_inside_a_command_runs_it_once_and_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The event loop's choice (uvloop if importable) must not catch what the command
    # raises: an ImportError from inside a command once ran the whole command again.
    cli = importlib.import_module("dropbeard.cli.main")
    calls: list[str] = []

    async def failing(args: object) -> int:
        calls.append("ran")
        raise ImportError("no module named 'lost'")

    monkeypatch.setitem(cli._COMMANDS, "status", failing)
    code = cli.main(["status", "/nonexistent"])
    assert calls == ["ran"]
    assert code == 1
    assert "internal error: ImportError: no module named 'lost'" in capsys.readouterr().err
