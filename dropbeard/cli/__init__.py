"""IO: the command line: argument parsing, one module per command group, rendering.

Importing the package loads nothing else: the entry point (`cli.launch`) loads
`cli.main` and the rest with the cyclic collector paused."""
