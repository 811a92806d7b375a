"""Run the command line as `python -m dropbeard`."""

from dropbeard.cli import main

raise SystemExit(main())
