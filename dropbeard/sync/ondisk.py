"""What is on disk at a path, as apply judges it before writing there: the item the scan
saw or not, a special file, an empty folder; and an OS error as a problem kind (IO: lstat
results, folder listings)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from dropbeard.core.errors import LocalFileError
from dropbeard.core.model import Entry
from dropbeard.sync.scan import LocalItem


def same_as_scanned(item: LocalItem, st: os.stat_result) -> bool:
    """True if `st` (an lstat) is still the item the scan recorded: same type and, for a
    file, the same size, times and inode."""
    if is_special(st):
        return False
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
    if kind != item.type:
        return False
    if kind != "file" or item.stat is None:
        return True
    s = item.stat
    return (s.size, s.mtime_ns, s.inode, s.ctime_ns) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
        st.st_ctime_ns,
    )


def is_special(st: os.stat_result) -> bool:
    """True for what is never tracked: FIFOs, sockets, devices."""
    return not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode))


def is_empty(folder: Path) -> bool:
    """True if `folder` lists nothing."""
    with os.scandir(folder) as listing:
        return next(listing, None) is None


def problem_kind(exc: OSError | LocalFileError) -> str:
    """The problem kind of a failed local write or delete."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission"
    if exc.errno == errno.ENOSPC:
        return "disk_full"
    if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
        return "invalid_name"
    return "io_error"


def special_message(rel: str) -> str:
    return f"{rel}: a special file (FIFO, socket or device) is in the way; it was left as it is"


def kept_folder_message(rel: str, entry: Entry) -> str:
    return (
        f"kept folder {rel}: it holds files this device does not track (or changed); "
        f"the {entry.type} from elsewhere was not written (type clash)"
    )
