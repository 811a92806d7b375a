"""The `dropbeard` command's entry point (the console script and `python -m dropbeard`):
the command line's modules load with the cyclic collector paused (`core.imports`), then
`cli.main.run` runs the command with its own collector settings."""

from __future__ import annotations

from dropbeard.core.imports import collections_paused


def run() -> int:
    with collections_paused():
        from dropbeard.cli.main import run as run_command
    return run_command()


__all__ = ["run"]
