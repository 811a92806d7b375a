"""Reading a tree's nodes ahead of a walk that needs them, many at a time (IO: through
`sync.trees.TreeStore`).

A walk (or the one-sided part of a diff) reads a folder's node, then its first subfolder's,
and so on: one round trip per node when each is read as it is reached, which over a
30 ms link makes 800 folders cost 25 s. `ReadAhead` keeps the nodes a walk will need
next, in the order it will reach them (tree order: a folder's pages and subfolders before
the folders after it), and whenever the walk reaches a node not in memory yet, loads that
node together with up to `BATCH` of the next ones concurrently. The nodes those reveal
join the queue, so a tree of any shape costs about its depth plus nodes / `BATCH` round
trips.

Bounded: a load happens only when the walk misses, and loads at most `BATCH` nodes, so
the walk is never more than `BATCH` nodes ahead of itself; at most `MAX_QUEUED` nodes are
queued (the rest are read when the walk reaches them); one load looks at most
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
        #: (order, tie-break, digest, folder the node lists): least order first
        self._queue: list[tuple[Order, int, str, Order]] = []
        self._queued: set[str] = set()
        self._ties = itertools.count()
        #: nodes being loaded by a batch -> the folder each lists
        self._folders: dict[str, Order] = {}
        #: nodes loaded ahead that the walk has not reached yet
        self._ahead: set[str] = set()
        self.loads = 0  # batches loaded (for tests)

    def reached(self, folder: Order, node: Node) -> None:
        """The walk opened `node` of `folder` (its path's names): queue what it leads to."""
        for order, digest, below in _children(folder, node):
            if self.trees.peek(digest) is None:
                self._push(order, digest, below)

    async def need(self, digest: str) -> None:
        """The walk is about to read node `digest`: if it is not in memory, load it and the
        next nodes of the queue at once."""
        self._ahead.discard(digest)
        if self.trees.peek(digest) is not None:
            return
        self._queued.discard(digest)
        room = min(BATCH - 1, MAX_AHEAD - len(self._ahead) - len(self._folders))
        batch = [digest, *self._next_batch(digest, room)]
        self.loads += 1
        await for_each(batch, self._load, min(len(batch), self.trees.concurrency))

    def _push(self, order: Order, digest: str, folder: Order) -> None:
        if digest in self._queued or len(self._queue) >= MAX_QUEUED:
            return
        if len(folder) > MAX_DEPTH:
            return
        self._queued.add(digest)
        heapq.heappush(self._queue, (order, next(self._ties), digest, folder))

    def _next_batch(self, exclude: str, room: int) -> list[str]:
        batch: list[str] = []
        looks = 0
        while self._queue and len(batch) < room and looks < MAX_LOOKS:
            looks += 1
            _, _, digest, folder = heapq.heappop(self._queue)
            self._queued.discard(digest)
            if digest == exclude or digest in batch:
                continue
            node = self.trees.peek(digest)
            if node is not None:
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
        folder = self._folders.pop(digest, None)
        if folder is not None:
            self._ahead.add(digest)
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
