"""Which request shapes are known, and learning them (IO-free; anyio only): by kind of
request, the shape to stamp requests from, None for a kind that stays with botocore, or
nothing yet (`dropbeard.store.s3objects` learns it from requests botocore sends).

A shape is kept once two requests botocore built showed it alike (a header that changes
per request shows up as two shapes); a request that does not stamp back, or two unlike
shapes, leave that kind with botocore for good. While a kind is being learnt, LEARNERS
of its requests go through botocore at once and the others wait for what those show,
instead of each going through botocore too: a first upload starts dozens of PUTs at
once, and a request botocore builds costs several times the CPU of a stamped one. A
learning request that fails (an error answer teaches nothing, but for the few a server
gives only to a request it authenticated: `s3answers.authenticated`) lets the waiting
ones go, each through botocore, until a shape is learnt.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import anyio

#: Requests of one kind botocore builds at once while its shape is being learnt.
LEARNERS = 2

S = TypeVar("S")


class Shapes(dict[str, S | None], Generic[S]):
    """Kind of request -> its shape, or None: that kind stays with botocore. A kind not
    in it is still to be learnt."""

    def __init__(self, alike: Callable[[S, S], bool] = operator.eq) -> None:
        super().__init__()
        self._alike = alike  # whether two sightings show one shape
        self._candidates: dict[str, S] = {}  # seen once, waiting to be seen again
        self._learners: dict[str, int] = {}  # requests through botocore learning a shape
        self._ended: dict[str, anyio.Event] = {}  # set as each of those ends
        self._ungated: set[str] = set()  # kinds whose learning request failed

    async def wanted(self, kind: str) -> S | None:
        """The shape to stamp a request of `kind` from; None to send it through botocore:
        settled there, or to learn the shape (as one of LEARNERS at a time, while the
        other requests of its kind wait for what they show)."""
        while (
            kind not in self
            and kind not in self._ungated
            # the shapes on their way: in flight, and one already seen
            and self._learners.get(kind, 0) + (kind in self._candidates) >= LEARNERS
        ):
            ended = self._ended.get(kind)
            if ended is None:
                ended = self._ended[kind] = anyio.Event()
            await ended.wait()
        return self.get(kind)

    @contextmanager
    def learning(self, kind: str) -> Iterator[None]:
        """Around a request of `kind` sent through botocore to learn its shape."""
        self._learners[kind] = self._learners.get(kind, 0) + 1
        try:
            yield
        except BaseException:
            self._ungated.add(kind)
            raise
        finally:
            self._learners[kind] -= 1
            ended = self._ended.pop(kind, None)
            if ended is not None:
                ended.set()

    def seen(self, kind: str, shape: S) -> None:
        """`shape` was seen once before (by an earlier process): one more like it settles
        it."""
        if kind not in self:
            self._candidates[kind] = shape

    @property
    def candidates(self) -> dict[str, S]:
        """The shapes seen once, by kind, waiting to be seen again."""
        return dict(self._candidates)

    def learned(self, kind: str, shape: S | None) -> None:
        """What a request of `kind` botocore built showed (None: it did not stamp back)."""
        self._ungated.discard(kind)
        candidate = self._candidates.pop(kind, None)
        if shape is None or (candidate is not None and not self._alike(candidate, shape)):
            self[kind] = None
        elif candidate is None:
            self._candidates[kind] = shape
        else:
            self[kind] = shape


__all__ = ["LEARNERS", "Shapes"]
