"""The on-disk spelling of a path (IO: lists a directory only when the scan did not),
and whether a filesystem tells names apart by case (IO: one probe file).

Trees and state hold paths in NFC; a name made on macOS is spelled NFD on disk, and
on a Linux disk both spellings are distinct names. Every operation on a path therefore
goes to the spelling the disk already holds (SPEC 2, 4 step 2): writing to the NFC
spelling would leave the file unchanged and make a twin beside it.
"""

from __future__ import annotations

import os
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from dropbeard.core.paths import case_clashes
from dropbeard.core.plan import Plan
from dropbeard.core.problems import Problem


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
        #: NFC folder path -> its disk spelling, as found (the listings never change)
        self._folders: dict[str, str] = {}

    def disk(self, rel: str) -> str:
        """The relative path to use on disk for the NFC path `rel`."""
        item = self.scanned.get(rel)
        if item is not None:
            return item.disk_path or rel
        parent, _, name = rel.rpartition("/")
        parent_disk = self._folder(parent) if parent else ""
        if not name.isascii() and not self._listed(parent):
            name = self._names_in(parent_disk).get(name, name)
        return f"{parent_disk}/{name}" if parent_disk else name

    def _folder(self, rel: str) -> str:
        """`disk(rel)` for folder `rel`, worked out once: its files share it."""
        spelled = self._folders.get(rel)
        if spelled is None:
            spelled = self._folders[rel] = self.disk(rel)
        return spelled

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


def folds_case(folder: Path) -> bool:
    """True if the filesystem holding `folder` does not tell names apart by case: a file
    made there under one name is found under the same name in other case. False if the
    probe cannot be made (nothing can be written there then anyway)."""
    name = f"case-probe-{uuid.uuid4().hex}"
    probe = folder / f"{name}-Aa"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return False
    os.close(fd)
    try:
        return os.path.lexists(folder / f"{name}-aA")
    finally:
        probe.unlink(missing_ok=True)


def case_problems(plan: Plan, present: Iterable[str], folder: Path) -> list[Problem]:
    """On a filesystem that does not tell names apart by case (probed in `folder`), a
    problem for each path whose download or conflict copy would land on the file of a
    path `present` on disk (and not deleted by `plan`) or of another download (SPEC 4.3):
    that path is not written and keeps its old base. None on a filesystem that does."""
    if not folds_case(folder):
        return []
    leaving = {d.path for d in plan.local_deletes}
    arriving = {d.path: d.path for d in plan.downloads}
    arriving.update((c.copy_path, c.path) for c in plan.conflict_copies)
    clashes = case_clashes((p for p in present if p not in leaving), arriving)
    return [
        Problem(
            path=arriving[path],
            kind="case_collision",
            message=f"cannot create {path}: this filesystem does not tell it apart from"
            f" {holder} (names differ only in case)",
        )
        for path, holder in sorted(clashes.items())
    ]
