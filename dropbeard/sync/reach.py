"""Reachability: every tree node (pages and index pages included) and every blob or chunk
reached from a set of root trees (IO: node reads through `sync.trees.TreeStore`).

Each distinct node is read once however many roots share it, so marking thirty days of
snapshots of one folder costs the nodes that changed between them, not thirty walks.
The walk goes level by level over the nodes not seen yet (at most `concurrency` reads
at once); memory holds the keys reached and one level's frontier, never a whole tree.

Given a listing of what the bucket holds (`verify`), a node or blob it does not list is
*missing* without being read (a node in the local cache may be gone from the bucket);
a node whose bytes do not match its key or are not a node is *corrupt*. Either is a
`Finding` naming the key and the paths that reference it; a node that cannot be read is
not descended into, and the walk goes on with the rest.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable

import anyio
import msgspec

from dropbeard.core.chunking import Chunk
from dropbeard.core.errors import FormatError, IntegrityError, NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.core.sweep import Listed
from dropbeard.core.tree import MAX_NODE_BYTES, Node, TreeEntry
from dropbeard.store.base import Store
from dropbeard.sync.devicelog import as_listed
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.workers import for_each

#: Paths kept per finding (a blob shared by many files need not list them all).
PATHS_PER_FINDING = 5


class Where(msgspec.Struct, frozen=True):
    """A place in the history: a path (the folder of a node, the file of a blob) as one
    device's snapshot holds it (`label`: `laptop 20260522T180500Z`, or `laptop head`)."""

    label: str
    path: str

    def __str__(self) -> str:
        return f"{self.path or '/'} ({self.label})"


class Finding(msgspec.Struct):
    """A referenced object that is missing or corrupt."""

    kind: str  # "tree" or "blob"
    key: str  # its bucket key
    problem: str  # "missing", or the one line saying what is wrong with it
    where: list[Where] = msgspec.field(default_factory=list)

    def line(self) -> str:
        places = ", ".join(str(w) for w in self.where)
        return f"{self.kind} {self.key}: {self.problem}; referenced by {places}"


class _RefEntry(msgspec.Struct, frozen=True):
    name: str = ""
    type: str = ""
    sha256: str | None = None
    chunks: list[Chunk] | None = None
    tree: str | None = None


class _RefPage(msgspec.Struct, frozen=True):
    tree: str


class _Refs(msgspec.Struct, frozen=True):
    """What a node references, as `Marker(light=True)` reads it."""

    entries: list[_RefEntry] | None = None
    pages: list[_RefPage] | None = None


_refs_decoder = msgspec.json.Decoder(_Refs)


class _Visit(msgspec.Struct, frozen=True):
    digest: str
    where: Where


class Listing(msgspec.Struct):
    """What one listing of `trees/` and `blobs/` showed: digests, and blob sizes."""

    trees: set[str] = msgspec.field(default_factory=set)
    blobs: dict[str, int] = msgspec.field(default_factory=dict)


class Marker:
    """Marks what roots reach. `nodes` and `blobs` grow with every `mark`; a node marked
    before is not read again. With `listing`, references it lacks become findings;
    with `blob_places`, the first place each blob was reached is remembered (for a
    later re-hash to name a path); `light` reads only each node's references (gc)."""

    def __init__(
        self,
        trees: TreeStore,
        *,
        listing: Listing | None = None,
        blob_places: bool = False,
        light: bool = False,
        concurrency: int = 16,
    ) -> None:
        self.trees = trees
        self.listing = listing
        self.concurrency = concurrency
        self.nodes: set[str] = set()
        self.blobs: set[str] = set()
        self.findings: dict[str, Finding] = {}
        self.places: dict[str, Where] | None = {} if blob_places else None
        self.light = light
        self.read = 0  # nodes read in light mode

    @property
    def complete(self) -> bool:
        """True when every node reached could be read (nothing below one is unknown)."""
        return not any(f.kind == "tree" for f in self.findings.values())

    async def mark(self, roots: Iterable[tuple[str, str]]) -> None:
        """Mark everything reached from `roots`: (label, root node digest) pairs."""
        frontier = [_Visit(digest, Where(label, "")) for label, digest in roots]
        while frontier:
            level: list[_Visit] = []
            todo = []
            for visit in frontier:
                if visit.digest not in self.nodes:
                    self.nodes.add(visit.digest)
                    todo.append(visit)
            await for_each(todo, functools.partial(self._visit, below=level), self.concurrency)
            frontier = level

    async def _visit(self, visit: _Visit, below: list[_Visit]) -> None:
        key = self.trees.key(visit.digest)
        if self.listing is not None and visit.digest not in self.listing.trees:
            self._find("tree", key, "missing", visit.where)
            return
        try:
            node: Node | _Refs
            node = await (self._refs(visit.digest) if self.light else self.trees.node(visit.digest))
        except NotFound:
            self._find("tree", key, "missing", visit.where)
            return
        except (IntegrityError, FormatError) as exc:
            self._find("tree", key, f"corrupt: {exc}", visit.where)
            return
        for page in node.pages or ():
            below.append(_Visit(page.tree, visit.where))
        folder, label = visit.where.path, visit.where.label
        bare = self.light or (self.listing is None and self.places is None)
        for entry in node.entries or ():
            if entry.tree is not None:
                if entry.tree not in self.nodes:
                    path = f"{folder}/{entry.name}" if folder else entry.name
                    below.append(_Visit(entry.tree, Where(label, path)))
            elif bare:
                if entry.chunks:
                    self.blobs.update(c.sha256 for c in entry.chunks)
                elif entry.sha256 is not None:
                    self.blobs.add(entry.sha256)
            elif entry.type == "file":
                assert isinstance(entry, TreeEntry)
                path = f"{folder}/{entry.name}" if folder else entry.name
                self._file(entry, Where(label, path))

    async def _refs(self, digest: str) -> _Refs:
        """Node `digest`'s references only, its bytes checked against its key but not
        every field (`light`): what gc needs, read at a fraction of the cost. A node
        that is no valid node is still marked through whatever it names, which only
        keeps more."""
        key = self.trees.key(digest)
        cache = self.trees.cache
        data = None if cache is None else await anyio.to_thread.run_sync(cache.read, digest)
        if data is None:
            try:
                data = await self.trees.store.get(key)
            except NotFound:
                raise NotFound(f"reading tree {key}: it is missing", key) from None
            if len(data) > MAX_NODE_BYTES or hashlib.sha256(data).hexdigest() != digest:
                raise IntegrityError(f"tree {key}: its bytes do not match its key", key)
            if cache is not None:
                await anyio.to_thread.run_sync(cache.write, digest, data)
        self.read += 1
        try:
            return _refs_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise FormatError(f"invalid tree {key}: {exc}") from None

    def _file(self, entry: TreeEntry, where: Where) -> None:
        assert entry.sha256 is not None and entry.size is not None
        parts = [(c.sha256, c.size) for c in entry.chunks or ()] or [(entry.sha256, entry.size)]
        for digest, size in parts:
            new = digest not in self.blobs
            self.blobs.add(digest)
            if self.places is not None and new:
                self.places[digest] = where
            if self.listing is None:
                continue
            listed = self.listing.blobs.get(digest)
            key = self.trees.keys.blob(digest)
            if listed is None:
                self._find("blob", key, "missing", where)
            elif listed != size:
                self._find("blob", key, f"corrupt: {listed} bytes, not {size}", where)

    def _find(self, kind: str, key: str, problem: str, where: Where) -> None:
        finding = self.findings.setdefault(key, Finding(kind, key, problem))
        if len(finding.where) < PATHS_PER_FINDING and where not in finding.where:
            finding.where.append(where)


class Contents(msgspec.Struct):
    """One listing of `trees/` and `blobs/`: what `verify` checks references against
    (`listing`), and for `gc` every object with its size and LastModified. Keys that are
    not a node's or blob's key are counted in `strays` and never touched."""

    listing: Listing = msgspec.field(default_factory=Listing)
    trees: list[Listed] = msgspec.field(default_factory=list)
    blobs: list[Listed] = msgspec.field(default_factory=list)
    strays: int = 0


async def list_contents(store: Store, keys: RootKeys, *, keep: bool = False) -> Contents:
    """List `trees/` and `blobs/` once each; with `keep`, every object is kept as well."""
    out = Contents()
    for prefix, is_tree, kept in (
        (keys.trees_prefix, True, out.trees),
        (keys.blobs_prefix, False, out.blobs),
    ):
        parse = keys.tree_sha256_of if is_tree else keys.sha256_of
        async for page in store.list(prefix):
            for info in page.objects:
                try:
                    digest = parse(info.key)
                except ValueError:
                    out.strays += 1
                    continue
                if is_tree:
                    out.listing.trees.add(digest)
                else:
                    out.listing.blobs[digest] = info.size
                if keep:
                    kept.append(as_listed(info))
    return out
