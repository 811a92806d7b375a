"""Benchmark of content-defined chunking against plain SHA-256 (a script, not a test).

    .venv/bin/python bench/bench_chunking.py [--size-mib 1024] [--dir PATH] [--runs 3]
    .venv/bin/python bench/bench_chunking.py --edit [--size-mib 1024] [--dir PATH]

Makes two files of the given size (kept in `--dir` for later runs): random bytes, and
one 3 MiB random block repeated. Each is read into memory once, then on one core:
SHA-256 of the whole, the FastCDC cut alone, and the cut plus a SHA-256 of every chunk,
with `pyfastcdc` (the dependency) and, when installed, `fastcdc` (PyPI) for comparison;
whether the two libraries cut at the same places; then dropbeard's one-read digest of
the file (whole-file hash + cut + chunk hashes) on one thread and with its helper
threads. Throughput is given in CPU time (what one core can do, whatever else the
machine runs) and in wall time (what a person waits).

`--edit` instead uploads the random file's chunks to a local-directory remote, writes 4 KiB
in its middle, and times what the edit costs: the digest, the upload (chunks and bytes
sent), and another device's download that reuses its old copy (chunks and bytes fetched).
Prints numbers; never asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dropbeard.core.chunking import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.chunking import Chunker, new_cutter

MiB = 1 << 20


def make_files(folder: Path, size: int) -> dict[str, Path]:
    files = {"random": folder / f"random-{size}.bin", "repeated": folder / f"repeated-{size}.bin"}
    if not files["random"].exists():
        print(f"writing {size >> 20} MiB of random bytes ...", flush=True)
        with open(files["random"], "wb") as f:
            for _ in range(0, size, 16 * MiB):
                f.write(os.urandom(min(16 * MiB, size - f.tell())))
    if not files["repeated"].exists():
        print(f"writing {size >> 20} MiB of one repeated 3 MiB block ...", flush=True)
        block = os.urandom(3 * MiB)
        with open(files["repeated"], "wb") as f:
            while f.tell() < size:
                f.write(block[: size - f.tell()])
    return files


def best(runs: int, fn: Callable[[], object]) -> tuple[float, float]:
    """Fastest (wall, CPU) seconds of `runs` calls; CPU is the whole process's."""
    walls, cpus = [], []
    for _ in range(runs):
        cpu, start = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def sha256_whole(data: memoryview) -> str:
    h = hashlib.sha256()
    for at in range(0, len(data), MiB):
        h.update(data[at : at + MiB])
    return h.hexdigest()


def pyfastcdc_cuts(data: memoryview) -> list[int]:
    return [c.length for c in new_cutter().cut_buf(data)]


def pyfastcdc_cuts_hashed(data: memoryview) -> list[str]:
    return [hashlib.sha256(c.data).hexdigest() for c in new_cutter().cut_buf(data)]


def fastcdc_chunks(data: memoryview, hashed: bool) -> Iterator[Any]:
    import fastcdc

    hf = hashlib.sha256 if hashed else None
    return iter(fastcdc.fastcdc(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK, hf=hf))


def has_fastcdc() -> bool:
    try:
        import fastcdc  # noqa: F401
    except ImportError:
        return False
    return True


def rate(size: int, seconds: float) -> str:
    return f"{size / seconds / MiB:7.0f} MiB/s"


def line(label: str, size: int, wall: float, cpu: float, base_cpu: float | None = None) -> None:
    versus = f"  {base_cpu / cpu:4.0%} of SHA-256 (cpu)" if base_cpu else ""
    print(f"  {label:34s} cpu {rate(size, cpu)}  wall {rate(size, wall)}{versus}")


def in_memory(name: str, path: Path, runs: int) -> None:
    data = memoryview(path.read_bytes())
    size = len(data)
    print(f"{name}: {size >> 20} MiB in memory, one core")
    wall, sha_cpu = best(runs, lambda: sha256_whole(data))
    line("hashlib.sha256", size, wall, sha_cpu)
    wall, cpu = best(runs, lambda: pyfastcdc_cuts(data))
    line("pyfastcdc cut", size, wall, cpu, sha_cpu)
    wall, cpu = best(runs, lambda: pyfastcdc_cuts_hashed(data))
    line("pyfastcdc cut + sha256 per chunk", size, wall, cpu, sha_cpu)
    ours = pyfastcdc_cuts(data)
    print(f"  pyfastcdc: {len(ours)} chunks, mean {size / len(ours) / MiB:.2f} MiB")
    if not has_fastcdc():
        print("  fastcdc (PyPI) not installed: `pip install fastcdc` to compare")
        return
    wall, cpu = best(runs, lambda: list(fastcdc_chunks(data, False)))
    line("fastcdc cut", size, wall, cpu, sha_cpu)
    wall, cpu = best(runs, lambda: list(fastcdc_chunks(data, True)))
    line("fastcdc cut + sha256 per chunk", size, wall, cpu, sha_cpu)
    theirs = [c.length for c in fastcdc_chunks(data, False)]
    ends = set(_ends(ours)) & set(_ends(theirs))
    same = "the same cuts" if ours == theirs else f"other cuts ({len(ends)} ends in common)"
    print(f"  fastcdc: {len(theirs)} chunks, {same}")


def _ends(lengths: list[int]) -> list[int]:
    at, out = 0, []
    for n in lengths:
        at += n
        out.append(at)
    return out


def digest(name: str, path: Path, runs: int, sha_cpu: float) -> None:
    size = path.stat().st_size
    print(f"{name}: dropbeard's one-read digest of the file (page cache warm)")
    for label, overlap in (("one thread", False), ("helper threads", True)):
        chunker = Chunker(overlap=overlap)
        wall, cpu = best(runs, lambda c=chunker: c.digest_file(path))  # type: ignore[misc]
        line(f"whole + cut + chunks, {label}", size, wall, cpu, sha_cpu)


def edit_mode(folder: Path, size: int) -> None:
    import anyio

    from dropbeard.core.keys import RootKeys
    from dropbeard.store.counting import CountingStore
    from dropbeard.store.local import LocalStore
    from dropbeard.sync.chunkdownload import ChunkSource, download_chunks
    from dropbeard.sync.chunkupload import upload_chunks

    keys, work = RootKeys("bench"), folder / "edit"
    shutil.rmtree(work, ignore_errors=True)
    (work / "bucket").mkdir(parents=True)
    (work / "tmp").mkdir()
    old, new = work / "old.bin", work / "new.bin"
    shutil.copyfile(make_files(folder, size)["random"], old)
    shutil.copyfile(old, new)
    with open(new, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(4096))
    chunker = Chunker()
    old_d = chunker.digest_file(old)
    cpu0, t0 = time.process_time(), time.perf_counter()
    new_d = chunker.digest_file(new)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert old_d.chunks and new_d.chunks
    print(f"4 KiB edit in {size >> 20} MiB: {len(new_d.chunks)} chunks")
    line("digest of the edited file", size, wall, cpu)
    store = CountingStore(LocalStore(work / "bucket"))
    budget = TransferBudget(16)  # the CLI's default requests in flight
    old_chunks, new_chunks = old_d.chunks, new_d.chunks

    async def upload(path: Path, chunks: Any, known: Any = None) -> Any:
        return await upload_chunks(
            store, keys, path, size, chunks, budget=budget, known_present=known
        )

    anyio.run(upload, old, old_chunks)
    published = {c.sha256 for c in old_chunks}.__contains__
    for label, known in (("knowing the old chunks", published), ("asking for each", None)):
        store.reset()
        cpu0, t0 = time.process_time(), time.perf_counter()
        sent = anyio.run(upload, new, new_chunks, known)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        print(
            f"  upload {label}: {sent.uploaded} chunks sent "
            f"({sent.uploaded_bytes / MiB:.1f} MiB), {sent.present} found there, "
            f"{sent.skipped_known} known; requests {dict(store.counts)}; "
            f"wall {wall:.2f} s, cpu {cpu:.2f} s"
        )
    places: dict[str, ChunkSource] = {}
    at = 0
    for c in old_chunks:
        places.setdefault(c.sha256, ChunkSource(old, at, c.size))
        at += c.size
    store.reset()

    async def download() -> Any:
        return await download_chunks(
            store,
            keys,
            new_d.sha256,
            size,
            new_chunks,
            tmp_dir=work / "tmp",
            find=places.get,
            budget=budget,
        )

    cpu0, t0 = time.process_time(), time.perf_counter()
    got = anyio.run(download)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        f"  download: {got.fetched} chunks fetched ({got.fetched_bytes / MiB:.1f} MiB), "
        f"{got.reused} reused ({got.reused_bytes / MiB:.0f} MiB), {dict(store.counts)}; "
        f"wall {wall:.2f} s, cpu {cpu:.2f} s"
    )
    shutil.rmtree(work)


def plain_file_sha(path: Path) -> None:
    with open(path, "rb") as f:
        hashlib.file_digest(f, "sha256")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, help="where the files are kept; default a temp dir")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--edit", action="store_true", help="time a 4 KiB edit's transfers")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="dropbeard-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    one, five, _ = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs, load average {one:.2f} {five:.2f}; chunks {MIN_CHUNK >> 20}/"
        f"{AVG_CHUNK >> 20}/{MAX_CHUNK >> 20} MiB"
    )
    try:
        if args.edit:
            edit_mode(folder, args.size_mib * MiB)
            return
        files = make_files(folder, args.size_mib * MiB)
        for name, path in files.items():
            in_memory(name, path, args.runs)
            plain_file_sha(path)  # warm the page cache
            wall, sha_cpu = best(args.runs, lambda p=path: plain_file_sha(p))  # type: ignore[misc]
            line(f"{name}: hashlib.file_digest (file)", path.stat().st_size, wall, sha_cpu)
            digest(name, path, args.runs, sha_cpu)
    finally:
        if args.dir is None:
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
