"""Shell completion for bash, zsh and fish, with argcomplete: `dropbeard completion SHELL`
prints the script to source, and `answer` replies to the shell's completion requests
(IO: stdout, and argcomplete's own file descriptors while completing)."""

from __future__ import annotations

import argparse
import os


def script(shell: str) -> str:
    """The script that makes `shell` complete `dropbeard` (source it, or eval it)."""
    from argcomplete.shell_integration import shellcode

    return shellcode(["dropbeard"], shell=shell)


def answer(parser: argparse.ArgumentParser) -> None:
    """When the shell asks (argcomplete's `_ARGCOMPLETE` is set), print the completions
    for its command line and exit; otherwise return at once."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    argcomplete.autocomplete(parser)
