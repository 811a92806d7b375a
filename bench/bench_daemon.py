"""Daemon benchmarks: real `dropbeard daemon` processes. Prints numbers; asserts nothing.

  .venv/bin/python bench/bench_daemon.py [--quick] [--edits 50] [--files 100000]
      [--poll 30] [--window 60] [--part all|propagation|idle]

1. Propagation latency over a SeaweedFS on loopback (started and stopped here, by its PID):
   two daemons (two `python -m dropbeard daemon` processes, each with its own root of the
   same remote, its own control socket, `poll_interval = "1s"`, default debounce 1 s /
   max_delay 10 s). A small file with unique content is written in root A; the clock stops
   when root B holds those bytes (checked every 20 ms). Edits alternate between new files and
   edits of existing ones; both daemons are let go idle between edits, then each write waits
   a random 0-1 s so it falls at a random phase of B's poll. Median, p95, max, and
   a split from A's log: write -> A's pass that uploaded it ends (debounce + pass), then ->
   bytes in B (poll wait + B's pass).
2. An idle daemon with N tracked files, published first with `init` + one `sync` against a
   LOCAL-directory remote (to keep the setup short), plus a second, empty upload-only device
   so each poll has a head to check: the daemon's first pass, then its CPU over a window
   (/proc/<pid>/stat utime+stime) as % of one core, its RSS (/proc/<pid>/status) in MiB and
   bytes per tracked file (also above an empty-root daemon's RSS), the passes it ran while
   idle, and the requests of one poll, measured by running the daemon's own head check
   (`RootSync.heads_changed`) in-process against the same remote wrapped in `CountingStore`.

`--quick`: 10 edits, 10,000 files, a 15 s CPU window. Every process started here is stopped
by its PID and the temporary directory removed, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dropbeard.core.daemonconfig import DaemonConfig, RootEntry, effective
from dropbeard.daemon.rootpass import RootSync
from dropbeard.store.counting import CountingStore
from dropbeard.store.factory import open_store
from dropbeard.store.retry import RetryingStore
from tests.daemonproc import request
from tests.seaweed import Seaweed

CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_STEP_S = 0.02
EDIT_TIMEOUT_S = 60.0


# --- processes: every one we start, stopped by its own PID -----------------------------------


class Procs:
    """Children run in their own session (a terminal's Ctrl-C reaches only this script),
    and `stop_all` ends each by the PID we got from Popen."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: list[str], *, env: Mapping[str, str] | None, stdout: Any, stderr: Any
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        self.live.append(proc)
        return proc

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> tuple[float, str]:
        """`python -m dropbeard ARGS`: (wall seconds, stdout); exits the bench on failure."""
        began = time.perf_counter()
        argv = [sys.executable, "-m", "dropbeard", *args]
        proc = self.start(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate()
        self.live.remove(proc)
        if proc.returncode != 0:
            raise SystemExit(f"dropbeard {' '.join(args)} exited {proc.returncode}: {err!r}")
        return time.perf_counter() - began, out.decode()

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM (a daemon lets a running pass finish), a second SIGTERM, then SIGKILL."""
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            if proc.poll() is not None:
                break
            os.kill(proc.pid, sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        if proc in self.live:
            self.live.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.live)):
            self.stop(proc)


class DaemonProc:
    """`python -m dropbeard daemon -c CONFIG --socket SOCK`, its JSON log (stderr) in a file."""

    def __init__(
        self, procs: Procs, config: Path, sock: Path, log_path: Path, env: Mapping[str, str]
    ) -> None:
        self.procs, self.sock, self.log_path = procs, sock, log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        argv = [sys.executable, "-m", "dropbeard", "daemon", "-c", str(config)]
        argv += ["--socket", str(sock)]
        self.proc = procs.start(argv, env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        self.started = time.perf_counter()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found

    def alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise SystemExit(f"daemon {self.pid} exited {self.proc.returncode}: {tail}")

    def status(self) -> dict[str, Any] | None:
        try:
            reply: dict[str, Any] = request(self.sock, {"op": "status", "offline": True})
        except (OSError, ValueError):
            return None
        return reply if reply.get("ok") else None

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_for("the control socket", lambda: self.status() is not None, timeout, self)

    def wait_tick_ends(self, count: int, timeout: float) -> dict[str, Any]:
        ends = wait_for(
            f"{count} tick_end", lambda: self.events("tick_end")[count - 1 :], timeout, self
        )
        return ends[0]

    def idle(self) -> bool:
        reply = self.status()
        if reply is None:
            return False
        return all(
            r["state"] == "idle"
            and r["running"] is None
            and r["pending_count"] == 0
            and not r["pending_full"]
            for r in reply["roots"]
        )

    def stop(self) -> None:
        self.procs.stop(self.proc)
        self._log.close()


def wait_for(what: str, check: Callable[[], Any], timeout: float, daemon: DaemonProc) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        daemon.alive()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what} ({daemon.pid})")
        time.sleep(0.05)


def write_config(path: Path, roots: list[Path], poll: str) -> Path:
    body = f'log_format = "json"\nlog_level = "info"\npoll_interval = "{poll}"\n'
    body += "".join(f'\n[[roots]]\npath = "{root}"\n' for root in roots)
    path.write_text(body, encoding="utf-8")
    return path


def init(
    procs: Procs,
    path: Path,
    remote: str,
    root_id: str,
    device: str,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    argv = ["init", str(path), "--remote", remote, "--root-id", root_id, "--device-id", device]
    procs.run(*argv, "-q", *extra, env=env)
    return path


def arrival(path: Path, data: bytes, began: float) -> float | None:
    """Seconds from `began` until `path` holds `data` (checked every 20 ms), None on timeout."""
    while not has(path, data):
        if time.perf_counter() - began > EDIT_TIMEOUT_S:
            return None
        time.sleep(POLL_STEP_S)
    return time.perf_counter() - began


def has(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return False


# --- /proc --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of proc(5)


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def wall_of(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


# --- requests per poll: the daemon's own head check, in-process, counted -----------------------


class _Quiet:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


async def poll_requests(root: Path) -> tuple[dict[str, int], list[str]]:
    """One `RootSync.heads_changed` (what the daemon runs every poll_interval) against the
    root's remote wrapped in CountingStore, after a pass over no paths has opened the store
    and seeded the heads last seen, as the daemon's first pass does."""
    settings = effective(RootEntry(path=str(root)), DaemonConfig())
    counters: list[CountingStore] = []

    def factory(remote: Any, concurrency: int) -> Any:
        counting = CountingStore(open_store(remote, concurrency=concurrency, retry=False))
        counters.append(counting)
        return RetryingStore(counting)

    sync = RootSync(root, settings, store_factory=factory, log=_Quiet())
    try:
        await sync.run(frozenset(), lambda: None)
        counters[-1].reset()
        changed = await sync.heads_changed()
        return dict(counters[-1].counts), changed
    finally:
        await sync.aclose()


def show_poll(counts: dict[str, int], changed: list[str]) -> str:
    total = sum(counts.values())
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    moved = f"heads changed: {changed}" if changed else "no head changed"
    return f"{total} requests ({kinds}; {moved})"


# --- 1. propagation latency ---------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def stats(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"median {statistics.median(values):5.2f} s  p95 {percentile(values, 0.95):5.2f} s  "
        f"max {max(values):5.2f} s  min {min(values):5.2f} s  (n={len(values)})"
    )


def settle(*daemons: DaemonProc) -> None:
    """Both daemons idle, then once more after a poll interval (A's poll sees B's new head
    and runs a pass), so every timed edit starts from quiet daemons."""
    for _ in range(2):
        for d in daemons:
            wait_for("the daemon to go idle", d.idle, 60, d)
        time.sleep(1.3)
    for d in daemons:
        wait_for("the daemon to go idle", d.idle, 60, d)


def propagation(procs: Procs, work: Path, edits: int) -> None:
    print(f"== 1. propagation latency A -> B over SeaweedFS ({edits} edits) ==")
    server = Seaweed.start(work / "seaweed")
    try:
        anyio.run(server.wait_writable)
        print(f"SeaweedFS ready in {server.startup_seconds:.2f} s (pid {server.pid})")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DROPBEAR_S3_"))}
        env["DROPBEAR_S3_ACCESS_KEY_ID"] = server.access_key
        env["DROPBEAR_S3_SECRET_ACCESS_KEY"] = server.secret_key
        remote = f"s3://{server.bucket}/bench-{uuid.uuid4().hex[:10]}"
        s3 = ("--endpoint-url", server.endpoint, "--addressing-style", "path")
        a = init(procs, work / "prop" / "a", remote, "bench", "laptop", *s3, env=env)
        b = init(procs, work / "prop" / "b", remote, "bench", "desktop", *s3, env=env)
        for i in range(5):
            (a / f"seed-{i}.txt").write_text(f"seed {i}\n")
        da = DaemonProc(
            procs, write_config(work / "a.toml", [a], "1s"), work / "a.sock", work / "a.log", env
        )
        db = DaemonProc(
            procs, write_config(work / "b.toml", [b], "1s"), work / "b.sock", work / "b.log", env
        )
        try:
            da.wait_ready()
            db.wait_ready()
            print('daemons: poll_interval "1s", debounce 1 s, max_delay 10 s (defaults)')
            wait_for("the seed files on B", lambda: (b / "seed-4.txt").exists(), EDIT_TIMEOUT_S, db)
            settle(da, db)
            warm = f"warm-up {uuid.uuid4().hex}\n".encode()
            (a / "warm-up.txt").write_bytes(warm)  # not timed: first upload, first download
            wait_for("the warm-up file on B", lambda: has(b / "warm-up.txt", warm), 60, db)
            settle(da, db)

            existing = [f"seed-{i}.txt" for i in range(5)]
            total: dict[str, list[float]] = {"new": [], "edit": []}
            published: list[float] = []
            picked_up: list[float] = []
            missed = 0
            jitter = random.Random(7)
            for i in range(edits):
                # quiet daemons are phase-locked to B's 1 s poll: start at a random phase
                time.sleep(jitter.uniform(0.0, 1.0))
                kind = "new" if i % 2 == 0 else "edit"
                name = f"new-{i:03d}.txt" if kind == "new" else existing[(i * 7) % len(existing)]
                data = f"{kind} {i} {uuid.uuid4().hex}\n".encode()
                began_wall, began = time.time(), time.perf_counter()
                (a / name).write_bytes(data)
                took = arrival(b / name, data, began)
                if took is None:
                    missed += 1
                    print(f"  edit {i} ({name}) did not reach B within {EDIT_TIMEOUT_S:.0f} s")
                else:
                    total[kind].append(took)
                    ends = [
                        e
                        for e in da.events("tick_end")
                        if wall_of(e) >= began_wall and e["summary"].get("uploaded", 0) >= 1
                    ]
                    if ends:
                        pub = wall_of(ends[0]) - began_wall
                        published.append(pub)
                        picked_up.append(took - pub)
                    if kind == "new":
                        existing.append(name)
                settle(da, db)
            both = total["new"] + total["edit"]
            print(f"write in A -> bytes in B:  {stats(both)}")
            print(f"  new files:               {stats(total['new'])}")
            print(f"  edits of existing files: {stats(total['edit'])}")
            print(
                f"  split, write -> A's uploading pass ends (debounce + pass): {stats(published)}"
            )
            print(
                f"  split, A published -> bytes in B (poll wait + B's pass):   {stats(picked_up)}"
            )
            if missed:
                print(f"  {missed} edits never arrived within {EDIT_TIMEOUT_S:.0f} s")
            if both:
                median = statistics.median(both)
                verdict = "under" if median < 2.5 else "NOT under"
                print(f"target (issue): median under 2.5 s -> {median:.2f} s, {verdict}")
            passes = {d: len(d.events("tick_start")) for d in (da, db)}
            print(f"passes run: A {passes[da]}, B {passes[db]} (tick_start events, incl. setup)")
            for d, name in ((da, "A"), (db, "B")):
                mem = memory_kib(d.pid)
                print(f"daemon {name} RSS {mem['VmRSS'] / 1024:.0f} MiB (S3 client loaded)")
        finally:
            da.stop()
            db.stop()
        os.environ["DROPBEAR_S3_ACCESS_KEY_ID"] = server.access_key  # for this process's
        os.environ["DROPBEAR_S3_SECRET_ACCESS_KEY"] = server.secret_key  # head check only
        counts, changed = anyio.run(poll_requests, a)
        print(f"one poll of A (SeaweedFS, 1 other device), measured: {show_poll(counts, changed)}")
    finally:
        os.environ.pop("DROPBEAR_S3_ACCESS_KEY_ID", None)
        os.environ.pop("DROPBEAR_S3_SECRET_ACCESS_KEY", None)
        server.stop()


# --- 2. the idle daemon with many files -----------------------------------------------------


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        d = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06d}.txt").write_bytes(i.to_bytes(8, "big") * 16)


def idle_daemon(procs: Procs, work: Path, files: int, poll: float, window: float) -> None:
    print(f"\n== 2. idle daemon, {files} tracked files, poll_interval {poll:g} s ==")
    base = work / "idle"
    a, remote = base / "A", str(base / "remote")
    began = time.perf_counter()
    make_tree(a, files)
    built = time.perf_counter() - began
    print(f"tree: {files} files of 128 B in {files // 100} folders ({built:.1f} s to build)")
    init(procs, a, remote, "idle", "laptop")
    wall, out = procs.run("sync", str(a), "--json")
    print(
        f"setup against a LOCAL-directory remote (not SeaweedFS, to keep it short): init + "
        f"first `dropbeard sync` {wall:.1f} s, uploaded {json.loads(out).get('uploaded')}"
    )
    other = init(procs, base / "server", remote, "idle", "server", "--mode", "upload-only")
    wall, _ = procs.run("sync", str(other), "--json")
    print(
        f"second device: an empty upload-only root, synced once ({wall:.1f} s), "
        "so each poll has a head to check"
    )

    empty = init(procs, base / "empty", str(base / "remote-empty"), "empty", "solo")
    conf = write_config(base / "empty.toml", [empty], f"{poll:g}s")
    d0 = DaemonProc(procs, conf, base / "e.sock", base / "e.log", None)
    try:
        d0.wait_tick_ends(1, 120)
        time.sleep(2)
        baseline = memory_kib(d0.pid)["VmRSS"]
    finally:
        d0.stop()

    conf = write_config(base / "idle.toml", [a], f"{poll:g}s")
    d = DaemonProc(procs, conf, base / "d.sock", base / "d.log", None)
    try:
        first = d.wait_tick_ends(1, 1800)
        first_wall = time.perf_counter() - d.started
        first_cpu = cpu_seconds(d.pid)
        s = first["summary"]
        print(
            f"daemon start -> first pass ends: {first_wall:.1f} s wall, {first_cpu:.1f} s CPU "
            f"(pass {s.get('duration_s')} s, scanned {s.get('scanned')}, "
            f"hashed {s.get('hashed')}, published {s.get('snapshot') is not None})"
        )
        starts_before = len(d.events("tick_start"))
        cpu0, t0 = cpu_seconds(d.pid), time.perf_counter()
        time.sleep(window)
        cpu1, t1 = cpu_seconds(d.pid), time.perf_counter()
        d.alive()
        starts = len(d.events("tick_start")) - starts_before
        used = cpu1 - cpu0
        print(
            f"idle CPU over {t1 - t0:.1f} s (right after the first pass): {used:.2f} s "
            f"-> {100 * used / (t1 - t0):.2f} % of one core "
            f"(/proc stat, clock tick {1000 / CLK_TCK:.0f} ms)"
        )
        print(
            f"passes while idle: {starts} tick_start events; polls in the window: "
            f"~{(t1 - t0) / poll:.0f} (one per {poll:g} s; polls are not logged)"
        )
        mem = memory_kib(d.pid)
        rss, hwm = mem["VmRSS"] * 1024, mem["VmHWM"] * 1024
        print(
            f"RSS {rss / 2**20:.0f} MiB -> {rss / files:.0f} B per tracked file "
            f"(peak {hwm / 2**20:.0f} MiB); an empty-root daemon: {baseline / 1024:.0f} MiB "
            f"-> {(rss - baseline * 1024) / files:.0f} B per file above it"
        )
    finally:
        d.stop()
    counts, changed = anyio.run(poll_requests, a)
    print(f"one poll (LOCAL remote, 1 other device), measured: {show_poll(counts, changed)}")
    print(
        "  as implemented (dropbeard/rootsync.py heads_changed): one LIST of devices/ "
        "(delimiter '/', one request per page) + one conditional GET of each other "
        "device's head; a pass only when a head changed"
    )


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10 edits, 10,000 files, 15 s")
    parser.add_argument("--edits", type=int, default=None)
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--window", type=float, default=None, help="idle CPU window, seconds")
    parser.add_argument("--poll", type=float, default=30.0, help="idle daemon's poll_interval")
    parser.add_argument("--part", choices=("all", "propagation", "idle"), default="all")
    args = parser.parse_args()
    edits = args.edits or (10 if args.quick else 50)
    files = args.files or (10_000 if args.quick else 100_000)
    window = args.window or (15.0 if args.quick else 60.0)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT even if inherited
        signal.signal(signum, interrupted)  # as ignored (`cmd &` in a script)
    procs = Procs()
    work = Path(tempfile.mkdtemp(prefix="dbd-bench-", dir="/tmp"))  # short: socket paths
    try:
        print(
            f"dropbeard daemon benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})"
        )
        if args.part in ("all", "propagation"):
            propagation(procs, work, edits)
        if args.part in ("all", "idle"):
            idle_daemon(procs, work, files, args.poll, window)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping what was started", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
