"""The `dropbeard` command line's grammar: one argparse parser with a sub-parser per
command, each with its one-line description, help for every argument, and examples and
exit codes in its epilog (no IO: `main` parses, `manpage` and completion read it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dropbeard import __version__
from dropbeard.cli.argtypes import bandwidth, concurrency, duration
from dropbeard.cli.bucketargs import (
    devices_arguments,
    gc_arguments,
    ls_arguments,
    restore_arguments,
    retention_arguments,
    verify_arguments,
    versions_arguments,
)
from dropbeard.core.config import ADDRESSING_STYLES, MODES
from dropbeard.core.daemonconfig import DEFAULT_CONCURRENCY, MAX_CONCURRENCY
from dropbeard.core.errors import UsageError

DESCRIPTION = "Keep one folder in sync across your devices through a bucket you own."

#: SPEC section 5's exit codes, as every --help and the man page list them.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "success"),
    (1, "other failure (the message says what), including a halted mass delete"),
    (2, "usage or configuration error"),
    (3, "root offline (its identity check failed)"),
    (4, "conflicts, problems or a halted delete remain"),
    (9, "credentials rejected"),
    (10, "network or server unavailable after retries"),
    (11, "integrity: an object did not match its hash"),
    (12, "listing the bucket failed"),
    (130, "daemon: second signal during shutdown"),
    (141, "output to a closed pipe"),
)

#: Per command: its one-line description, then examples (command, what it does).
COMMANDS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "init": (
        "make a folder a synced root and register this device",
        (
            ("dropbeard init ~/Sync --remote /mnt/nas/dropbeard", "a NAS or USB drive"),
            (
                "dropbeard init ~/Sync --remote s3://my-bucket/sync "
                "--endpoint-url https://s3.example.com",
                "any S3 server",
            ),
            (
                "dropbeard init ~/Sync --remote s3://my-bucket/sync",
                "a second device: joins the root the remote holds",
            ),
        ),
    ),
    "sync": (
        "run one sync pass: scan, read other devices, download, upload, publish",
        (
            ("dropbeard sync ~/Sync", "one pass"),
            ("dropbeard sync --dry-run -v", "list what would change, change nothing"),
            ("dropbeard sync --json", "the summary as JSON"),
        ),
    ),
    "status": (
        "show a root's state: conflicts, problems, other devices, the daemon",
        (
            ("dropbeard status", "from the daemon if one runs, else from the roots"),
            ("dropbeard status ~/Sync --offline", "without asking the bucket"),
        ),
    ),
    "resolve": (
        "settle a conflict by keeping one version, then sync",
        (
            ("dropbeard resolve ~/Sync/notes.md --keep local", "keep this device's version"),
            ("dropbeard resolve ~/Sync/notes.md --keep desktop", "keep desktop's copy"),
        ),
    ),
    "ls": (
        "list what a device's snapshot holds, now or at a past time",
        (
            ("dropbeard ls ~/Sync/docs", "this device's latest snapshot of docs"),
            ("dropbeard ls ~/Sync --device desktop --at 3d", "desktop's root three days ago"),
        ),
    ),
    "versions": (
        "list every retained version of a file or folder, on every device",
        (
            ("dropbeard versions ~/Sync/notes.md", "when it changed, on which device, deletes"),
            ("dropbeard versions ~/Sync/notes.md --json", "the same as JSON"),
        ),
    ),
    "restore": (
        "bring back a file or folder from history, into the root or another folder",
        (
            ("dropbeard restore ~/Sync/notes.md", "its newest version unlike the file now"),
            ("dropbeard restore ~/Sync/docs --at 2h", "the folder as it was two hours ago"),
            ("dropbeard restore ~/Sync/notes.md --version 9f86d081", "one version, by sha256"),
            ("dropbeard restore ~/Sync/docs --at 3d --to /tmp/old", "into another folder"),
        ),
    ),
    "verify": (
        "check that everything the heads reference is in the bucket, and intact",
        (
            ("dropbeard verify", "every current head, from one listing"),
            ("dropbeard verify --all --full", "every snapshot, every byte re-hashed"),
            ("dropbeard verify --sample 5", "re-hash a random 5% of the blobs"),
        ),
    ),
    "gc": (
        "apply the retention policy and delete what nothing retained needs",
        (
            ("dropbeard gc --dry-run", "what would go, and what it would free"),
            ("dropbeard gc -v", "delete it, naming every object"),
        ),
    ),
    "retention": (
        "show or change how long history is kept, and gc's grace period",
        (
            ("dropbeard retention", "show the policy"),
            ("dropbeard retention --all 7d --daily 1y", "keep more"),
        ),
    ),
    "devices": (
        "list the devices of a root, or retire one",
        (
            ("dropbeard devices", "mode, last snapshot, files, caught up or not"),
            ("dropbeard devices retire old-phone", "stop waiting for a device that is gone"),
        ),
    ),
    "daemon": (
        "keep roots in sync in the background (watch, poll, rescan)",
        (
            ("dropbeard daemon ~/Sync", "one root, default settings"),
            ("dropbeard daemon -c ~/.config/dropbeard/config.toml", "the roots of a config"),
        ),
    ),
    "completion": (
        "print the shell completion script for bash, zsh or fish",
        (
            ('eval "$(dropbeard completion bash)"', "in ~/.bashrc"),
            ('eval "$(dropbeard completion zsh)"', "in ~/.zshrc"),
            ("dropbeard completion fish | source", "in ~/.config/fish/config.fish"),
        ),
    ),
}


class Parser(argparse.ArgumentParser):
    """Usage errors exit 2 with one line (`UsageError`), not argparse's own exit."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def epilog(examples: tuple[tuple[str, str], ...]) -> str:
    lines = ["examples:"]
    lines += [f"  {command}\n      {what}" for command, what in examples]
    lines += ["", "exit codes:"]
    lines += [f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES]
    return "\n".join(lines)


def build_parser() -> Parser:
    """The `dropbeard` parser: global flags, then one sub-parser per command."""
    parser = Parser(
        prog="dropbeard",
        description=DESCRIPTION,
        epilog=epilog(tuple(ex for _, exs in COMMANDS.values() for ex in exs[:1])),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"dropbeard {__version__}",
        help="print the version and exit",
    )  # fmt: skip
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE)
    noise.add_argument("-q", "--quiet", action="store_true", help=_QUIET)
    # -v/-q are accepted after the command too (`dropbeard sync -q`)
    common = Parser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=_QUIET
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, add_arguments in _ARGUMENTS.items():
        description, examples = COMMANDS[name]
        p = sub.add_parser(
            name,
            parents=[common],
            help=description,
            description=description[0].upper() + description[1:] + ".",
            epilog=epilog(examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(p)
    return parser


_VERBOSE = "more detail: every changed path, tracebacks on errors"
_QUIET = "print only errors"


def _init_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, metavar="PATH", help="the folder to sync (made if missing)")
    p.add_argument(
        "--remote",
        required=True,
        metavar="URL",
        help="s3://BUCKET[/PREFIX], or a directory (a NAS mount, a USB drive)",
    )
    p.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="the S3 server's address for non-AWS servers (http:// or https://)",
    )
    p.add_argument("--region", help="the S3 region (default: us-east-1)")
    p.add_argument("--profile", help="the AWS profile whose credentials to use")
    p.add_argument(
        "--addressing-style",
        choices=ADDRESSING_STYLES,
        default="auto",
        help="S3 bucket addressing: path for most self-hosted servers (default: auto)",
    )
    p.add_argument(
        "--root-id",
        metavar="ID",
        help="the root to join or create (default: the one root the remote holds, else the "
        "folder's name)",
    )
    p.add_argument(
        "--new-root",
        action="store_true",
        help="create a new root even though the remote already holds some",
    )
    p.add_argument("--device-id", metavar="ID", help="this device's id (default: the host name)")
    p.add_argument(
        "--mode",
        default="bidirectional",
        choices=MODES,
        help="what this device does (default: bidirectional; archive-only keeps every file)",
    )
    p.add_argument(
        "--take-over",
        action="store_true",
        help="reuse a device id that is already active (this machine replaces it)",
    )


def _root_path_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        type=Path,
        nargs="?",
        default=None,
        metavar="PATH",
        help="a folder inside the root (default: the current one, else every configured root)",
    )


def _sync_arguments(p: argparse.ArgumentParser) -> None:
    _root_path_argument(p)
    _config_option(p, "whose roots to sync when there is no PATH")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--dry-run", action="store_true", help="list what would change; write nothing")
    p.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="let this pass publish the deletes the safety guard halted",
    )
    _transfer_options(p, concurrency_default=DEFAULT_CONCURRENCY)
    p.add_argument(
        "--full-reconcile",
        action="store_true",
        help="reconcile every tracked path, not only those that changed (slower; a repair)",
    )
    p.add_argument(
        "--check-full",
        action="store_true",
        help="also plan a full reconcile and stop, changing nothing, if the plans differ "
        "(a check for bugs, used by the tests)",
    )


def _resolve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, metavar="PATH", help="the conflicted file (not a copy)")
    p.add_argument(
        "--keep",
        required=True,
        metavar="local|DEVICE_ID",
        help="keep this device's version, or the copy from DEVICE_ID",
    )


def _status_arguments(p: argparse.ArgumentParser) -> None:
    _root_path_argument(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    _config_option(p, "whose socket and roots to use")
    _socket_option(p)
    p.add_argument(
        "--offline",
        action="store_true",
        help="do not contact the bucket; show what the local index knows",
    )


def _daemon_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "roots", nargs="*", metavar="ROOT", help="roots to sync (instead of the config's)"
    )
    _config_option(p, "(default: the per-user one)")
    _socket_option(p)
    p.add_argument(
        "--interval",
        type=duration,
        metavar="D",
        help="full rescan every D, e.g. 5m (overrides the config)",
    )
    _transfer_options(p, concurrency_default=None)


def _transfer_options(p: argparse.ArgumentParser, *, concurrency_default: int | None) -> None:
    """`--concurrency` and `--bwlimit`; without a default, they override the config's."""
    shown = "the config's" if concurrency_default is None else str(concurrency_default)
    p.add_argument(
        "--concurrency",
        type=concurrency,
        default=concurrency_default,
        metavar="N",
        help=f"requests in flight at once, 1-{MAX_CONCURRENCY} (default {shown}); "
        "requests of 1 MiB or less run four times as many",
    )
    p.add_argument(
        "--bwlimit",
        type=bandwidth,
        default=None,
        metavar="RATE",
        help="limit all transfers of this process together to RATE bytes/s, e.g. 512K or "
        "10M (a bare number is KiB/s, as in rclone); 'off' for no limit",
    )


def _completion_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")


def _config_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-c", "--config", metavar="CONFIG", help=f"the daemon config {what}")


def _socket_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--socket", metavar="PATH", help="the daemon's control socket (default: from the config)"
    )


_ARGUMENTS = {
    "init": _init_arguments,
    "sync": _sync_arguments,
    "status": _status_arguments,
    "resolve": _resolve_arguments,
    "ls": ls_arguments,
    "versions": versions_arguments,
    "restore": restore_arguments,
    "verify": verify_arguments,
    "gc": gc_arguments,
    "retention": retention_arguments,
    "devices": devices_arguments,
    "daemon": _daemon_arguments,
    "completion": _completion_arguments,
}
