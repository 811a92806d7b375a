"""LocalStore's listing walk: the files under a key prefix in S3 order (UTF-8 bytes of the
key), found lazily (IO: reads directories; the store runs it in threads)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from dropbeard.core.errors import StoreError
from dropbeard.store.base import RESERVED_PREFIX

#: A found object (its key and stat) or, when rolling up, a prefix ending in '/'.
Found = tuple[str, os.stat_result] | str


def split_prefix(prefix: str) -> tuple[str, str]:
    """('a/b/', 'c') for prefix 'a/b/c': the directory to walk and the name filter in it."""
    dir_part, _, name = prefix.rpartition("/")
    bad = prefix.startswith("/") or "\x00" in prefix
    if dir_part:
        segments = dir_part.split("/")
        bad = bad or any(s in ("", ".", "..") for s in segments)
        bad = bad or segments[0].startswith(RESERVED_PREFIX)
    if bad:
        raise ValueError(f"invalid listing prefix {prefix!r}")
    return (dir_part + "/" if dir_part else ""), name


def walk(
    root: str | os.PathLike[str],
    dir_key: str,
    name: str,
    after: bytes | None,
    roll_up: bool,
    fail: Callable[[OSError], StoreError],
) -> Iterator[Found]:
    """Objects under directory `dir_key` ('' or 'a/b/') of `root` whose name there starts
    with `name`, sorting after `after`, in UTF-8 byte order of key; with `roll_up`, the
    subdirectories holding such objects as prefixes instead. `fail` makes the store error
    for an OSError."""
    for full, is_dir, path in _children(root, dir_key, fail):
        if not full[len(dir_key) :].startswith(name):
            continue
        raw = full.encode()
        if is_dir:
            # every key below sorts after `raw`; skip the subtree if all are <= after
            if after is not None and raw <= after and not after.startswith(raw):
                continue
            below = walk(root, full, "", after, False, fail)
            if not roll_up:
                yield from below
            elif next(below, None) is not None:  # an empty directory is no prefix
                yield full
        elif after is None or raw > after:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue  # deleted while we listed
            except OSError as err:
                raise fail(err) from err
            yield full, st


def _children(
    root: str | os.PathLike[str], dir_key: str, fail: Callable[[OSError], StoreError]
) -> list[tuple[str, bool, str]]:
    """(key, or key + '/' for a directory; is_dir; path) of the entries of `dir_key`,
    in UTF-8 byte order. Temp files, non-UTF-8 names and special files are skipped."""
    children: list[tuple[bytes, str, bool, str]] = []
    try:
        with os.scandir(os.path.join(root, dir_key)) as it:
            for entry in it:
                if not dir_key and entry.name.startswith(RESERVED_PREFIX):
                    continue
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_dir and not entry.is_file():
                    continue
                full = dir_key + entry.name + ("/" if is_dir else "")
                try:
                    raw = full.encode()
                except UnicodeEncodeError:
                    continue
                children.append((raw, full, is_dir, entry.path))
    except (FileNotFoundError, NotADirectoryError):
        return []  # prefix names no directory, or it vanished (root checked per page)
    except OSError as err:
        raise fail(err) from err
    children.sort()
    return [(full, is_dir, path) for _, full, is_dir, path in children]
