"""Error types that cross module boundaries, each carrying the exit code it maps to (pure).

Every message is one line saying what was being done and why it failed; messages never
contain credentials. `cli` turns any `DropbeardError` into that line and its exit code.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The process exit codes of SPEC section 5: the only place they are written down."""

    OK = 0
    FAILURE = 1  # other failure, including a halted mass delete
    USAGE = 2
    OFFLINE = 3
    CONFLICTS = 4  # conflicts, problems or a halted delete remain
    UNAUTHORIZED = 9
    TRANSIENT = 10
    INTEGRITY = 11
    LIST_FAILED = 12
    FORCED = 130  # daemon: second signal during shutdown
    CLOSED_PIPE = 141  # stdout closed by its reader (128 + SIGPIPE, as a shell reports it)


class DropbeardError(Exception):
    """Base of every error dropbeard reports to a person. `exit_code` is SPEC section 5's."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(DropbeardError):
    """Bad command-line usage or configuration."""

    exit_code = ExitCode.USAGE


class OfflineError(DropbeardError):
    """The root failed its identity check: nothing is read from or written to the bucket."""

    exit_code = ExitCode.OFFLINE


class FormatError(DropbeardError):
    """An object in the bucket (or a local file dropbeard owns) is not valid dropbeard data."""

    exit_code = ExitCode.FAILURE


# --- store errors -------------------------------------------------------------------


class StoreError(DropbeardError):
    """Base of errors raised by a `Store`. `key` is the object the operation was about."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class NotFound(StoreError):
    """The object does not exist. Permanent for that request; never retried."""


class PreconditionFailed(StoreError):
    """A conditional write lost: the key exists (create-only) or its etag changed."""


class Unauthorized(StoreError):
    """The store rejected the credentials or denied access. Permanent; never retried."""

    exit_code = ExitCode.UNAUTHORIZED


class Unavailable(StoreError):
    """Transient: network down, server unavailable, throttled, timed out. Retried with backoff."""

    exit_code = ExitCode.TRANSIENT


class IntegrityError(StoreError):
    """Bytes did not match the SHA-256 they were promised to have."""

    exit_code = ExitCode.INTEGRITY


class LocalFileError(StoreError):
    """The caller's own local file failed (the source of an upload or the destination of a
    download: full disk, permission): the store is fine, so the caller records a problem
    for that one path. `errno` is the OS error number when there is one."""

    def __init__(self, message: str, key: str | None = None, errno: int | None = None) -> None:
        super().__init__(message, key)
        self.errno = errno


class MissingBucket(StoreError):
    """The bucket does not exist on the server asked: a configuration error (a mistyped
    bucket or endpoint), never retried."""

    exit_code = ExitCode.USAGE


class ListFailed(StoreError):
    """Listing the bucket failed for a reason that is neither auth nor transient."""

    exit_code = ExitCode.LIST_FAILED


def single_error(group: BaseExceptionGroup[BaseException]) -> DropbeardError | None:
    """The error to report for a failure inside a task group (anyio wraps it, with any
    sibling failures, in an ExceptionGroup): the first one, if every failure is a
    DropbeardError; None if any is not (a bug, to be shown as such)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = exc.exceptions
        else:
            leaves.append(exc)
    if leaves and all(isinstance(e, DropbeardError) for e in leaves):
        first = leaves[0]
        assert isinstance(first, DropbeardError)
        return first
    return None


def quoted(value: str, limit: int = 80) -> str:
    """`value` quoted for a one-line message, escaped and cut to about `limit` chars."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "…"
