"""Error types that cross module boundaries, each carrying the exit code it maps to (pure).

Every message is one line saying what was being done and why it failed; messages never
contain credentials. `cli` turns any `DropbeardError` into that line and its exit code.
"""

from __future__ import annotations


class DropbeardError(Exception):
    """Base of every error dropbeard reports to a person. `exit_code` is SPEC section 5's."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(DropbeardError):
    """Bad command-line usage or configuration."""

    exit_code = 2


class OfflineError(DropbeardError):
    """The root failed its identity check: nothing is read from or written to the bucket."""

    exit_code = 3


class FormatError(DropbeardError):
    """An object in the bucket (or a local file dropbeard owns) is not valid dropbeard data."""

    exit_code = 1


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

    exit_code = 9


class Unavailable(StoreError):
    """Transient: network down, server unavailable, throttled, timed out. Retried with backoff."""

    exit_code = 10


class IntegrityError(StoreError):
    """Bytes did not match the SHA-256 they were promised to have."""

    exit_code = 11


class LocalFileError(StoreError):
    """The caller's own local file failed (the source of an upload or the destination of a
    download: full disk, permission): the store is fine, so the caller records a problem
    for that one path. `errno` is the OS error number when there is one."""

    def __init__(self, message: str, key: str | None = None, errno: int | None = None) -> None:
        super().__init__(message, key)
        self.errno = errno


class ListFailed(StoreError):
    """Listing the bucket failed for a reason that is neither auth nor transient."""

    exit_code = 12
