"""Telling a person, within seconds, that the server does not answer and that dropbeard
keeps retrying, instead of a minute of silence (IO: a watcher thread, stderr).

A command opens its stores through `watched`; `main` runs the watch around the command.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from dropbeard.store.base import Store
from dropbeard.store.silence import SilenceWatch

#: Seconds of silence before saying so.
NOTICE_AFTER_S = 4.0
_POLL_S = 0.25


class Patience:
    """The stores of one command and the thread that watches them."""

    def __init__(self) -> None:
        self._stores: list[SilenceWatch] = []

    def watched(self, store: Store) -> SilenceWatch:
        watch = SilenceWatch(store)
        self._stores.append(watch)
        return watch

    @contextlib.contextmanager
    def running(
        self, say: Callable[[str], None], *, after: float = NOTICE_AFTER_S
    ) -> Iterator[None]:
        """While the block runs, call `say(line)` once each time a server stays silent for
        `after` seconds (again only after it answered in between)."""
        self._stores = []
        done = threading.Event()

        def watch() -> None:
            said: set[int] = set()
            while not done.wait(_POLL_S):
                for store in list(self._stores):
                    silent = store.silent_for()
                    if silent >= after and id(store) not in said:
                        say(
                            f"dropbeard: {store.description} does not answer "
                            f"({silent:.0f}s so far); still retrying for up to a minute "
                            "(Ctrl-C to stop)"
                        )
                        said.add(id(store))
                    elif silent < after:
                        said.discard(id(store))

        thread = threading.Thread(target=watch, name="dropbeard-patience", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self._stores = []


PATIENCE = Patience()


def watched(store: Store) -> SilenceWatch:
    """`store`, watched for silence while the current command runs."""
    return PATIENCE.watched(store)
