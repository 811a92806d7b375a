"""IO: the command line: argument parsing, one module per command group, rendering."""

from dropbeard.cli.main import main

__all__ = ["main"]
