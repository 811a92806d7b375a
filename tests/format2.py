"""A minimal format-2 writer, written from SPEC section 1 and independent of dropbeard's
code, so the standalone reader (docs/read_bucket.py) can be tested before dropbeard writes
format 2: canonical JSON tree nodes keyed by their SHA-256, directories over 128 entries
cut into pages (and index levels) by the SPEC's rule, files over 16 MiB as chunk lists,
a snapshot, a head and a registry."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PAGE_OVER = 128  # a directory (or an index) with more entries than this is paged
PAGE_MAX = 128  # a page never holds more entries than this
CUT_BELOW = 2048  # cut after a name whose SHA-256 starts with a 16-bit word below this
CHUNK_OVER = 16 << 20  # files over 16 MiB are stored as chunks
CHUNK = 4 << 20  # this writer cuts at fixed offsets: valid, only deduplicates less

Put = Callable[[str, bytes], None]


@dataclass
class File:
    data: bytes
    mode: int = 0o644
    mtime_ns: int = 1_747_936_150_000_000_000


@dataclass
class Link:
    target: str


@dataclass
class Folder:
    children: dict[str, File | Link | Folder] = field(default_factory=dict)
    mode: int = 0o755


def describe(path: Path) -> Folder:
    """The folder on disk as the writer's input (never following symlinks)."""
    folder = Folder(mode=stat.S_IMODE(os.lstat(path).st_mode))
    for item in os.scandir(path):
        st = item.stat(follow_symlinks=False)
        name = unicodedata.normalize("NFC", item.name)
        if item.is_symlink():
            folder.children[name] = Link(os.readlink(item.path))
        elif item.is_dir(follow_symlinks=False):
            folder.children[name] = describe(Path(item.path))
        else:
            data = Path(item.path).read_bytes()
            folder.children[name] = File(data, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return folder


def canonical(obj: object) -> bytes:
    """SPEC 1: UTF-8, no insignificant whitespace, fields in the order they were added."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sharded(kind: str, sha: str) -> str:
    return f"{kind}/{sha[:2]}/{sha[2:4]}/{sha}"


def cut(items: list[dict], first: Callable[[dict], str]) -> list[list[dict]]:
    """SPEC 1.1: cut after every item whose name's SHA-256 has a first big-endian 16-bit
    word below 2048, and in any case after 128 items (dropbeard's numbers: see
    dropbeard.core.treepages)."""
    groups: list[list[dict]] = [[]]
    for item in items:
        groups[-1].append(item)
        word = int.from_bytes(hashlib.sha256(first(item).encode()).digest()[:2], "big")
        if word < CUT_BELOW or len(groups[-1]) == PAGE_MAX:
            groups.append([])
    return [g for g in groups if g]


@dataclass
class Writer:
    put: Put
    root_id: str = "r1"
    device_id: str = "laptop"
    written: dict[str, bytes] = field(default_factory=dict)  # key -> bytes, every object
    counter: int = 0
    files: int = 0
    bytes: int = 0

    def store(self, key: str, data: bytes) -> None:
        full = f"roots/{self.root_id}/{key}"
        if self.written.get(full) != data:  # blobs and nodes: once each
            self.written[full] = data
            self.put(full, data)

    def node(self, obj: dict) -> str:
        data = canonical(obj)
        key = sha256(data)
        self.store(sharded("trees", key), data)
        return key

    def version(self) -> dict[str, int]:
        self.counter += 1
        return {self.device_id: self.counter}

    def entry(self, name: str, item: File | Link | Folder) -> dict:
        if isinstance(item, Link):
            return {"name": name, "type": "symlink", "target": item.target, "mode": 0o777,
                    "version": self.version()}  # fmt: skip
        if isinstance(item, Folder):
            return {"name": name, "type": "dir", "mode": item.mode, "version": self.version(),
                    "tree": self.directory(item)}  # fmt: skip
        e = {"name": name, "type": "file", "size": len(item.data), "mode": item.mode,
             "mtime_ns": item.mtime_ns, "sha256": sha256(item.data)}  # fmt: skip
        pieces = [item.data[i : i + CHUNK] for i in range(0, len(item.data), CHUNK)]
        if len(item.data) <= CHUNK_OVER:
            pieces = [item.data]
        else:
            e["chunks"] = [[sha256(p), len(p)] for p in pieces]
        for piece in pieces:
            self.store(sharded("blobs", sha256(piece)), piece)
        e["version"] = self.version()
        self.files, self.bytes = self.files + 1, self.bytes + len(item.data)
        return e

    def directory(self, folder: Folder) -> str:
        """The key of the folder's node (its index, when paged)."""
        names = sorted(folder.children, key=lambda n: n.encode())
        entries = [self.entry(n, folder.children[n]) for n in names]
        return self.listing(entries)

    def listing(self, entries: list[dict]) -> str:
        if len(entries) <= PAGE_OVER:
            return self.node({"format": 2, "entries": entries})
        pages = [
            {"first": page[0]["name"], "tree": self.node({"format": 2, "entries": page})}
            for page in cut(entries, lambda e: e["name"])
        ]
        while len(pages) > PAGE_OVER:
            pages = [
                {"first": group[0]["first"], "tree": self.node({"format": 2, "pages": group})}
                for group in cut(pages, lambda p: p["first"])
            ]
        return self.node({"format": 2, "pages": pages})

    def publish(self, folder: Folder, snapshot: str = "20260522T180500Z") -> str:
        """Every object of one publish, the head last; the root node's key."""
        self.files = self.bytes = 0
        tree = self.directory(folder)
        at = f"{snapshot[:4]}-{snapshot[4:6]}-{snapshot[6:11]}:{snapshot[11:13]}:{snapshot[13:]}"
        self.store(
            "devices/registry.json",
            canonical({"format": 2, "devices": {self.device_id: {
                "status": "active", "mode": "bidirectional", "registered_at": at}}}),
        )  # fmt: skip
        self.store(
            f"devices/{self.device_id}/snapshots/{snapshot}.json",
            canonical({"format": 2, "device_id": self.device_id, "snapshot": snapshot,
                       "tree": tree, "created_at": at, "files": self.files,
                       "bytes": self.bytes}),
        )  # fmt: skip
        self.store(
            f"devices/{self.device_id}/head.json",
            canonical({"format": 2, "device_id": self.device_id, "snapshot": snapshot,
                       "tree": tree, "published_at": at, "tombstone_seq": 0, "seen": {}}),
        )  # fmt: skip
        return tree
