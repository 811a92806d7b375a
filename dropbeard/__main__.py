"""Run the command line as `python -m dropbeard`."""

from dropbeard.cli.launch import run

raise SystemExit(run())
