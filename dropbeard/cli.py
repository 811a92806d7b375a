"""Command line: argument parsing and human/JSON output (IO)."""

from __future__ import annotations

import argparse
import sys

from dropbeard import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dropbeard")
    parser.add_argument("--version", action="version", version=f"dropbeard {__version__}")
    parser.parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
