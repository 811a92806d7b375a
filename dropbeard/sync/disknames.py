"""The on-disk spelling of a path (IO: lists a directory only when the scan did not).

Manifests and state hold paths in NFC; a name made on macOS is spelled NFD on disk, and
on a Linux disk both spellings are distinct names. Every operation on a path therefore
goes to the spelling the disk already holds (SPEC 2, 4 step 2): writing to the NFC
spelling would leave the file unchanged and make a twin beside it.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol


class Scanned(Protocol):
    """What the scan recorded for a path (`dropbeard.sync.scan.LocalItem`)."""

    @property
    def type(self) -> str: ...
    @property
    def disk_path(self) -> str | None: ...


class DiskNames:
    """Maps NFC relative paths to the relative paths to use on disk under `root`.

    A path the scan recorded (`scanned`) has its recorded spelling. Below it, or for a
    path the scan did not reach, each name keeps the spelling of an existing entry with
    the same NFC name, found by listing its folder — only for a non-ASCII name in a folder
    the scan did not list (a folder it recorded was listed whole). A name nothing on disk
    spells yet is created in NFC. Safe to share between the threads of one apply.
    """

    def __init__(self, root: Path, scanned: Mapping[str, Scanned]) -> None:
        self.root = root
        self.scanned = scanned
        self._listings: dict[str, dict[str, str]] = {}

    def disk(self, rel: str) -> str:
        """The relative path to use on disk for the NFC path `rel`."""
        item = self.scanned.get(rel)
        if item is not None:
            return item.disk_path or rel
        parent, _, name = rel.rpartition("/")
        parent_disk = self.disk(parent) if parent else ""
        if not name.isascii() and not self._listed(parent):
            name = self._names_in(parent_disk).get(name, name)
        return f"{parent_disk}/{name}" if parent_disk else name

    def _listed(self, parent: str) -> bool:
        item = self.scanned.get(parent) if parent else None
        return item is not None and item.type == "dir"

    def _names_in(self, folder: str) -> dict[str, str]:
        """NFC name -> on-disk name of the non-ASCII entries of `folder`."""
        names = self._listings.get(folder)
        if names is None:
            try:
                listed = os.listdir(self.root / folder if folder else self.root)
            except OSError:  # missing or unreadable: nothing to keep the spelling of
                listed = []
            names = {}
            for n in listed:
                if not n.isascii():
                    nfc = unicodedata.normalize("NFC", n)
                    if nfc == n or nfc not in names:  # the exact spelling, if there, wins
                        names[nfc] = n
            self._listings[folder] = names
        return names
