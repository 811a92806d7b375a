"""Reading a tree's nodes ahead of a walk that needs them, many at a time (IO: through
`sync.trees.TreeStore`).

A walk (or the one-sided part of a diff) reads a folder's node, then its first subfolder's,
and so on: one round trip per node when each is read as it is reached, which over a
30 ms link makes 800 folders cost 25 s. `ReadAhead` keeps the nodes a walk will need
next, in the order it will reach them (tree order: a folder's pages and subfolders before
the folders after it), and whenever the walk reaches a node not in memory yet, loads that
node together with up to `BATCH` of the next ones concurrently. The nodes those reveal
join the queue, so a tree of any shape costs about its depth plus nodes / `BATCH` round
trips. A diff of two trees queues, for a folder on both sides, only both nodes of each
subfolder whose nodes differ (`reached_pair`), and below those once both are loaded:
the nodes the diff reads anyway, and no other.

Bounded: a load happens only when the walk misses, loads at most `BATCH` nodes, and
none ahead while `MAX_AHEAD` loaded nodes wait for the walk; at most `MAX_QUEUED` nodes
are queued (the rest are read when the walk reaches them); one load looks at most
`MAX_LOOKS` queued nodes (a node on its own path, which a hostile bucket may hold, does
not make a load loop). A node that fails to load is simply left for the walk: it reads
it again when it reaches it, and reports the failure as it would have without read-ahead.
"""

from __future__ import annotations

import heapq
import itertools

from dropbeard.core.errors import DropbeardError
from dropbeard.core.tree import Node
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.workers import for_each

#: Nodes loaded at once when the walk reaches one not in memory (a few MiB of nodes at
#: most; `TreeStore` keeps 16 MiB of them).
BATCH = 128
#: Nodes loaded ahead and not reached by the walk yet, at most (batches loaded when the
#: walk missed a node it had not known of yet, e.g. one level down: tens of MiB at most,
#: usually far less; `TreeStore` keeps them in memory as long as it can).
MAX_AHEAD = 4 * BATCH
#: Nodes waiting in the queue at most (a few hundred KiB).
MAX_QUEUED = 8192
#: Queued nodes one load looks at (those in memory already are opened, not loaded).
MAX_LOOKS = 4 * BATCH
#: Folders deeper than this are not read ahead (the walk refuses them: treeread.MAX_DEPTH).
MAX_DEPTH = 256

Order = tuple[str, ...]


class ReadAhead:
    """The nodes one walk will reach, loaded ahead of it through `trees`."""

    def __init__(self, trees: TreeStore) -> None:
        self.trees = trees
        #: (order, tie-break, digest, folder the node lists or None): least order first;
        #: a node with no folder is one side of a changed folder: what it leads to is
        #: read only if it changed too (`reached_pair`), so it is not queued when loaded
        self._queue: list[tuple[Order, int, str, Order | None]] = []
        self._queued: set[str] = set()
        self._ties = itertools.count()
        #: nodes being loaded by a batch -> the folder each lists (or None, as queued)
        self._folders: dict[str, Order | None] = {}
        #: nodes loaded ahead that the walk has not reached yet
        self._ahead: set[str] = set()
        #: (old, new) nodes of a changed folder queued -> the folder: once both are in
        #: memory, what changed below them is queued too (`reached_pair`)
        self._pairs: dict[tuple[str, str], Order] = {}
        self.loads = 0  # batches loaded (for tests)

    def reached(self, folder: Order, node: Node) -> None:
        """The walk opened `node` of `folder` (its path's names): queue what it leads to."""
        for order, digest, below in _children(folder, node):
            if self.trees.peek(digest) is None:
                self._push(order, digest, below)

    def reached_pair(self, folder: Order, old: Node, new: Node) -> None:
        """A diff opened both sides' nodes of `folder`: queue the nodes of its subfolders
        whose nodes differ (the diff reads those, and only those, next)."""
        if old.entries is None or new.entries is None:
            return  # paged: the diff reads only the pages that differ
        before = {e.name: e.tree for e in old.entries if e.tree is not None}
        for entry in new.entries:
            was = before.pop(entry.name, None)
            if was != entry.tree:
                below = (*folder, entry.name)
                if was is not None and entry.tree is not None:
                    self._push_pair(below, was, entry.tree)
                else:  # on one side only (or turned into a file): read whole
                    digest = was if entry.tree is None else entry.tree
                    if digest is not None and self.trees.peek(digest) is None:
                        self._push(below, digest, below)
        for name, was in before.items():  # folders gone from the new side: read whole
            if self.trees.peek(was) is None:
                self._push((*folder, name), was, (*folder, name))

    async def need(self, *digests: str) -> None:
        """The walk is about to read nodes `digests`: those not in memory are loaded, with
        the next nodes of the queue, at once."""
        for digest in digests:
            self._ahead.discard(digest)
            self._queued.discard(digest)
        missing = [d for d in dict.fromkeys(digests) if self.trees.peek(d) is None]
        if not missing:
            return
        room = min(BATCH, MAX_AHEAD - len(self._ahead) - len(self._folders)) - len(missing)
        batch = [*missing, *self._next_batch(missing, room)]
        self.loads += 1
        await for_each(batch, self._load, min(len(batch), self.trees.reads))
        for (was, now), folder in list(self._pairs.items()):
            old, new = self.trees.peek(was), self.trees.peek(now)
            if old is not None and new is not None:
                del self._pairs[was, now]
                self.reached_pair(folder, old, new)

    def _push_pair(self, folder: Order, was: str, now: str) -> None:
        if len(self._pairs) < MAX_QUEUED:
            self._pairs[was, now] = folder
        for digest in (was, now):
            if self.trees.peek(digest) is None:
                self._push(folder, digest, None)

    def _push(self, order: Order, digest: str, folder: Order | None) -> None:
        if digest in self._queued or len(self._queue) >= MAX_QUEUED:
            return
        if len(order) > MAX_DEPTH + 1:
            return
        self._queued.add(digest)
        heapq.heappush(self._queue, (order, next(self._ties), digest, folder))

    def _next_batch(self, exclude: list[str], room: int) -> list[str]:
        batch: list[str] = []
        looks = 0
        while self._queue and len(batch) < room and looks < MAX_LOOKS:
            looks += 1
            _, _, digest, folder = heapq.heappop(self._queue)
            self._queued.discard(digest)
            if digest in exclude or digest in batch:
                continue
            node = self.trees.peek(digest)
            if node is not None:
                if folder is not None:
                    self.reached(folder, node)
            else:
                batch.append(digest)
                self._folders[digest] = folder
        return batch

    async def _load(self, digest: str) -> None:
        try:
            node = await self.trees.node(digest)
        except DropbeardError:
            # the walk reads it again when it gets there, and reports it then
            self._folders.pop(digest, None)
            return
        if digest not in self._folders:
            return  # one the walk asked for: it opens it itself
        folder = self._folders.pop(digest)
        self._ahead.add(digest)
        if folder is not None:
            self.reached(folder, node)


def _children(folder: Order, node: Node) -> list[tuple[Order, str, Order]]:
    """(order, digest, folder it lists) of the nodes `node` of `folder` leads to: its
    pages (in `folder`) and its subfolders' nodes."""
    if node.pages is not None:
        return [((*folder, p.first), p.tree, folder) for p in node.pages]
    found: list[tuple[Order, str, Order]] = []
    for entry in node.entries or []:
        if entry.tree is not None:
            below = (*folder, entry.name)
            found.append((below, entry.tree, below))
    return found
