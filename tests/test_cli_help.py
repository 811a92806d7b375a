"""Help and conventions (issue 13, item 6): every command and argument explained, examples
and exit codes in every --help, -V, shell completion for bash, zsh and fish, and a man
page generated from the parser and shipped with the package."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from dropbeard import __version__
from dropbeard.cli.manpage import SHIPPED, render_manpage
from dropbeard.cli.parser import EXIT_CODES, build_parser
from dropbeard.core.errors import ExitCode
from tests.converge import Cli


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def _commands() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no commands")


def test_every_command_and_argument_is_explained() -> None:
    commands = _commands()
    assert set(commands) == {
        "init", "sync", "status", "resolve", "daemon", "completion",
        "ls", "versions", "restore", "verify", "gc", "retention", "devices",
    }  # fmt: skip
    for name, parser in [("dropbeard", build_parser()), *commands.items()]:
        assert parser.description, name
        assert "\n" not in parser.description.strip(), name  # one line
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)


@pytest.mark.parametrize(
    "command",
    [
        "init", "sync", "status", "resolve", "daemon", "completion",
        "ls", "versions", "restore", "verify", "gc", "retention", "devices",
    ],
)  # fmt: skip
def test_each_help_ends_with_examples_and_exit_codes(cli: Cli, command: str) -> None:
    got = cli(command, "--help")
    assert got.code == 0
    assert "examples:" in got.out and f"dropbeard {command}" in got.out.split("examples:")[1]
    assert "exit codes:" in got.out
    for code, meaning in EXIT_CODES:
        assert f"{code:>3}  {meaning}" in got.out


def test_the_exit_codes_listed_are_the_ones_used() -> None:
    assert {code for code, _ in EXIT_CODES} == {int(c) for c in ExitCode}


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(cli: Cli, flag: str) -> None:
    got = cli(flag)
    assert got.code == 0 and got.out.strip() == f"dropbeard {__version__}"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(cli: Cli, shell: str) -> None:
    got = cli("completion", shell)
    assert got.code == 0
    assert "dropbeard" in got.out and "_ARGCOMPLETE" in got.out


def _complete(line: str, tmp_path: Path) -> list[str]:
    """What the program answers a shell asking to complete `line` (argcomplete's protocol)."""
    answer = tmp_path / "answer"
    env = dict(
        os.environ,
        _ARGCOMPLETE="1",
        _ARGCOMPLETE_IFS="\n",
        COMP_LINE=line,
        COMP_POINT=str(len(line)),
        _ARGCOMPLETE_STDOUT_FILENAME=str(answer),
    )
    subprocess.run(
        [sys.executable, "-m", "dropbeard"], env=env, timeout=60, check=True,
        capture_output=True,
    )  # fmt: skip
    return [word.strip() for word in answer.read_text().split("\n")]


def test_the_program_answers_completion_requests(tmp_path: Path) -> None:
    assert "sync" in _complete("dropbeard sy", tmp_path)
    assert "--remote" in _complete("dropbeard init --rem", tmp_path)
    assert set(_complete("dropbeard init --mode a", tmp_path)) == {"archive-only"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_through_the_printed_script(tmp_path: Path, cli: Cli) -> None:
    script = tmp_path / "completion.bash"
    script.write_text(cli("completion", "bash").out)
    exe = tmp_path / "bin" / "dropbeard"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m dropbeard "$@"\n')
    exe.chmod(0o755)
    probe = (
        f"source {script}; COMP_WORDS=(dropbeard sta); COMP_CWORD=1; "
        'COMP_LINE="dropbeard sta"; COMP_POINT=13; '
        "_python_argcomplete dropbeard; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    env = dict(os.environ, PATH=f"{exe.parent}:{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["status"], done.stderr


def test_the_shipped_man_page_is_generated_from_the_parser() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == render_manpage(), (
        "the man page is stale: run `python -m dropbeard.cli.manpage`"
    )
    page = resources.files("dropbeard").joinpath("man/dropbeard.1").read_text(encoding="utf-8")
    assert page.startswith(".TH DROPBEARD 1")
    for section in ("NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES"):
        assert f"\n.SH {section}\n" in page
    for command in _commands():
        assert f'.SS "{command}"' in page
    assert "\\-\\-allow\\-mass\\-delete" in page


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_the_man_page_renders_without_warnings() -> None:
    done = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", str(SHIPPED)], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "dropbeard init" in done.stdout


def test_the_readme_lists_every_command_and_option() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for name, parser in _commands().items():
        assert f"`dropbeard {name} " in readme, name
        for action in parser._actions:
            if action.dest in ("help", "verbose", "quiet") or not action.option_strings:
                continue
            assert any(flag in readme for flag in action.option_strings), (name, action.dest)
    assert "../shared/" not in readme and "docs/FORMAT.md" in readme
    assert (Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md").is_file()
