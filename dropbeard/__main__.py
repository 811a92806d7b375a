"""Run the command line as `python -m dropbeard`."""

from dropbeard.cli.main import main

raise SystemExit(main())
