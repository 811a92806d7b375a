"""Whether the watcher can see every folder of a root: on Linux, inotify needs one watch
per folder and `fs.inotify.max_user_watches` caps them per user; past it, changes in
some folders go unnoticed until the periodic rescan (IO: reads /proc, lists folders).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import msgspec

from dropbeard.sync.root import DOT

LIMIT_FILE = Path("/proc/sys/fs/inotify/max_user_watches")
#: What the warning suggests: the value most distributions now ship.
SUGGESTED = 524_288


def watch_limit() -> int | None:
    """The per-user inotify watch limit, or None where there is none to read (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return int(LIMIT_FILE.read_text().strip())
    except (OSError, ValueError):
        return None


def count_folders(root: Path, *, stop_after: int) -> int:
    """The folders under `root`, itself included (never following symlinks, skipping
    `.dropbear/`); counting stops once past `stop_after`."""
    count, stack = 0, [str(root)]
    while stack and count <= stop_after:
        folder = stack.pop()
        count += 1
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name == DOT and folder == str(root):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue  # unreadable: the scan reports it
    return count


class WatchShortage(msgspec.Struct, frozen=True):
    """`root` holds more than `limit` folders: the watcher cannot watch them all."""

    root: str
    limit: int

    @property
    def message(self) -> str:
        return (
            f"{self.root} has more folders than inotify may watch "
            f"(fs.inotify.max_user_watches = {self.limit}): changes in some folders are "
            "noticed only by the periodic full rescan; raise the limit with: "
            f"{self.command}"
        )

    @property
    def command(self) -> str:
        setting = f"fs.inotify.max_user_watches={max(SUGGESTED, self.limit * 4)}"
        return f"sudo sysctl {setting} && echo {setting} | sudo tee /etc/sysctl.d/90-dropbeard.conf"


def watch_shortage(root: Path) -> WatchShortage | None:
    """A WatchShortage if `root` needs more watches than the limit allows, else None."""
    limit = watch_limit()
    if limit is None:
        return None
    if count_folders(root, stop_after=limit) <= limit:
        return None
    return WatchShortage(str(root), limit)
