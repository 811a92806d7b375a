"""What one change costs with the bucket format dropbeard writes (format 2): the figures
of issue 10's table and targets, measured through the CLI, and (section "as the daemon
runs them") in this process. Prints numbers; asserts nothing.

  .venv/bin/python bench/bench_format.py [--files 20000] [--remote DIR] [--s3] [--keep]

The tree: tiny unique files, ~100 per folder, three levels deep (`deep/aN/bN/cN/`), plus
one flat folder (`flat/`, 50,000 files at 100,000) and one top-level folder holding 1,000
sub-folders of one file each (`wide/`); both scale down in proportion below 100,000 files.
Two devices (`a` holds the tree, `b` starts empty) share a local-directory remote. Every
`dropbeard` command is its own process; its CPU (user + system) and peak RSS come from
`os.wait4`. The bucket is only ever looked at as a directory (objects written, bytes
gained), so the script measures any format. What each pass of an edit reads from the
bucket (bytes, objects, folders opened) is counted by a second, identical round under
`strace` (skipped where strace is missing); CPU comes from the untraced round.

Then the same edits as a daemon makes them (`bench/formatpass.py`): the editing device's
pass over the edited path after its watcher event, the other device's pass after that
head moved, in this process with the node cache kept across passes: each pass's own CPU,
every request, the bytes read, each object written (tree nodes with their sizes).

`--s3` runs it all against SeaweedFS on loopback (started and stopped here, by its PID)
instead of a local directory: what the bucket gained is then listed over S3, and the
strace round is left out (the in-process passes count what they read).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from bench.formatpass import daemonlike

FULL_SCALE = 100_000  # the tree's shape at and above this many files


@dataclass
class Run:
    """One finished child process."""

    wall: float
    cpu: float
    rss_kib: int
    out: str


@dataclass
class Shape:
    files: int
    flat: int
    wide: int

    @classmethod
    def of(cls, files: int) -> Shape:
        scale = min(1.0, files / FULL_SCALE)
        flat, wide = round(50_000 * scale), round(1_000 * scale)
        return cls(files, flat, min(wide, files - flat))

    @property
    def deep(self) -> int:
        return self.files - self.flat - self.wide

    def deep_path(self, i: int) -> str:
        leaf = i // 100
        return f"deep/a{leaf // 100:03d}/b{leaf // 10 % 10}/c{leaf % 10}/f{i:07d}.txt"

    def paths(self) -> list[str]:
        found = [self.deep_path(i) for i in range(self.deep)]
        found += [f"flat/f{i:06d}.txt" for i in range(self.flat)]
        return found + [f"wide/s{i:04d}/f.txt" for i in range(self.wide)]


def build(root: Path, shape: Shape) -> None:
    made: set[Path] = set()
    for n, rel in enumerate(shape.paths()):
        path = root / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(b"%08d tiny file\n" % n * 4)


def spawn(argv: list[str], env: dict[str, str]) -> Run:
    """Run argv to its end; its own CPU and peak RSS (not its children's)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, problem = out.read().decode(), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:])} exited {proc.returncode}: {problem.strip()}")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, usage.ru_maxrss, text)


#: a bucket directory: every object's key -> (size, inode, mtime_ns)
Listing = dict[str, tuple[int, int, int]]


class Bench:
    def __init__(self, work: Path, remote: Path, s3: Any = None) -> None:
        self.work, self.remote, self.s3 = work, remote, s3
        # PYTHONDONTWRITEBYTECODE would make every command compile dropbeard again
        skip = ("AWS_", "DROPBEAR_", "PYTHONDONTWRITEBYTECODE")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
        self.env["XDG_CONFIG_HOME"] = str(work / "config")
        self.env["XDG_RUNTIME_DIR"] = str(work)
        self.url, self.init_args = str(remote), []
        if s3 is not None:  # a SeaweedFS (tests.seaweed.Seaweed) and a fresh prefix in it
            self.env["DROPBEAR_S3_ACCESS_KEY_ID"] = s3.access_key
            self.env["DROPBEAR_S3_SECRET_ACCESS_KEY"] = s3.secret_key
            self.url = f"s3://{s3.bucket}/bench-{os.getpid()}"
            self.init_args = ["--endpoint-url", s3.endpoint, "--addressing-style", "path"]

    def cli(self, *args: str) -> Run:
        return spawn([sys.executable, "-m", "dropbeard", *args], self.env)

    def sync(self, root: Path) -> tuple[Run, dict[str, object]]:
        run = self.cli("sync", str(root), "--json")
        return run, json.loads(run.out)

    def bucket(self) -> Listing:
        """Every object: relative key -> (size, inode, mtime_ns); over S3, (size, a hash
        of its etag, its LastModified)."""
        if self.s3 is not None:
            return self._s3_bucket()
        found = {}
        for dirpath, _, names in os.walk(self.remote):
            for name in names:
                st = os.stat(os.path.join(dirpath, name))
                key = os.path.relpath(os.path.join(dirpath, name), self.remote)
                found[key] = (st.st_size, st.st_ino, st.st_mtime_ns)
        return found

    def _s3_bucket(self) -> Listing:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.s3.endpoint,
            aws_access_key_id=self.s3.access_key,
            aws_secret_access_key=self.s3.secret_key,
            region_name="us-east-1",
        )
        found = {}
        prefix = self.url.split("/", 3)[3] + "/"
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.s3.bucket, Prefix=prefix
        ):
            for obj in page.get("Contents", []):
                stamp = int(obj["LastModified"].timestamp() * 1e9)
                found[obj["Key"]] = (obj["Size"], hash(obj["ETag"]), stamp)
        return found


def written(before: Listing, after: Listing) -> tuple[int, int, int]:
    """(objects created or rewritten, their bytes, bytes the bucket gained)."""
    changed = [k for k, v in after.items() if before.get(k) != v]
    gained = sum(v[0] for v in after.values()) - sum(v[0] for v in before.values())
    return len(changed), sum(after[k][0] for k in changed), gained


def settle(bench: Bench, a: Path, b: Path) -> int:
    """Sync both devices until a round writes nothing to the bucket; the rounds it took."""
    for rounds in range(1, 6):
        before = bench.bucket()
        bench.sync(a)
        bench.sync(b)
        if bench.bucket() == before:
            return rounds
    raise SystemExit("the two devices did not settle in 5 rounds")


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def first_syncs(bench: Bench, a: Path, b: Path) -> dict[str, str]:
    run, s = bench.sync(a)
    total = sum(v[0] for v in bench.bucket().values())
    print(
        f"first sync a: {run.wall:.1f} s wall, {run.cpu:.1f} s CPU, peak RSS {mib(run.rss_kib)};"
        f" uploaded {s['uploaded']}; bucket {size(total)}"
    )
    pull, s = bench.sync(b)
    print(
        f"first sync b (bootstrap): {pull.wall:.1f} s wall, {pull.cpu:.1f} s CPU, "
        f"peak RSS {mib(pull.rss_kib)}; downloaded {s['downloaded']}"
    )
    print(f"settled in {settle(bench, a, b)} round(s) of a + b")
    return {"first sync: CPU / peak RSS": f"{run.cpu:.1f} s / {mib(run.rss_kib)}"}


def idle(bench: Bench, a: Path) -> dict[str, str]:
    runs = [bench.sync(a)[0] for _ in range(3)]
    find = [spawn(["find", str(a), "-printf", "%s %T@ %i %p\\n"], {**bench.env}) for _ in range(3)]
    cpu, wall = statistics.median(r.cpu for r in runs), statistics.median(r.wall for r in runs)
    fcpu, fwall = statistics.median(r.cpu for r in find), statistics.median(r.wall for r in find)
    print(
        f"idle sync a (median of 3): {wall:.2f} s wall, {cpu:.2f} s CPU, peak RSS "
        f"{mib(runs[0].rss_kib)}; find -printf: {fwall:.2f} s wall, {fcpu:.2f} s CPU; "
        f"sync/find {wall / fwall:.1f}x wall, {cpu / max(fcpu, 0.01):.1f}x CPU"
    )
    return {"idle sync CPU (x find wall)": f"{cpu:.2f} s ({cpu / fwall:.1f}x)"}


#: strace -y lines: pid, syscall, its arguments (fds annotated with their paths), result
SYSCALL = re.compile(r"^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
FD_PATH = re.compile(r"\d+<([^>]*)>")
#: where each reading syscall names the file it reads: the index of that fd argument
SOURCE_FD = {"read": 0, "pread64": 0, "readv": 0, "preadv": 0, "copy_file_range": 0, "sendfile": 1}


@dataclass
class Traffic:
    """What one pass read from a local-directory bucket (seen through strace)."""

    bytes_read: int = 0
    objects_read: int = 0  # distinct files read
    listings: int = 0  # directories opened (to list them, or to sync a write)

    def __str__(self) -> str:
        read = f"{size(self.bytes_read)} in {self.objects_read} objects"
        return f"{read}, {self.listings} folders opened"


def traced_sync(bench: Bench, root: Path) -> tuple[dict[str, object], Traffic | None]:
    """One `sync --json` of root, under strace when there is one."""
    if not shutil.which("strace"):
        return bench.sync(root)[1], None
    trace, calls = bench.work / "strace.txt", ",".join([*SOURCE_FD, "openat"])
    argv = ["strace", "-f", "-qq", "-y", "-e", f"trace={calls}", "-o", str(trace)]
    run = spawn([*argv, sys.executable, "-m", "dropbeard", "sync", str(root), "--json"], bench.env)
    traffic, read, prefix = Traffic(), set(), f"{bench.remote.resolve()}/"
    for line in trace.read_text(errors="replace").splitlines():
        m = SYSCALL.match(line)
        if not m or int(m[3]) < 0:
            continue
        paths = FD_PATH.findall(m[2] if m[1] != "openat" else line[m.end(2) :])
        if m[1] == "openat":
            listing = "O_DIRECTORY" in m[2] and paths and paths[0].startswith(prefix)
            traffic.listings += bool(listing)
        elif len(paths) > SOURCE_FD[m[1]] and paths[SOURCE_FD[m[1]]].startswith(prefix):
            traffic.bytes_read += int(m[3])
            read.add(paths[SOURCE_FD[m[1]]])
    traffic.objects_read = len(read)
    return json.loads(run.out), traffic


def edit_once(bench: Bench, a: Path, b: Path, rel: str, traced: bool) -> dict[str, object]:
    """Edit rel on a, sync a, sync b; what each pass cost."""
    (a / rel).write_bytes((a / rel).read_bytes() + b"edited\n")
    found: dict[str, object] = {}
    for device, root in (("a", a), ("b", b)):
        before = bench.bucket()
        if traced:
            summary, found[f"{device}_traffic"] = traced_sync(bench, root)
        else:
            found[f"{device}_run"], summary = bench.sync(root)
        found[f"{device}_wrote"] = written(before, bench.bucket())
        assert summary["uploaded" if device == "a" else "downloaded"] == 1, summary
    assert (b / rel).read_bytes() == (a / rel).read_bytes(), rel
    return found


def edit(bench: Bench, a: Path, b: Path, rel: str, label: str) -> dict[str, str]:
    """One edit on a, pulled by b: CPU from a plain round, what each pass read from the
    bucket from a second round under strace (a local-directory remote only)."""
    plain = edit_once(bench, a, b, rel, False)
    traced = edit_once(bench, a, b, rel, True) if bench.s3 is None else {}
    objects, wrote, gained = plain["a_wrote"]  # type: ignore[misc]
    b_objects, b_wrote, _ = plain["b_wrote"]  # type: ignore[misc]
    push, pull = plain["a_run"], plain["b_run"]
    assert isinstance(push, Run) and isinstance(pull, Run)
    a_read = traced.get("a_traffic") or "n/a (no strace, or S3)"
    b_read = traced.get("b_traffic") or "n/a (no strace, or S3)"
    print(
        f"edit {label} ({rel}):\n  a publishes it: {push.cpu:.2f} s CPU, wrote {objects} "
        f"objects ({size(wrote)}), the bucket gained {size(gained)}; read {a_read}\n"
        f"  b pulls it: {pull.cpu:.2f} s CPU, read {b_read}; wrote {b_objects} objects "
        f"({size(b_wrote)})"
    )
    return {
        f"edit {label}: bucket gains / objects written": f"{size(gained)} / {objects}",
        f"edit {label}: that pass's CPU": f"{push.cpu:.2f} s",
        f"edit {label}: b pulling it: CPU / read": f"{pull.cpu:.2f} s / {b_read}",
    }


def idle_poll(bench: Bench, a: Path) -> dict[str, str]:
    """One idle daemon poll (`RootSync.heads_changed`, in this process) after a pass has
    seeded the heads last seen: its requests by kind (target: 1 LIST + 1 conditional GET
    per other device, no write)."""
    from bench.bench_daemon import poll_requests, show_poll
    from dropbeard.store.counting import WRITE_KINDS

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in bench.env.items() if k.startswith("DROPBEAR_S3_")})
    try:
        counts, changed = anyio.run(poll_requests, a)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    writes = sum(counts.get(kind, 0) for kind in WRITE_KINDS)
    lists, gets = counts.get("list_page", 0), counts.get("get_if_changed", 0)
    print(f"idle daemon poll (1 other device): {show_poll(counts, changed)}; writes {writes}")
    return {"idle poll: LIST / cond. GET / writes": f"{lists} / {gets} / {writes}"}


def flat_pages(bench: Bench, a: Path, folder: str = "flat") -> dict[str, str]:
    """The pages of `folder` in a's published tree: how many, the index levels above
    them, their sizes (an edit in the folder rewrites one page per level: the issue wants
    each under 32 KiB; SPEC 1's cut rule lets a page hold up to 512 entries)."""
    from dropbeard.core.keys import RootKeys
    from dropbeard.store.factory import open_store
    from dropbeard.sync.root import RootPaths, open_online

    cfg, state = open_online(RootPaths(a))
    state.close()
    keys = RootKeys(cfg.root_id)

    async def read() -> tuple[list[int], list[int], int]:
        store = open_store(cfg.remote)
        try:

            async def node(key: str) -> tuple[dict[str, Any], int]:
                data = await store.get(keys.tree(key))
                return json.loads(data), len(data)

            head = json.loads(await store.get(keys.head(cfg.device_id)))
            top, _ = await node(head["tree"])
            entry = next(e for e in top["entries"] if e["name"] == folder)
            level, leaves, indexes, depth = [entry["tree"]], [], [], 0
            while level:
                below = []
                for key in level:
                    got, size = await node(key)
                    if "pages" in got:
                        indexes.append(size)
                        below += [p["tree"] for p in got["pages"]]
                    else:
                        leaves.append(size)
                depth += bool(below)
                level = below
            return leaves, indexes, depth
        finally:
            await store.aclose()

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in bench.env.items() if k.startswith("DROPBEAR_S3_")})
    try:
        leaves, indexes, depth = anyio.run(read)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    over = sum(n >= 32 * 1024 for n in leaves + indexes)
    print(
        f"{folder}/ in a's tree: {len(leaves)} pages under {depth} index level(s) "
        f"({len(indexes)} index nodes, largest {size(max(indexes, default=0))}); page sizes "
        f"median {size(statistics.median(leaves or [0]))}, largest {size(max(leaves or [0]))};"
        f" {over} of {len(leaves) + len(indexes)} nodes are 32 KiB or more"
    )
    return {f"{folder}/ nodes >= 32 KiB / all": f"{over} / {len(leaves) + len(indexes)}"}


def daemon_rss(bench: Bench, a: Path) -> dict[str, str]:
    """The daemon's RSS once its first pass over the settled root has ended."""
    conf, log_path = bench.work / "daemon.toml", bench.work / "daemon.log"
    conf.write_text(f'log_format = "json"\npoll_interval = "30s"\n\n[[roots]]\npath = "{a}"\n')
    argv = [sys.executable, "-m", "dropbeard", "daemon", "-c", str(conf)]
    argv += ["--socket", str(bench.work / "d.sock")]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=bench.env
        )
    try:
        deadline = time.monotonic() + 1800
        while b'"tick_end"' not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"daemon: no first pass: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        time.sleep(3)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        fields = dict(x.split(":", 1) for x in status.splitlines() if ":" in x)
        rss, hwm = (int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM"))
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # only the daemon this script started
        proc.wait(60)
    print(f"daemon idle after its first pass: RSS {mib(rss)} (peak {mib(hwm)})")
    return {"idle daemon RSS": mib(rss)}


def seaweed(work: Path) -> Any:
    """A SeaweedFS on loopback, ready for writes (this script stops it by its PID)."""
    import anyio

    from tests.seaweed import Seaweed

    server = Seaweed.start(work / "seaweed")
    anyio.run(server.wait_writable)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000, help="tracked files (20000)")
    parser.add_argument("--remote", type=Path, help="the remote directory (default: temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the trees and the remote")
    parser.add_argument("--s3", action="store_true", help="SeaweedFS on loopback, not a folder")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, live
    shape = Shape.of(args.files)
    work = Path(tempfile.mkdtemp(prefix="dropbeard-format-"))
    remote = args.remote or work / "remote"
    if remote.exists() and any(remote.iterdir()):
        raise SystemExit(f"--remote {remote} is not empty")
    server = seaweed(work) if args.s3 else None
    try:
        a, b = work / "a", work / "b"
        began = time.perf_counter()
        build(a, shape)
        b.mkdir()
        print(
            f"tree: {shape.files} files ({shape.deep} in deep/ ~100 per folder, "
            f"{shape.flat} in flat/, {shape.wide} sub-folders in wide/), built in "
            f"{time.perf_counter() - began:.0f} s; remote {remote}"
        )
        bench = Bench(work, remote, server)
        for root, device in ((a, "a"), (b, "b")):
            bench.cli(
                "init",
                str(root),
                "--remote",
                bench.url,
                *bench.init_args,
                "--root-id",
                "bench",
                "--device-id",
                device,
                "-q",
            )
        row = first_syncs(bench, a, b)
        row |= idle(bench, a)
        row |= idle_poll(bench, a)
        if shape.flat:
            row |= flat_pages(bench, a)
        row |= edit(bench, a, b, shape.deep_path(shape.deep // 2), "3 deep")
        if shape.flat:
            row |= edit(bench, a, b, f"flat/f{shape.flat // 2:06d}.txt", "in flat/")
        row |= daemonlike(bench.env, a, b, shape.deep_path(shape.deep // 3), "3 deep")
        if shape.flat:
            row |= daemonlike(bench.env, a, b, f"flat/f{shape.flat // 3:06d}.txt", "in flat/")
        row |= daemon_rss(bench, a)
        print(f"\n| tracked files | {' | '.join(row)} |")
        print(f"| --- |{' --- |' * len(row)}")
        print(f"| {shape.files:,} | {' | '.join(row.values())} |")
    finally:
        if server is not None:
            server.stop()  # by the PID this script started
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
