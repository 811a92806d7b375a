"""One pass's access to the bases in state.sqlite, by path (IO: sqlite; call from a worker
thread). A pass loads the bases of the paths it reconciles and asks for the rest only by
folder, so it costs what changed; only a full reconcile reads them all.

`taken` are bases the pass took back from this device's head (`dropbeard.sync.recovery`)
that state.sqlite does not hold yet (a dry run records nothing): they hide its rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping

import msgspec

from dropbeard.core.model import Entry
from dropbeard.core.plan import Base, publishable
from dropbeard.sync.state import State

_DECODER = msgspec.json.Decoder(Base)


class Bases:
    """The bases as this pass starts from them (see the module docstring)."""

    def __init__(self, state: State, taken: Mapping[str, Base] | None = None) -> None:
        self._state = state
        self._taken = dict(taken or {})

    def of(self, paths: Iterable[str]) -> dict[str, Base]:
        """The bases of those of `paths` that have one."""
        wanted = set(paths)
        found = {p: _DECODER.decode(b) for p, b in self._state.bases_of(wanted).items()}
        found.update((p, b) for p, b in self._taken.items() if p in wanted)
        return found

    def below(self, folder: str) -> list[tuple[str, Base]]:
        """(path, base) of every path below `folder`, in path order."""
        found = {p: _DECODER.decode(b) for p, b in self._state.bases_below(folder)}
        prefix = folder + "/" if folder else ""
        found.update((p, b) for p, b in self._taken.items() if p.startswith(prefix))
        return sorted(found.items())

    def each(self) -> Iterator[tuple[str, Base]]:
        """Every (path, base), one at a time in path order: O(files), for a full rescan
        or reconcile."""
        taken = deque(sorted(self._taken.items()))
        for path, data in self._state.each_base():
            while taken and taken[0][0] < path:
                yield taken.popleft()
            if taken and taken[0][0] == path:
                yield taken.popleft()
            else:
                yield path, _DECODER.decode(data)
        yield from taken

    def every(self) -> dict[str, Base]:
        """Every base, by path (a full reconcile)."""
        return dict(self.each())

    def tracked_files(self) -> int:
        """How many files and symlinks are tracked (`core.safety.tracked_files`)."""
        return sum(1 for _, b in self.each() if b.entry is not None and b.entry.type != "dir")

    def listing(self) -> dict[str, Entry]:
        """What the agreed bases publish, by path: the listing this device published last
        (every path it left open this pass changes itself: `Plan.listing`)."""
        return {p: e for p, b in self.each() if (e := publishable(b)) is not None}
