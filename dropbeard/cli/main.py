"""Command line: argument parsing, running commands, human/JSON output, exit codes (IO).

Every failure becomes one line on stderr and the exit code of SPEC section 5; a traceback
is shown only with --verbose.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import nullcontext

import anyio

from dropbeard.cli import completion
from dropbeard.cli.parser import build_parser
from dropbeard.cli.patience import PATIENCE
from dropbeard.core.errors import DropbeardError, ExitCode


def run() -> int:
    """The `dropbeard` command (the console script, and `python -m dropbeard`): `main`, and
    a cheaper exit. The command is done (stores and state.sqlite closed, output flushed by
    the interpreter's exit as usual), so the exit's garbage collection need not walk every
    object its ~700 modules made: frozen, it skips them, ~0.15 s of CPU less per command."""
    code = main()
    gc.freeze()
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = None
    try:
        try:
            parser = build_parser()
            completion.answer(parser)  # the shell asking for completions: answers, exits
            args = parser.parse_args(argv)
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
            full = out_of_space(exc)
            if full is not None:
                return _fail(ExitCode.FAILURE, full, args, argv)
            message = f"internal error: {type(exc).__name__}: {exc}"
            return _fail(ExitCode.FAILURE, message, args, argv, internal=True)
    except BrokenPipeError:
        return _closed_pipe()


#: Container allocations between young-generation collections while a command runs
#: (CPython's default is 700). A pass allocates a few dozen short-lived objects per file
#: (requests, responses, tasks) next to tens of thousands of long-lived ones (the folder's
#: entries); at the default the cyclic collector ran ~100 times per 1,000 downloaded
#: files and took about a fifth of a pass's CPU, traversing the same survivors again and
#: again. Garbage without cycles is freed at once whatever this says; cycles wait for
#: the next collection, which still comes within milliseconds of busy work.
YOUNG_COLLECTION_EVERY = 20_000
#: Young collections per middle one, and middle ones per full one (CPython: 10 and 10).
OLDER_COLLECTION_EVERY = 20


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the block with the cyclic collector's thresholds raised (see above), and
    give the process back its own afterwards (the CLI also runs inside tests)."""
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, OLDER_COLLECTION_EVERY, OLDER_COLLECTION_EVERY)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _run(handler: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    async def go() -> int:
        return await handler(args)

    try:
        import uvloop  # noqa: F401
    except ImportError:  # a platform without it: asyncio's own loop
        options: dict[str, object] = {}
    else:
        options = {"use_uvloop": True}
    with fewer_collections():
        return anyio.run(go, backend_options=options)


def _say(line: str) -> None:
    """A notice for the person, on stderr (never on stdout: it may be --json), above the
    progress line if one is drawn."""
    from dropbeard.cli.terminal import say

    with contextlib.suppress(OSError, ValueError):
        say(line)


#: What a local disk with no room left raises: the OS's errors, and SQLite's own.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


def out_of_space(exc: BaseException) -> str | None:
    """The one line for a command that failed because a local disk is full (its state,
    node cache or temporary files; a full remote and a downloaded file that does not fit
    are reported where they happen), found anywhere in `exc`: a task group's exceptions,
    causes and contexts. None if no disk was full."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        err = pending.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _NO_ROOM:
            where = f" writing {err.filename}" if err.filename else ""
            return (
                f"no space left on device{where}: nothing was lost (state.sqlite keeps "
                "the last finished step); free some space and run the command again"
            )
        sqlite3 = sys.modules.get("sqlite3")  # imported by whatever raised it, if anything
        if sqlite3 and isinstance(err, sqlite3.OperationalError) and "disk is full" in str(err):
            return (
                "no space left on device writing state.sqlite: nothing was lost (the "
                "unfinished step was rolled back); free some space and run the command again"
            )
        if isinstance(err, BaseExceptionGroup):
            pending.extend(err.exceptions)
        pending.extend(e for e in (err.__cause__, err.__context__) if e is not None)
    return None


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


async def _ls(args: argparse.Namespace) -> int:
    from dropbeard.cli.history import ls_command

    return await ls_command(args)


async def _versions(args: argparse.Namespace) -> int:
    from dropbeard.cli.history import versions_command

    return await versions_command(args)


async def _restore(args: argparse.Namespace) -> int:
    from dropbeard.cli.history import restore_command

    return await restore_command(args)


async def _verify(args: argparse.Namespace) -> int:
    from dropbeard.cli.maintenance import verify_command

    return await verify_command(args)


async def _gc(args: argparse.Namespace) -> int:
    from dropbeard.cli.maintenance import gc_command

    return await gc_command(args)


async def _retention(args: argparse.Namespace) -> int:
    from dropbeard.cli.maintenance import retention_command

    return await retention_command(args)


async def _devices(args: argparse.Namespace) -> int:
    from dropbeard.cli.devices import devices_command

    return await devices_command(args)


async def _completion(args: argparse.Namespace) -> int:
    print(completion.script(args.shell), end="")
    return 0


async def _daemon(args: argparse.Namespace) -> int:
    from dropbeard.daemon.service import daemon_command

    return await daemon_command(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "init": _init,
    "sync": _sync,
    "status": _status,
    "resolve": _resolve,
    "ls": _ls,
    "versions": _versions,
    "restore": _restore,
    "verify": _verify,
    "gc": _gc,
    "retention": _retention,
    "devices": _devices,
    "daemon": _daemon,
    "completion": _completion,
}


if __name__ == "__main__":
    sys.exit(run())
