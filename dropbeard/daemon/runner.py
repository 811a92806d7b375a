"""One root under the daemon: watcher -> debouncer -> passes, head polling, the full-rescan
timer, pause/resume, offline retries and backoff (IO: composes watch and rootsync).

One engine task owns the root's state: only it opens state.sqlite and runs passes, one at a
time, holding the root lock only during a pass. The watcher, the head poller, the interval
timer and `sync-now` merely record a request and wake it, so requests that arrive during a
pass coalesce into exactly one more pass.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import anyio
import msgspec

from dropbeard.core.daemonconfig import RootSettings
from dropbeard.core.debounce import Debouncer
from dropbeard.core.errors import DropbeardError, OfflineError, Unavailable
from dropbeard.core.timestamps import utc_iso
from dropbeard.daemon.inotify import watch_shortage
from dropbeard.daemon.rootpass import RootSync, StoreFactory
from dropbeard.daemon.watch import RootWatcher
from dropbeard.sync.root import Busy

#: "failed": the last pass failed with an error that waiting alone does not cure (rejected
#: credentials, a missing bucket, an integrity error); the next trigger tries again.
RootState = Literal["idle", "syncing", "paused", "offline", "backoff", "failed"]
BACKOFF_CAP_S = 300.0
BUSY_RETRY_S = 2.0


class Request(msgspec.Struct):
    """What the next pass must cover: everything (`full`) or `paths` and what is below."""

    full: bool = False
    paths: set[str] = msgspec.field(default_factory=set)
    reasons: list[str] = msgspec.field(default_factory=list)

    def merge(self, other: Request) -> None:
        self.full = self.full or other.full
        self.paths |= other.paths
        self.reasons += [r for r in other.reasons if r not in self.reasons]


class Wakeup:
    """A level-triggered wake-up: `set()` before `wait()` is not lost."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, limit: float | None = None) -> None:
        with anyio.move_on_after(limit):
            await self._event.wait()
        if self._event.is_set():
            self._event = anyio.Event()


class RootRunner:
    """Supervises one root until `stop()`; `snapshot()` is its part of `status`."""

    def __init__(
        self,
        settings: RootSettings,
        *,
        store_factory: StoreFactory,
        log: Any,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.root = Path(settings.path)
        self.log = log.bind(root=settings.path)
        self.paused = False
        self.done = anyio.Event()
        #: what the person should know and fix (shown by status)
        self.warnings: list[str] = []
        self._on_change = on_change
        self._clock, self._wall = clock, wall
        self._random = random.Random()
        self._debouncer = Debouncer(settings.debounce, settings.max_delay)
        self._wake, self._debounce_wake = Wakeup(), Wakeup()
        self._pending: Request | None = None
        self._stopping = False
        self._condition: RootState = "idle"  # how the last attempt left the root
        self._reason: str | None = None  # why it is offline / backing off / last error
        self._retry_at = 0.0
        self._failures = 0
        self._halted = False  # the last pass halted a mass delete: the next one is full
        self._running: dict[str, Any] | None = None
        self._last: dict[str, Any] | None = None
        self._last_full = clock()
        self._next_poll = clock() + settings.poll_interval
        self._sync = RootSync(
            self.root, settings, store_factory=store_factory, log=self.log, clock=clock
        )
        self._watcher = RootWatcher(
            self.root,
            on_paths=self._on_paths,
            on_full=self._on_full,
            retry_s=settings.poll_interval,
            on_error=lambda msg: self.log.debug("watch_error", error=msg),
        )

    # -- commands (from the daemon and the control socket) ----------------------------

    @property
    def state(self) -> RootState:
        if self._running is not None:
            return "syncing"
        return "paused" if self.paused else self._condition

    def request(self, reason: str, *, full: bool = True, paths: set[str] | None = None) -> None:
        req = Request(full, set(paths or ()), [reason])
        if self._pending is None:
            self._pending = req
        else:
            self._pending.merge(req)
        if full:
            self._last_full = self._clock()
        self._wake.set()

    def sync_now(self) -> None:
        batch = self._debouncer.flush()
        if batch:
            self.request("watch", full=batch.full, paths=set(batch.paths))
        self._retry_at = 0.0  # cut a backoff or offline wait short
        self.request("sync-now")

    def pause(self) -> None:
        self.paused = True
        self._changed()

    def resume(self) -> None:
        self.paused = False
        self._wake.set()
        self._changed()

    def stop(self) -> None:
        """Start no more passes; `run` returns once the running one (if any) has ended."""
        self._stopping = True
        self._watcher.close()
        self._wake.set()

    # -- the tasks ------------------------------------------------------------------------

    async def run(self) -> None:
        self.request("start")
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._guarded, self._check_watch_limit)
                tg.start_soon(self._guarded, self._watcher.run)
                tg.start_soon(self._guarded, self._debounce_loop)
                tg.start_soon(self._guarded, self._poll_loop)
                tg.start_soon(self._guarded, self._interval_loop)
                tg.start_soon(self._guarded, self._gc_loop)
                await self._engine_loop()
                tg.cancel_scope.cancel()
        finally:
            self._watcher.close()
            with anyio.CancelScope(shield=True):
                await self._sync.aclose()
            self.done.set()

    async def _guarded(self, loop: Callable[[], Any]) -> None:
        """Keep a helper loop alive: a bug in it is logged, never fatal to the daemon."""
        while True:
            try:
                await loop()
                return
            except Exception as exc:
                self.log.error("internal_error", error=f"{type(exc).__name__}: {exc}")
                await anyio.sleep(1)

    async def _check_watch_limit(self) -> None:
        """Say at start when the watcher cannot see every folder (inotify's limit): the
        periodic full rescan still finds what it misses."""
        shortage = await anyio.to_thread.run_sync(watch_shortage, self.root)
        if shortage is not None:
            self.warnings.append(shortage.message)
            self.log.warning("inotify_limit", message=shortage.message, command=shortage.command)
            self._changed()

    async def _engine_loop(self) -> None:
        while not self._stopping:
            now = self._clock()
            if self._pending is None or self.paused:
                self._changed()
                await self._wake.wait()
            elif self._retry_at > now:
                self._changed()
                await self._wake.wait(self._retry_at - now)
            else:
                request, self._pending = self._pending, None
                await self._attempt(request)

    async def _debounce_loop(self) -> None:
        while True:
            deadline = self._debouncer.next_deadline()
            wait = None if deadline is None else max(0.0, deadline - self._clock())
            await self._debounce_wake.wait(wait)
            batch = self._debouncer.due(self._clock())
            if batch:
                self.request("watch", full=batch.full, paths=set(batch.paths))

    async def _interval_loop(self) -> None:
        while True:
            due = self._last_full + self.settings.interval
            if self._clock() < due:
                await anyio.sleep(due - self._clock())
            else:
                self.request("interval")

    async def _gc_loop(self) -> None:
        """gc and the repair of this device's head, every `gc_interval` (0: never), first
        at a random offset so that roots and devices do not all run it at once."""
        every = self.settings.gc_interval
        if every <= 0:
            return
        await anyio.sleep(self._random.uniform(0, every))
        while True:
            if not (self.paused or self._stopping or self._condition == "offline"):
                try:
                    await self._sync.maintain()
                except DropbeardError as exc:
                    self.log.warning("gc_error", error=str(exc), exit_code=int(exc.exit_code))
            await anyio.sleep(every)

    async def _poll_loop(self) -> None:
        failing = False
        while True:
            self._next_poll = self._clock() + self.settings.poll_interval
            await anyio.sleep(self.settings.poll_interval)
            if self.paused or self._condition == "offline" or not self._sync.ready_to_poll:
                continue
            try:
                changed = await self._sync.heads_changed()
            except DropbeardError as exc:  # said once per outage, then quietly retried
                (self.log.debug if failing else self.log.warning)("poll_error", error=str(exc))
                failing = True
                continue
            failing = False
            if changed:  # a pass over what changed there: no local path to rescan
                self.request("remote:" + ",".join(changed), full=False)

    # -- watcher callbacks (event loop) ------------------------------------------------

    def _on_paths(self, paths: set[str]) -> None:
        self._debouncer.add(paths, self._clock())
        self._debounce_wake.set()

    def _on_full(self, reason: str) -> None:
        self.log.info("watch_rescan", reason=reason)
        self._debouncer.add_full_rescan(self._clock())
        self._debounce_wake.set()

    # -- one pass -------------------------------------------------------------------------

    async def _attempt(self, req: Request) -> None:
        reason = ",".join(req.reasons)
        # While a mass delete is halted, every pass looks at the whole root: a pass over
        # some paths cannot tell that the root is whole again, and would keep the halt.
        full = req.full or self._halted
        scope = "full" if full else f"{len(req.paths)} paths"
        record: dict[str, Any] = {"reason": reason, "scope": scope, "started_at": self._wall()}
        if full:
            self._last_full = self._clock()

        def started() -> None:  # once online and locked: an offline root only skips
            self._running = record
            self._changed()
            self.log.info("tick_start", reason=reason, scope=scope)

        try:
            summary = await self._sync.run(None if full else frozenset(req.paths), started)
        except OfflineError as exc:
            self._retry(req, "offline", self.settings.poll_interval, str(exc))
            self._log_skip(str(exc))
            record.update(outcome="skipped", error=str(exc))
        except Busy as exc:
            self._retry(req, "backoff", BUSY_RETRY_S, str(exc))
            self.log.info("tick_skip", reason=str(exc))
            record.update(outcome="skipped", error=str(exc))
        except DropbeardError as exc:
            if isinstance(exc, Unavailable):
                self._failures += 1
                delay = min(BACKOFF_CAP_S, 2.0 ** (self._failures - 1))
                self._retry(req, "backoff", delay, str(exc))
                self.log.warning("tick_error", error=str(exc), transient=True, retry_in_s=delay)
            else:  # retried at the next trigger
                self._condition, self._reason = "failed", str(exc)
                self.log.error("tick_error", error=str(exc), exit_code=exc.exit_code)
            record.update(outcome="error", error=str(exc), exit_code=int(exc.exit_code))
        except Exception as exc:
            self._condition, self._reason = "failed", f"internal error: {exc}"
            self.log.exception("tick_error", error=f"internal error: {type(exc).__name__}: {exc}")
            record.update(outcome="error", error=f"internal error: {exc}", exit_code=1)
        else:
            was_offline = self._condition == "offline"
            self._condition, self._reason, self._failures = "idle", None, 0
            record.update(outcome="synced", summary=msgspec.to_builtins(summary))
            self.log.info("tick_end", reason=reason, scope=scope, summary=record["summary"])
            self._halted = summary.halted is not None
            if summary.halted:
                self.log.warning("halted", reason=summary.halted)
            if was_offline:
                self._watcher.restart()  # the folder may be a fresh mount: watch it anew
        finally:
            record["ended_at"] = self._wall()
            self._running, self._last = None, record
            self._changed()

    def _retry(self, req: Request, condition: RootState, delay: float, why: str) -> None:
        self._condition, self._reason = condition, why
        self._retry_at = self._clock() + delay
        if self._pending is None:
            self._pending = req
        else:
            req.merge(self._pending)
            self._pending = req

    def _log_skip(self, why: str) -> None:
        # Said once at info; repeated every poll_interval at debug while it stays offline.
        repeat = self._last is not None and self._last.get("error") == why
        (self.log.debug if repeat else self.log.info)("tick_skip", reason=why)

    # -- status ---------------------------------------------------------------------------

    def _changed(self) -> None:
        self._on_change()

    def snapshot(self) -> dict[str, Any]:
        now, wall = self._clock(), self._wall()

        def at(mono: float | None) -> str | None:
            return None if mono is None else utc_iso(wall + max(0.0, mono - now))

        pending = set(self._debouncer.pending_paths())
        if self._pending is not None:
            pending |= self._pending.paths
        nxt = self._next_pass()
        last = dict(self._last) if self._last else None
        if last is not None:
            last["started_at"] = utc_iso(last["started_at"])
            last["ended_at"] = utc_iso(last["ended_at"])
        running = dict(self._running) if self._running else None
        if running is not None:
            running["started_at"] = utc_iso(running["started_at"])
        return {
            "path": str(self.root),
            "state": self.state,
            "paused": self.paused,
            "reason": self._reason,
            "running": running,
            "last_pass": last,
            "next_pass_at": at(nxt[0]) if nxt else None,
            "next_pass_reason": nxt[1] if nxt else None,
            "next_poll_at": None if self.paused else at(self._next_poll),
            "pending_full": bool(
                self._debouncer.full_rescan_pending or (self._pending and self._pending.full)
            ),
            "pending_count": len(pending),
            "pending_paths": sorted(pending)[:100],
            "warnings": list(self.warnings),
            "progress": self._sync.progress(),
            "transfers": self._sync.in_flight(),
            "settings": msgspec.to_builtins(self.settings),
        }

    def _next_pass(self) -> tuple[float, str] | None:
        """When the next pass is due as things stand, and why (None while paused)."""
        if self.paused or self._stopping:
            return None
        now = self._clock()
        options = [(self._last_full + self.settings.interval, "interval")]
        if self._pending is not None:
            options.append((max(now, self._retry_at), ",".join(self._pending.reasons)))
        deadline = self._debouncer.next_deadline()
        if deadline is not None:
            options.append((deadline, "watch"))
        return min(options)
