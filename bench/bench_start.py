"""What a one-shot command pays around its pass: CPU of an idle `dropbeard sync` of a small
root, as a person runs it (a fresh process each time), on a local-directory remote and on
SeaweedFS. Prints numbers; asserts nothing.

  .venv/bin/python bench/bench_start.py [--files 1000] [--runs 10] [--no-s3] [--keep DIR]

The interpreter's own start (`python -c pass`) and `import dropbeard.cli.main` are timed
the same way, so what the pass itself costs shows by difference. Byte-code is compiled
first (`compileall`), as pip does at install: with PYTHONDONTWRITEBYTECODE=1 and no .pyc,
every run would also compile every module it imports.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from bench.bench_idle import make_tree

MEASURE = """
import resource, subprocess, sys
out = subprocess.run(sys.argv[1:], capture_output=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(usage.ru_utime + usage.ru_stime, out.returncode)
sys.stderr.buffer.write(out.stderr)
"""


def cpu(*argv: str, env: dict[str, str] | None = None) -> float:
    """CPU seconds (user+sys) of one process running `argv`."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, env=env
    )
    seconds, code = done.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"{argv} exited {code}: {done.stderr.strip()}")
    return float(seconds)


def median_cpu(runs: int, *argv: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(median, least) CPU seconds of `runs` runs."""
    got = [cpu(*argv, env=env) for _ in range(runs)]
    return statistics.median(got), min(got)


def dropbeard(*argv: str) -> list[str]:
    return [sys.executable, "-m", "dropbeard", *argv]


def init_root(work: Path, name: str, files: int, remote: list[str]) -> Path:
    root = work / name
    make_tree(root, files)
    subprocess.run(
        dropbeard("init", str(root), *remote, "--root-id", name, "--device-id", "a", "-q"),
        check=True,
    )
    for _ in range(2):  # the first publishes, the second settles the stat cache
        subprocess.run(dropbeard("sync", str(root), "-q"), check=True)
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it")
    args = parser.parse_args()
    package = Path(__file__).resolve().parent.parent / "dropbeard"
    compileall.compile_dir(package, quiet=1)
    work = args.keep or Path(tempfile.mkdtemp(prefix="dropbeard-start-"))
    work.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        print(f"CPU s (user+sys), median (least) of {args.runs} fresh processes")
        for label, argv in (
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("import dropbeard.cli.main", [sys.executable, "-c", "import dropbeard.cli.main"]),
            ("dropbeard --version", dropbeard("--version")),
        ):
            med, least = median_cpu(args.runs, *argv)
            print(f"  {label:40} {med:.3f} ({least:.3f})")
        local = init_root(work, "local", args.files, ["--remote", str(work / "remote")])
        med, least = median_cpu(args.runs, *dropbeard("sync", str(local), "-q"))
        print(f"  idle sync, {args.files} files, local remote {med:.3f} ({least:.3f})")
        if args.no_s3:
            return
        from tests.seaweed import Seaweed

        server = Seaweed.start(work / "seaweed")
        anyio.run(server.wait_writable)
        os.environ["DROPBEAR_S3_ACCESS_KEY_ID"] = server.access_key
        os.environ["DROPBEAR_S3_SECRET_ACCESS_KEY"] = server.secret_key
        remote = ["--remote", f"s3://{server.bucket}/start", "--endpoint-url", server.endpoint]
        s3 = init_root(work, "s3", args.files, [*remote, "--addressing-style", "path"])
        med, least = median_cpu(args.runs, *dropbeard("sync", str(s3), "-q"))
        print(f"  idle sync, {args.files} files, SeaweedFS    {med:.3f} ({least:.3f})")
    finally:
        if server is not None:
            server.stop()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
