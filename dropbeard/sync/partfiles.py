"""The names of downloads in progress, written beside their destination (no IO).

A download fills a temporary file in the folder that will hold it and is renamed over its
name once verified, as rsync, rclone and Syncthing do, rather than in `.dropbear/tmp/`:
the rename stays inside one directory (no file-system-wide lock for a cross-directory
rename, and no EXDEV when a subfolder is another mount), and the new file's inode is
allocated near its folder's (on an ext4 without a journal, every file created in one
`tmp/` right after a folder was deleted walks past each inode freed in the last minutes:
seconds of system time per 10,000 files).

Every such name starts with PREFIX, which the scanner and the watcher never sync; it
carries a token drawn once per process, so a scan (which runs under the root's lock, SPEC
step 1) removes the ones a dead process left behind and never this process's own.
"""

from __future__ import annotations

import itertools
import secrets

#: Names starting with this are dropbeard's downloads in progress: never synced.
PREFIX = ".dropbear-part-"
_MINE = f"{PREFIX}{secrets.token_hex(6)}-"
_count = itertools.count()


def part_name() -> str:
    """A new name for a download in progress, unique within this process and against any
    other by its token."""
    return f"{_MINE}{next(_count)}"


def is_part(name: str) -> bool:
    return name.startswith(PREFIX)


def is_leftover(name: str) -> bool:
    """True for a download in progress that this process did not start: a leftover of an
    interrupted run, once the root's lock is held."""
    return name.startswith(PREFIX) and not name.startswith(_MINE)
