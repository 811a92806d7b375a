"""Bandwidth: one limit on the bytes per second of every transfer that shares it (IO-free:
anyio sleeps only).

A store hands it the size of each body it sends before sending it, and of each piece it
receives as it arrives (so a download that must wait stops reading, and TCP slows the
sender). The limit works like a link of that speed: each `spend` reserves the link for
`n / rate` seconds after the reservations before it and waits until its turn begins, so
over any stretch of time the bytes moved stay within `rate` times its length plus one
piece. Stores built for one process share one `Bandwidth` (the daemon's roots too), so
the limit holds for the process, as `--bwlimit` does in rclone. `rate` None: no limit.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio


class Bandwidth:
    def __init__(
        self,
        rate: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._free_at = 0.0  # when the link is free after every reservation so far
        self.rate: int | None = None
        self.set_rate(rate)

    def set_rate(self, rate: int | None) -> None:
        """Change the limit (a config reload); reservations already made keep their turn."""
        if rate is not None and rate <= 0:
            raise ValueError("a bandwidth limit must be positive (None for no limit)")
        self.rate = rate

    async def spend(self, n: int) -> None:
        """Reserve the link for `n` bytes; return when their turn has come."""
        rate = self.rate
        if rate is None or n <= 0:
            return
        now = self._clock()
        start = max(now, self._free_at)
        self._free_at = start + n / rate
        if start > now:
            await self._sleep(start - now)


async def spend(bandwidth: Bandwidth | None, n: int) -> None:
    """`bandwidth.spend(n)`, for a store that may have no limit at all."""
    if bandwidth is not None:
        await bandwidth.spend(n)
