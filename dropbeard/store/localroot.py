"""The directory behind a `LocalStore`: store keys as paths, etags from `stat`, and OSError
as typed store errors (IO: stats the directory).

A missing root is `Unavailable` on every operation, never an empty store: an unmounted
drive must not look like a bucket whose objects were all deleted.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dropbeard.core.errors import NotFound, StoreError, Unauthorized, Unavailable
from dropbeard.store.base import ObjectInfo, validate_key

#: A NAS that went away or a full disk: transient from the store's point of view.
TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ESTALE, errno.ENOTCONN, errno.ETIMEDOUT}
    | {errno.EHOSTDOWN, errno.EHOSTUNREACH}
)
#: What opening or stating a path that is not there (or not a file) raises.
MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


def etag_of(st: os.stat_result) -> str:
    """hex `<st_ino>-<st_mtime_ns>-<st_size>`; see `dropbeard.store.localwriter` for why
    every write changes it."""
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def object_info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key=key, size=st.st_size, etag=etag_of(st), last_modified=st.st_mtime)


class LocalRoot:
    """The root directory `path` of a store; every method that takes `doing` and a key
    (or listing prefix) `what` names them in the errors it raises or makes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def path_of(self, key: str) -> str:
        """The file of `key` (validated)."""
        return os.path.join(self.path, *validate_key(key).split("/"))

    def check_mounted(self, doing: str, what: str) -> None:
        """Raise Unavailable unless the root is a directory that is there."""
        try:
            st = os.stat(self.path)
        except OSError as err:
            if not isinstance(err, MISSING):
                raise self.store_error(err, doing, what) from err
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise Unavailable(
                f"{doing} {what}: store directory {self.path} does not exist (not mounted?)",
                what,
            )

    def store_error(
        self, err: OSError, doing: str, what: str, kind: type[StoreError] = StoreError
    ) -> StoreError:
        """The typed error for `err`: Unauthorized, Unavailable (transient), else `kind`."""
        message = f"{doing} {what} in {self.path}: {err.strerror or err}"
        if isinstance(err, PermissionError):
            return Unauthorized(message, what)
        if err.errno in TRANSIENT_ERRNOS:
            return Unavailable(message, what)
        return kind(message, what)

    def store_errors(self, doing: str, what: str) -> Callable[[OSError], StoreError]:
        """`store_error` for `doing` on `what`, for a copy to raise."""
        return lambda err: self.store_error(err, doing, what)

    @contextmanager
    def translating(self, doing: str, key: str, *, missing_is_absent: bool) -> Iterator[None]:
        """OSError -> typed store error. A vanished root is Unavailable, never NotFound."""
        try:
            yield
        except MISSING as err:
            self.check_mounted(doing, key)
            if missing_is_absent:
                raise NotFound(f"{doing} {key} in {self.path}: no such object", key) from err
            raise self.store_error(err, doing, key) from err
        except OSError as err:
            raise self.store_error(err, doing, key) from err
