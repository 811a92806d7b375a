"""Where one apply finds a blob's bytes on local disk instead of in the bucket (a whole
file, or a chunk of a large one), and which blobs it is fetching right now (IO: reads and
hashes local files, in a worker thread)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Container, Iterable, Sequence
from pathlib import Path

import anyio
import msgspec

from dropbeard.core.chunking import Chunk, chunk_offsets
from dropbeard.core.errors import IntegrityError
from dropbeard.sync.chunkdownload import ChunkSource
from dropbeard.sync.scan import ScanResult


class LocalSources(msgspec.Struct):
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
    have: dict[str, Path] = msgspec.field(default_factory=dict)
    #: sha256 -> set when the in-flight fetch of that blob ends (landed or failed); made
    #: only once a second write of the same blob waits on it (None until then)
    fetching: dict[str, anyio.Event | None] = msgspec.field(default_factory=dict)
    #: deleted files kept in tmp/ as sources until the writes are done
    parked: list[Path] = msgspec.field(default_factory=list)
    #: chunk sha256 -> where a local file held it when last hashed (only the chunks this
    #: apply's writes need: `index_chunks`); a reader re-verifies the bytes
    chunks: dict[str, ChunkSource] = msgspec.field(default_factory=dict)
    #: the files `chunks` points into
    chunk_files: set[Path] = msgspec.field(default_factory=set)

    def index(self, root: Path, scanned: ScanResult, wanted: Container[str] = ()) -> None:
        """Remember which scanned files hold which bytes, and where they hold the chunks
        in `wanted`."""
        for path, item in scanned.items.items():
            if item.type == "file" and item.sha256:
                file = root / (item.disk_path or path)
                self.have.setdefault(item.sha256, file)
                if item.chunks is not None:
                    self.index_chunks([(file, item.chunks)], wanted)

    def index_all(
        self,
        root: Path,
        scanned: ScanResult,
        wanted: set[str],
        local_chunks: Callable[[], Iterable[tuple[str, Sequence[Chunk]]]] | None,
    ) -> None:
        """`index`, then where the files `local_chunks()` names ((path, chunk list), as
        the stat cache knows them) hold the chunks in `wanted`, asked only if some are."""
        self.index(root, scanned, wanted)
        if wanted and local_chunks is not None:
            self.index_chunks(((root / p, c) for p, c in local_chunks()), wanted)

    def index_chunks(
        self, files: Iterable[tuple[Path, Iterable[Chunk]]], wanted: Container[str]
    ) -> None:
        """Remember where `files` hold the chunks in `wanted` (the first place wins)."""
        for file, chunks in files:
            listed = list(chunks)
            for chunk, offset in zip(listed, chunk_offsets(listed), strict=True):
                if chunk.sha256 in wanted and chunk.sha256 not in self.chunks:
                    self.chunks[chunk.sha256] = ChunkSource(file, offset, chunk.size)
                    self.chunk_files.add(file)

    def find_chunk(self, sha: str) -> ChunkSource | None:
        """A local place believed to hold chunk `sha` (`download_chunks`'s `find`)."""
        return self.chunks.get(sha)

    def is_source(self, sha: str | None, file: Path) -> bool:
        """True if `file` is where this apply would copy blob `sha` (or a chunk) from."""
        return (sha is not None and self.have.get(sha) == file) or file in self.chunk_files

    def park(self, sha: str | None, file: Path, parked: Path) -> None:
        """The deleted source `file` moved to `parked` (in tmp/): copy from there, its
        blob and its chunks; removed at the end."""
        if sha is not None and self.have.get(sha) == file:
            self.have[sha] = parked
        if file in self.chunk_files:
            for chunk, source in self.chunks.items():
                if source.path == file:
                    self.chunks[chunk] = source._replace(path=parked)
            self.chunk_files.add(parked)
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
            event = self.fetching[sha]
            if event is None:
                event = self.fetching[sha] = anyio.Event()
            await event.wait()
        if sha in self.have:
            return self.have[sha]
        self.fetching[sha] = None
        return None

    def release(self, sha: str) -> None:
        """The caller's fetch of `sha` ended: wake those waiting in `claim`."""
        event = self.fetching.pop(sha, None)
        if event is not None:
            event.set()


def copy_verified(source: Path, dest: Path, sha: str) -> None:
    """Copy `source` to `dest` (created readable by its owner alone) if its bytes still
    hash to `sha`; IntegrityError (and no `dest`) if they do not."""
    h = hashlib.sha256()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    with open(source, "rb") as src, open(os.open(dest, flags, 0o600), "wb") as out:
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
