"""`dropbeard daemon`: the composition root (IO: config file, logging, control socket,
signals, sd_notify; one `RootRunner` task per root in one task group).

Signals: the first SIGINT/SIGTERM starts no more passes, lets running ones finish and exits
0; a second cancels them and exits 130 within a second. SIGHUP reloads the config: roots
are added, removed or restarted with new settings without a restart of the daemon.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.abc
import msgspec

from dropbeard import __version__
from dropbeard.core.config import RemoteConfig
from dropbeard.core.daemonconfig import RootSettings
from dropbeard.core.errors import ExitCode, UsageError
from dropbeard.core.timestamps import utc_iso
from dropbeard.daemon.control import ControlError, ControlServer, error_reply
from dropbeard.daemon.logs import configure_logging, get_logger
from dropbeard.daemon.notify import sd_notify
from dropbeard.daemon.rootpass import StoreFactory
from dropbeard.daemon.runner import RootRunner
from dropbeard.daemon.settings import DaemonOptions, load_settings
from dropbeard.store.bandwidth import Bandwidth
from dropbeard.store.base import Store
from dropbeard.store.factory import open_store
from dropbeard.sync.report import StatusReport, gather
from dropbeard.sync.root import RootPaths

FORCED_EXIT_S = 0.5  # after a second signal, the process is gone within a second (SPEC 7),
# with half a second to spare for a loaded machine
STATUS_TIMEOUT_S = 8.0


def default_store_factory(
    remote: RemoteConfig, concurrency: int, bandwidth: Bandwidth | None = None
) -> Store:
    return open_store(remote, concurrency=concurrency, bandwidth=bandwidth)


class Daemon:
    """Runs every root until a signal; `handle` answers the control socket. Every store
    it opens shares one `bandwidth` (the config's `bandwidth_limit`, for the whole daemon)."""

    def __init__(
        self,
        opts: DaemonOptions,
        *,
        store_factory: StoreFactory | None = None,
        log_stream: TextIO | None = None,
    ) -> None:
        self.opts = opts
        self.runners: dict[str, RootRunner] = {}
        self.everyone: set[RootRunner] = set()  # runners not finished yet, current or not
        self.exit_code = 0
        self.ready = anyio.Event()
        self._store_factory = store_factory or self._open_store
        self._log_stream = log_stream
        self._settings = load_settings(opts)
        self.bandwidth = Bandwidth(self._settings.config.bandwidth_limit)
        self._stop = anyio.Event()
        self._stopping = False
        self._started = (time.time(), time.monotonic())
        self._tg: anyio.abc.TaskGroup | None = None
        self._server: ControlServer | None = None
        self._last_status = ""
        self._configure_logging()
        self.log = get_logger()

    def _configure_logging(self) -> None:
        cfg = self._settings.config
        configure_logging(
            cfg.log_format, "debug" if self.opts.verbose else cfg.log_level, self._log_stream
        )

    async def run(self, *, signals: bool = True, hard_exit: bool = False) -> int:
        """Until stopped; returns the exit code (0, or 130 after a second signal)."""
        self._server = await ControlServer.bind(
            self._settings.socket,
            self.handle,
            self.log,
            private_dir=self._settings.private_socket_dir,
        )
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._server.serve)
                if signals:  # handlers are in place before READY=1
                    await tg.start(self._signals, hard_exit)
                for settings in self._settings.roots:
                    self._start(settings)
                self._set_thread_limit()
                self.log.info(
                    "daemon_start",
                    pid=os.getpid(),
                    version=__version__,
                    roots=[s.path for s in self._settings.roots],
                    socket=self._settings.socket,
                    config=self._settings.config_path,
                )
                sd_notify("READY=1", f"STATUS={self._status_line()}", f"MAINPID={os.getpid()}")
                self.ready.set()
                await self._stop.wait()
                sd_notify("STOPPING=1", "STATUS=stopping: letting running passes finish")
                for runner in list(self.everyone):
                    runner.stop()
                for runner in list(self.everyone):  # incl. one a reload is replacing
                    await runner.done.wait()
                tg.cancel_scope.cancel()
        finally:
            self._server.remove()
            self.log.info("daemon_stop", exit_code=self.exit_code)
        return self.exit_code

    def shutdown(self, *, force: bool = False, hard_exit: bool = False) -> None:
        """A first call stops gracefully; with `force` (a second signal) cancel everything."""
        if not force:
            self._stopping = True
            self._stop.set()
            return
        self.exit_code = ExitCode.FORCED
        if hard_exit:  # a worker thread deep in a hash or a commit must not hold us up
            timer = threading.Timer(FORCED_EXIT_S, self._exit_now)
            timer.daemon = True
            timer.start()
        for runner in self.everyone:
            runner.stop()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _exit_now(self) -> None:
        if self._server is not None:
            self._server.remove()
        os._exit(ExitCode.FORCED)

    async def _signals(
        self,
        hard_exit: bool,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as sigs:
            task_status.started()
            async for signum in sigs:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    await self.reload()
                elif not self._stopping:
                    running = [p for p, r in self.runners.items() if r.state == "syncing"]
                    self.log.info("shutdown", signal=name, waiting_for=running)
                    self.shutdown()
                else:
                    self.log.warning("shutdown_forced", signal=name)
                    self.shutdown(force=True, hard_exit=hard_exit)

    # -- roots ----------------------------------------------------------------------------

    def _start(self, settings: RootSettings) -> None:
        assert self._tg is not None
        runner = RootRunner(
            settings,
            store_factory=self._store_factory,
            log=self.log,
            on_change=self._status_changed,
        )
        self.runners[settings.path] = runner
        self.everyone.add(runner)
        self._tg.start_soon(self._supervise, runner)

    async def _supervise(self, runner: RootRunner) -> None:
        try:
            await runner.run()
        finally:
            self.everyone.discard(runner)

    async def _restart(self, old: RootRunner, settings: RootSettings) -> None:
        await old.done.wait()  # its pass ends first: two runners never share a root
        if not self._stopping and settings.path not in self.runners:
            self._start(settings)

    def _set_thread_limit(self) -> None:
        # Each watched root keeps a worker thread waiting on file events.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = 40 + 2 * len(self.runners)

    def _open_store(self, remote: RemoteConfig, concurrency: int) -> Store:
        return default_store_factory(remote, concurrency, self.bandwidth)

    async def reload(self) -> None:
        if self._stopping:
            self.log.info("reload_ignored", reason="shutting down")
            return
        try:
            new = await anyio.to_thread.run_sync(load_settings, self.opts)
        except UsageError as exc:
            self.log.error("reload_failed", error=str(exc), kept="the previous config")
            return
        old, self._settings = self._settings, new
        self.bandwidth.set_rate(new.config.bandwidth_limit)
        self._configure_logging()
        wanted = {s.path: s for s in new.roots}
        added, removed, changed = [], [], []
        for path, runner in list(self.runners.items()):
            if path not in wanted:
                removed.append(path)
            elif wanted[path] != runner.settings:
                changed.append(path)
                assert self._tg is not None
                self._tg.start_soon(self._restart, runner, wanted[path])
            else:
                continue
            runner.stop()
            del self.runners[path]
        for path, settings in wanted.items():
            if path not in self.runners and path not in changed:
                added.append(path)
                self._start(settings)
        self._set_thread_limit()
        if new.socket != old.socket:
            self.log.warning("reload_socket_ignored", socket=old.socket, wanted=new.socket)
        self.log.info("config_reloaded", added=added, removed=removed, restarted=changed)
        self._status_changed()

    def _status_line(self) -> str:
        states: dict[str, int] = {}
        for runner in self.runners.values():
            states[runner.state] = states.get(runner.state, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        return f"{len(self.runners)} roots: {parts}" if parts else "no roots"

    def _status_changed(self) -> None:
        line = self._status_line()
        if line != self._last_status:
            self._last_status = line
            sd_notify(f"STATUS={line}")

    # -- control socket -------------------------------------------------------------------

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "status":
            return await self._status(offline=bool(request.get("offline")))
        if op not in ("sync-now", "pause", "resume"):
            return error_reply(f"unknown op {op!r}: use status, sync-now, pause or resume")
        result: dict[str, str] = {}
        for runner in await self._select(request.get("root")):
            if op == "pause":
                runner.pause()
                result[runner.settings.path] = "paused"
            elif op == "resume":
                runner.resume()
                result[runner.settings.path] = "resumed"
            elif runner.paused:
                result[runner.settings.path] = "paused"
            else:
                runner.sync_now()
                result[runner.settings.path] = "queued"
        return {"ok": True, "roots": result}

    async def _select(self, root: object) -> list[RootRunner]:
        """Every root, or the one holding `root` (symlinks resolved in a worker thread: a
        hung network mount must not stall the event loop)."""
        if root is None:
            return list(self.runners.values())
        if not isinstance(root, str) or not root.startswith("/"):
            raise ControlError('"root" must be an absolute path')
        runners = list(self.runners.items())
        real = await anyio.to_thread.run_sync(
            lambda: [os.path.realpath(p) for p in [root, *(path for path, _ in runners)]]
        )
        want = real[0]
        for mine, (_, runner) in zip(real[1:], runners, strict=True):
            if want == mine or want.startswith(mine.rstrip("/") + "/"):
                return [runner]
        raise ControlError(f"{root} is not a root this daemon syncs")

    async def _status(self, *, offline: bool) -> dict[str, Any]:
        runners = list(self.runners.values())
        reports: dict[str, StatusReport] = {}
        async with anyio.create_task_group() as tg:
            for runner in runners:
                tg.start_soon(self._report, runner.settings.path, offline, reports)
        wall, mono = self._started
        return {
            "ok": True,
            "daemon": {
                "pid": os.getpid(),
                "version": __version__,
                "started_at": utc_iso(wall),
                "uptime_s": round(time.monotonic() - mono, 3),
                "socket": self._settings.socket,
                "config": self._settings.config_path,
                "stopping": self._stopping,
            },
            "roots": [
                {**r.snapshot(), "report": msgspec.to_builtins(reports[r.settings.path])}
                for r in runners
            ],
        }

    async def _report(self, path: str, offline: bool, out: dict[str, StatusReport]) -> None:
        paths = RootPaths(Path(path))
        try:
            with anyio.fail_after(STATUS_TIMEOUT_S):
                out[path] = await gather(paths, offline=offline)
        except TimeoutError:
            out[path] = await gather(paths, offline=True)
            out[path].devices_error = "timed out reading the bucket"
        out[path].source = "daemon"


async def daemon_command(args: Any) -> int:
    opts = DaemonOptions(
        config_path=args.config,
        roots=list(args.roots),
        socket=args.socket,
        interval=args.interval,
        concurrency=args.concurrency,
        bandwidth_limit=args.bwlimit,
        verbose=bool(getattr(args, "verbose", False)),
    )
    return await Daemon(opts).run(signals=True, hard_exit=True)
