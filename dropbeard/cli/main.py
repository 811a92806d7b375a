"""Command line: argument parsing, running commands, human/JSON output, exit codes (IO).

Every failure becomes one line on stderr and the exit code of SPEC section 5; a traceback
is shown only with --verbose.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import anyio

from dropbeard import __version__
from dropbeard.cli.patience import PATIENCE
from dropbeard.core.errors import DropbeardError, ExitCode, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2 with one line
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The `dropbeard` parser: global flags, then one sub-parser per command."""
    parser = _Parser(
        prog="dropbeard",
        description="Keep one folder in sync across your devices through a bucket you own.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"dropbeard {__version__}")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="more detail on stderr")
    noise.add_argument("-q", "--quiet", action="store_true", help="only errors")
    # -v/-q are accepted after the command too (`dropbeard sync -q`)
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add_command in (
        _init_parser,
        _sync_parser,
        _resolve_parser,
        _status_parser,
        _daemon_parser,
    ):
        add_command(sub, common)
    return parser


#: What `add_subparsers` returns: each `_*_parser` adds its command to it.
_Commands = argparse._SubParsersAction


def _init_parser(sub: _Commands[_Parser], common: _Parser) -> None:
    p = sub.add_parser(
        "init", parents=[common], help="make PATH a synced root and register this device"
    )
    p.add_argument("path", type=Path)
    p.add_argument(
        "--remote", required=True, help="s3://BUCKET[/PREFIX] or an absolute directory path"
    )
    p.add_argument("--endpoint-url", help="S3 endpoint for non-AWS servers")
    p.add_argument("--region")
    p.add_argument("--profile", help="AWS profile for credentials")
    p.add_argument("--addressing-style", choices=("auto", "path", "virtual"), default="auto")
    p.add_argument(
        "--root-id",
        help="the root to join or create (default: the one root the remote holds, else the "
        "folder name)",
    )
    p.add_argument(
        "--new-root",
        action="store_true",
        help="create a new root even though the remote already holds some",
    )
    p.add_argument("--device-id", help="default: the host name")
    p.add_argument(
        "--mode",
        default="bidirectional",
        choices=("bidirectional", "upload-only", "download-only", "archive-only"),
    )
    p.add_argument(
        "--take-over",
        action="store_true",
        help="reuse a device id that is already active (this machine replaces it)",
    )


def _sync_parser(sub: _Commands[_Parser], common: _Parser) -> None:
    p = sub.add_parser("sync", parents=[common], help="run one sync pass")
    p.add_argument("path", type=Path, nargs="?", default=None)
    p.add_argument("-c", "--config", help="daemon config whose roots to sync when no PATH")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--dry-run", action="store_true", help="report what would happen; write nothing")
    p.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="let this pass publish deletes the safety guard halted",
    )
    p.add_argument("--concurrency", type=int, default=8, help="transfers at once (default 8)")


def _resolve_parser(sub: _Commands[_Parser], common: _Parser) -> None:
    p = sub.add_parser("resolve", parents=[common], help="settle a conflict")
    p.add_argument("path", type=Path, help="the conflicted file (not a conflict copy)")
    p.add_argument(
        "--keep",
        required=True,
        metavar="local|DEVICE_ID",
        help="keep this device's version, or the copy from DEVICE_ID",
    )


def _status_parser(sub: _Commands[_Parser], common: _Parser) -> None:
    p = sub.add_parser("status", parents=[common], help="show a root's state")
    p.add_argument("path", type=Path, nargs="?", default=None)
    p.add_argument("--json", action="store_true")
    _daemon_location(p)
    p.add_argument(
        "--offline",
        action="store_true",
        help="do not contact the bucket; show what the local index knows",
    )


def _daemon_parser(sub: _Commands[_Parser], common: _Parser) -> None:
    p = sub.add_parser("daemon", parents=[common], help="keep roots in sync in the background")
    p.add_argument("roots", nargs="*", metavar="ROOT", help="roots to sync (replace [[roots]])")
    _daemon_location(p)
    p.add_argument(
        "--interval", type=_duration, help="full rescan every D (e.g. 5m; overrides the config)"
    )


def _daemon_location(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="daemon config file (default: the per-user one)")
    p.add_argument("--socket", help="control socket path (default: from the config)")


def _duration(text: str) -> float:
    from dropbeard.core.duration import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0s")
    return seconds


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = None
    try:
        try:
            args = build_parser().parse_args(argv)
            handler: Callable[[argparse.Namespace], Awaitable[int]] = _COMMANDS[args.command]
            # the daemon logs its own retries; every other command may wait on a server
            waiting = PATIENCE.running(_say) if args.command != "daemon" else nullcontext()
            with waiting:
                code = _run(handler, args)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
            return code
        except DropbeardError as exc:
            return _fail(exc.exit_code, str(exc), args, argv)
        except KeyboardInterrupt:
            print("dropbeard: interrupted", file=sys.stderr)
            return ExitCode.FORCED
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0)
        except BrokenPipeError:
            raise
        except Exception as exc:
            message = f"internal error: {type(exc).__name__}: {exc}"
            return _fail(ExitCode.FAILURE, message, args, argv, internal=True)
    except BrokenPipeError:
        return _closed_pipe()


def _run(handler: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    async def go() -> int:
        return await handler(args)

    try:
        import uvloop  # noqa: F401

        return anyio.run(go, backend_options={"use_uvloop": True})
    except ImportError:
        return anyio.run(go)


def _say(line: str) -> None:
    """A notice for the person, on stderr (never on stdout: it may be --json), above the
    progress line if one is drawn."""
    from dropbeard.cli.terminal import say

    with contextlib.suppress(OSError, ValueError):
        say(line)


def _fail(
    code: ExitCode,
    message: str,
    args: argparse.Namespace | None,
    argv: list[str],
    *,
    internal: bool = False,
) -> ExitCode:
    """Report a failure: one line on stderr (a traceback only with --verbose) and, with
    --json, a JSON object on stdout. Returns the exit code."""
    if args is not None and getattr(args, "verbose", False):
        traceback.print_exc()
    elif internal:
        print("(run with --verbose for details)", file=sys.stderr)
    first = message.splitlines()[0] if message else "failed"
    print(f"dropbeard: error: {first}", file=sys.stderr)
    wants_json = getattr(args, "json", False) if args is not None else "--json" in argv
    if wants_json:
        kind = "internal" if internal else code.name.lower()
        print(json.dumps({"error": kind, "exit_code": int(code), "message": first}), flush=True)
    return code


def _closed_pipe() -> int:
    """stdout was closed under us (`dropbeard status | head -1`): end quietly. Whatever is
    still buffered goes nowhere, so the interpreter's last flush cannot fail loudly."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return ExitCode.CLOSED_PIPE


async def _init(args: argparse.Namespace) -> int:
    from dropbeard.cli.init import init_command

    return await init_command(args)


async def _sync(args: argparse.Namespace) -> int:
    from dropbeard.cli.sync import sync_command

    return await sync_command(args)


async def _resolve(args: argparse.Namespace) -> int:
    from dropbeard.cli.resolve import resolve_command

    return await resolve_command(args)


async def _status(args: argparse.Namespace) -> int:
    from dropbeard.cli.status import status_command, status_from_daemon
    from dropbeard.daemon.control import socket_for_client

    sock = socket_for_client(args.socket, args.config)
    code = await status_from_daemon(
        args.path, socket_path=sock, offline=args.offline, as_json=args.json
    )
    if code is not None:
        return code
    return await status_command(args)


async def _daemon(args: argparse.Namespace) -> int:
    from dropbeard.daemon.service import daemon_command

    return await daemon_command(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "init": _init,
    "sync": _sync,
    "status": _status,
    "resolve": _resolve,
    "daemon": _daemon,
}


if __name__ == "__main__":
    sys.exit(main())
