"""Run the command line as `python -m dropbeard`."""

from dropbeard.cli.main import run

raise SystemExit(run())
