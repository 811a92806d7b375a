"""CountingStore: a wrapper that counts requests per operation kind (IO only through `inner`).

Tests and the benchmark wrap a store in it to prove claims such as "an idle sync writes
nothing". A request is counted when it is made, whether it then succeeds or fails; a
listing counts one `list_page` per page fetched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

from dropbeard.store.base import Store
from dropbeard.store.forwarding import ForwardingStore

T = TypeVar("T")
WRITE_KINDS = ("put", "put_file", "put_if_absent", "put_if_match", "delete")


class CountingStore(ForwardingStore):
    """`counts[kind]` for kind in get, get_if_changed, get_file, head, put, put_file,
    put_if_absent, put_if_match, list_page, delete."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.counts: Counter[str] = Counter()

    @property
    def writes(self) -> int:
        """Requests that create, replace or delete an object."""
        return sum(self.counts[kind] for kind in WRITE_KINDS)

    def reset(self) -> None:
        self.counts.clear()

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        self.counts[op] += 1
        try:
            return await call()
        except StopAsyncIteration:
            # the end of a listing is learnt from the last page, not from a request
            self.counts[op] -= 1
            raise
