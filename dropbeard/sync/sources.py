"""Where one apply finds a blob's bytes on local disk instead of in the bucket, and which
blobs it is fetching right now (IO: reads and hashes local files, in a worker thread)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from dropbeard.core.errors import IntegrityError
from dropbeard.sync.scan import ScanResult


@dataclass
class LocalSources:
    """Where this apply finds a blob's bytes on local disk, so a file is copied instead of
    downloaded (a rename costs nothing), and which blobs are being fetched right now, so
    no blob is fetched twice in one pass.

    Shared by the concurrent writes of one `apply_plan`; every `claim` that returns None
    must be followed by one `release` of the same blob. A file is a source only while it
    holds the bytes it was registered with: the writer `drop`s it before replacing it, and
    a copy verifies the bytes anyway (`copy_verified`), so a stale source costs a
    download, never wrong bytes.
    """

    #: sha256 -> a verified local file holding those bytes
    have: dict[str, Path] = field(default_factory=dict)
    #: sha256 -> set when the in-flight fetch of that blob ends (landed or failed)
    fetching: dict[str, anyio.Event] = field(default_factory=dict)
    #: deleted files kept in tmp/ as sources until the writes are done
    parked: list[Path] = field(default_factory=list)

    def index(self, root: Path, scanned: ScanResult) -> None:
        """Remember which scanned files hold which bytes."""
        for path, item in scanned.items.items():
            if item.type == "file" and item.sha256:
                self.have.setdefault(item.sha256, root / (item.disk_path or path))

    def is_source(self, sha: str, file: Path) -> bool:
        """True if `file` is where this apply would copy blob `sha` from."""
        return self.have.get(sha) == file

    def park(self, sha: str, parked: Path) -> None:
        """A deleted source moved to `parked` (in tmp/): copy from there; removed at the end."""
        self.have[sha] = parked
        self.parked.append(parked)

    def add(self, sha: str, file: Path) -> None:
        """`file` was just written with blob `sha`'s verified bytes."""
        self.have.setdefault(sha, file)

    def drop(self, sha: str, file: Path) -> None:
        """`file` no longer holds blob `sha`'s bytes: never copy from it again."""
        if self.have.get(sha) == file:
            del self.have[sha]

    async def claim(self, sha: str) -> Path | None:
        """A verified local file with these bytes, waiting for an in-flight fetch of the
        same blob instead of fetching it twice; None means the caller fetches it."""
        while sha not in self.have and sha in self.fetching:
            await self.fetching[sha].wait()
        if sha in self.have:
            return self.have[sha]
        self.fetching[sha] = anyio.Event()
        return None

    def release(self, sha: str) -> None:
        """The caller's fetch of `sha` ended: wake those waiting in `claim`."""
        event = self.fetching.pop(sha, None)
        if event is not None:
            event.set()


def copy_verified(source: Path, dest: Path, sha: str) -> None:
    """Copy `source` to `dest` if its bytes still hash to `sha`; IntegrityError (and no
    `dest`) if they do not."""
    h = hashlib.sha256()
    with open(source, "rb") as src, open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != sha:
        dest.unlink(missing_ok=True)
        raise IntegrityError(f"copying {source}: it changed since it was scanned", str(source))


def remove_all(files: list[Path]) -> None:
    """Remove `files` (the parked sources), those already gone included."""
    for f in files:
        f.unlink(missing_ok=True)
