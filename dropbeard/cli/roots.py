"""Which roots a command works on: the one holding PATH; without PATH, the one holding the
current folder, else the daemon config's `[[roots]]` (IO: looks at folders, reads the
config)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from dropbeard.core.errors import UsageError
from dropbeard.daemon.settings import load_config
from dropbeard.sync.root import enclosing_root, find_root


class Chosen(msgspec.Struct, frozen=True):
    """The roots a command works on; `configured` when they are the config's `[[roots]]`
    (no PATH and the current folder is in no root), so output covers several roots."""

    roots: list[Path]
    configured: bool = False


def chosen_roots(path: Path | None, config: str | None) -> Chosen:
    """The roots to work on. A PATH inside no root is still returned (it is then reported
    offline: an unmounted drive must not look like a usage error); no PATH, no enclosing
    root and no configured root is a UsageError."""
    if path is not None:
        return Chosen([find_root(path)])
    here = enclosing_root(Path.cwd())
    if here is not None:
        return Chosen([here])
    cfg, where = load_config(config)
    if cfg is not None and cfg.roots:
        return Chosen([Path(entry.path) for entry in cfg.roots], configured=True)
    raise UsageError(f"not inside a dropbeard folder; give PATH (or list your roots in {where})")
