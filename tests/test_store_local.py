"""LocalStore specifics: a missing root, crash atomicity, cross-process races, listing
semantics against a model, and what is (not) visible in the directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.errors import NotFound, StoreError, Unauthorized, Unavailable
from dropbeard.store import localwriter
from dropbeard.store.base import ListPage
from dropbeard.store.local import LocalStore
from dropbeard.store.localwriter import STALE_TEMP_SECONDS, TIDY_EVERY_SECONDS, TMP_DIR

MiB = 1024 * 1024


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "bucket"
    path.mkdir()
    return path


def all_keys(pages: list[ListPage]) -> list[str]:
    return [o.key for page in pages for o in page.objects]


async def listing(store: LocalStore, prefix: str = "", **kwargs: str) -> list[ListPage]:
    return [page async for page in store.list(prefix, **kwargs)]


def leftovers(root: Path) -> list[str]:
    """Temp files left in the store's housekeeping directory (the lock file is fine)."""
    tmp = root / TMP_DIR
    return sorted(p.name for p in tmp.iterdir() if p.name != "lock") if tmp.exists() else []


# -- a root that is not there -------------------------------------------------------


@pytest.mark.anyio
async def test_missing_root_is_unavailable_and_never_created(tmp_path: Path) -> None:
    root = tmp_path / "usb" / "bucket"
    store = LocalStore(root)
    src = tmp_path / "src"
    src.write_bytes(b"data")
    operations = [
        store.get("k"),
        store.get_if_changed("k", None),
        store.get_file("k", tmp_path / "out"),
        store.head("k"),
        store.put("a/k", b"x"),
        store.put_file("a/k", src),
        store.put_if_absent("k", b"x"),
        store.put_if_match("k", b"x", "etag"),
        store.delete("a/k"),
        listing(store),
        listing(store, "a/", delimiter="/"),
    ]
    for operation in operations:
        with pytest.raises(Unavailable, match="does not exist"):
            await operation
    assert not (tmp_path / "usb").exists()


@pytest.mark.anyio
async def test_root_unmounted_after_open_is_unavailable_not_empty(root: Path) -> None:
    store = LocalStore(root)
    await store.put("devices/d1/head.json", b"{}")
    os.rename(root, root.with_name("elsewhere"))  # what an unmount looks like from here
    with pytest.raises(Unavailable):
        await listing(store, "devices/")
    with pytest.raises(Unavailable):
        await store.get("devices/d1/head.json")
    with pytest.raises(Unavailable):
        await store.put("devices/d1/head.json", b"{}")
    assert not await anyio.Path(root).exists()


@pytest.mark.anyio
async def test_create_makes_the_root(tmp_path: Path) -> None:
    store = await LocalStore.create(tmp_path / "new" / "bucket")
    await store.put("k", b"v")
    assert (tmp_path / "new" / "bucket" / "k").read_bytes() == b"v"
    assert store.description == str(tmp_path / "new" / "bucket")


# -- atomicity ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_interrupted_upload_leaves_no_object(root: Path, tmp_path: Path) -> None:
    store = LocalStore(root)
    src = tmp_path / "big"
    src.write_bytes(os.urandom(3 * MiB))

    def explode(_: int) -> None:
        raise RuntimeError("source went away mid-copy")

    with pytest.raises(RuntimeError):
        await store.put_file("blobs/ab/cd/big", src, progress=explode)
    with pytest.raises(NotFound):
        await store.head("blobs/ab/cd/big")
    assert leftovers(root) == []


@pytest.mark.anyio
async def test_cancelled_upload_leaves_no_object(root: Path, tmp_path: Path) -> None:
    store = LocalStore(root)
    src = tmp_path / "big"
    src.write_bytes(os.urandom(3 * MiB))
    with anyio.CancelScope() as scope:
        await store.put_file("blobs/big", src, progress=lambda _: scope.cancel())
    assert scope.cancelled_caught
    with pytest.raises(NotFound):
        await store.head("blobs/big")
    assert leftovers(root) == []


KILLED_WRITER = """
import sys, time, anyio
from pathlib import Path
from dropbeard.store.local import LocalStore

def stall(_):
    print("copying", flush=True)
    time.sleep(60)

store = LocalStore(Path(sys.argv[1]))
anyio.run(lambda: store.put_file("blobs/big", Path(sys.argv[2]), progress=stall))
"""


def test_writer_killed_mid_copy_leaves_no_visible_object(root: Path, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(3 * MiB))
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(root), str(src)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "copying"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(leftovers(root)) == 1  # the orphan temp file, invisible to readers

    async def check() -> None:
        store = LocalStore(root)
        with pytest.raises(NotFound):
            await store.head("blobs/big")
        assert all_keys(await listing(store)) == []
        await store.put("blobs/big", b"a later writer is not disturbed")
        assert await store.get("blobs/big") == b"a later writer is not disturbed"

    anyio.run(check)


def backdate(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_later_writer_removes_what_a_killed_writer_left_once_stale(
    root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(3 * MiB))
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(root), str(src)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "copying"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (orphan,) = leftovers(root)
    mine = root / TMP_DIR / "not-a-temp-file"
    mine.write_bytes(b"not dropbeard's to remove")

    async def write(key: str) -> None:
        store = LocalStore(root)  # a later pass opens its own store
        await store.put(key, b"x")

    anyio.run(write, "one")
    assert leftovers(root) == sorted([orphan, mine.name])  # young: perhaps a live writer's
    backdate(root / TMP_DIR / orphan, STALE_TEMP_SECONDS + 60)
    backdate(mine, STALE_TEMP_SECONDS + 60)
    anyio.run(write, "two")
    assert leftovers(root) == [mine.name]


@pytest.mark.anyio
async def test_one_store_looks_for_stale_temp_files_at_most_hourly(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(localwriter.time, "monotonic", lambda: clock[0])
    store = LocalStore(root)
    await store.put("a", b"a")
    stale = root / TMP_DIR / "put-stale"
    stale.write_bytes(b"half")
    backdate(stale, STALE_TEMP_SECONDS + 60)

    clock[0] += TIDY_EVERY_SECONDS - 1
    await store.put("b", b"b")
    assert stale.exists()
    clock[0] += 2
    await store.put("c", b"c")
    assert not stale.exists()


@pytest.mark.anyio
async def test_housekeeping_files_are_never_listed(root: Path) -> None:
    store = LocalStore(root)
    await store.put_if_absent("registry.json", b"{}")  # creates the lock file
    (root / TMP_DIR / "put-orphan").write_bytes(b"half")
    assert all_keys(await listing(store)) == ["registry.json"]
    pages = await listing(store, "", delimiter="/")
    assert [p for page in pages for p in page.prefixes] == []
    assert all_keys(await listing(store, ".dropbeard")) == []
    with pytest.raises(ValueError):
        await store.get(TMP_DIR + "/lock")
    with pytest.raises(ValueError):
        await listing(store, TMP_DIR + "/")


# -- races across processes ---------------------------------------------------------


RACER = """
import sys, anyio
from pathlib import Path
from dropbeard.core.errors import PreconditionFailed
from dropbeard.store.local import LocalStore

async def race():
    store = LocalStore(Path(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()  # the starting gun
    won = []
    for i in range(int(sys.argv[3])):
        try:
            await store.put_if_absent(f"registry-{i}.json", sys.argv[2].encode())
            won.append(str(i))
        except PreconditionFailed:
            pass
    return " ".join(won)

print(anyio.run(race), flush=True)
"""


def test_processes_racing_put_if_absent_have_one_winner(root: Path) -> None:
    keys = 100  # many rounds: without the lock, some round likely interleaves check and rename
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(root), f"writer {n}", str(keys)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline() == "ready\n"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        won = [racer.communicate(timeout=60)[0].split() for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    winners = {int(i): n for n, keys_won in enumerate(won) for i in keys_won}
    assert sum(len(w) for w in won) == keys  # each key won exactly once
    assert sorted(winners) == list(range(keys))
    for i, n in winners.items():
        assert (root / f"registry-{i}.json").read_bytes() == f"writer {n}".encode()


# -- layout, deletes and errors -----------------------------------------------------


@pytest.mark.anyio
async def test_delete_prunes_emptied_directories_but_not_the_root(root: Path) -> None:
    store = LocalStore(root)
    await store.put("roots/r/blobs/ab/cd/abcd", b"x")
    await store.put("roots/r/devices/d/head.json", b"{}")
    await store.delete("roots/r/blobs/ab/cd/abcd")
    assert not (root / "roots" / "r" / "blobs").exists()
    assert (root / "roots" / "r" / "devices" / "d" / "head.json").exists()
    await store.delete("roots/r/devices/d/head.json")
    assert os.listdir(root) == [TMP_DIR]


@pytest.mark.anyio
async def test_empty_directories_are_not_prefixes(root: Path) -> None:
    store = LocalStore(root)
    (root / "devices" / "gone" / "manifests").mkdir(parents=True)  # e.g. a half-done rmdir
    await store.put("devices/d1/head.json", b"{}")
    pages = await listing(store, "devices/", delimiter="/")
    assert [p for page in pages for p in page.prefixes] == ["devices/d1/"]
    assert all_keys(await listing(store, "devices/")) == ["devices/d1/head.json"]


@pytest.mark.anyio
async def test_concurrent_puts_and_deletes_in_one_directory(root: Path) -> None:
    store = LocalStore(root)

    async def churn(i: int) -> None:
        for _ in range(20):
            await store.put(f"d/sub/{i}", b"x")
            await store.delete(f"d/sub/{i}")
        await store.put(f"d/sub/{i}", b"kept")

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(churn, i)
    assert all_keys(await listing(store, "d/")) == [f"d/sub/{i}" for i in range(8)]


@pytest.mark.anyio
async def test_key_clashing_with_a_directory_is_a_clear_error(root: Path) -> None:
    store = LocalStore(root)
    await store.put("a/b", b"x")
    with pytest.raises(StoreError, match="a/b/c"):
        await store.put("a/b/c", b"y")
    with pytest.raises(StoreError, match=r"writing a in"):
        await store.put("a", b"y")
    with pytest.raises(NotFound):
        await store.get("a")


@pytest.mark.anyio
@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_permission_denied_is_unauthorized(root: Path) -> None:
    store = LocalStore(root)
    await store.put("private/k", b"x")
    (root / "private").chmod(0)
    try:
        with pytest.raises(Unauthorized):
            await store.get("private/k")
        with pytest.raises(Unauthorized):
            await listing(store, "private/")
    finally:
        (root / "private").chmod(0o755)


@pytest.mark.anyio
async def test_invalid_keys_and_delimiters_are_rejected(root: Path) -> None:
    store = LocalStore(root)
    for key in ["", "/abs", "a//b", "a/../b", "./a", ".dropbeard-tmp/lock"]:
        with pytest.raises(ValueError):
            await store.put(key, b"x")
    with pytest.raises(ValueError):
        await listing(store, "", delimiter=",")
    with pytest.raises(ValueError):
        await listing(store, "../")


@pytest.mark.anyio
async def test_get_file_writes_nothing_for_a_missing_key(root: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        await LocalStore(root).get_file("absent", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


# -- listing against a model ----------------------------------------------------------

#: tmpfs where there is one: fsync is free there, and listing semantics do not depend on it
FAST_TMP = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Directory and file names are disjoint, so no key is also a directory of another (S3
# allows that, a disk does not). '-' and '.' sort before '/', '0' after it.
DIRECTORY = st.sampled_from(["a", "ab", "é"])
FILE = st.sampled_from(["a-", "a.b", "a0", "b", "Z"])
KEY = st.builds(lambda dirs, name: "/".join([*dirs, name]), st.lists(DIRECTORY, max_size=2), FILE)


def expected(
    keys: set[str], prefix: str, start_after: str | None, delimiter: str | None
) -> tuple[list[str], list[str]]:
    objects, prefixes = [], set()
    for key in keys:
        if not key.startswith(prefix):
            continue
        if start_after is not None and key.encode() <= start_after.encode():
            continue
        rest = key[len(prefix) :]
        if delimiter and delimiter in rest:
            prefixes.add(prefix + rest[: rest.index(delimiter) + 1])
        else:
            objects.append(key)
    return sorted(objects, key=str.encode), sorted(prefixes, key=str.encode)


@settings(max_examples=50, deadline=None)
@given(
    keys=st.sets(KEY, max_size=10),
    delimiter=st.sampled_from([None, "/"]),
    data=st.data(),
)
def test_listing_matches_s3_semantics(
    keys: set[str], delimiter: str | None, data: st.DataObject
) -> None:
    # probes cut from the stored keys hit directory boundaries far more often than random
    cuts = st.sampled_from(sorted(keys) or [""]).flatmap(
        lambda k: st.integers(0, len(k)).map(lambda i: k[:i])
    )
    prefix = data.draw(st.just("") | cuts, label="prefix")
    start_after = data.draw(st.none() | cuts | KEY, label="start_after")

    async def check() -> None:
        with tempfile.TemporaryDirectory(dir=FAST_TMP) as tmp:
            store = LocalStore(Path(tmp), page_size=3)
            async with anyio.create_task_group() as tg:
                for key in keys:
                    tg.start_soon(store.put, key, key.encode())
            pages = [
                page
                async for page in store.list(prefix, start_after=start_after, delimiter=delimiter)
            ]
            got_objects = [o.key for page in pages for o in page.objects]
            got_prefixes = [p for page in pages for p in page.prefixes]
            assert (got_objects, sorted(got_prefixes, key=str.encode)) == expected(
                keys, prefix, start_after, delimiter
            )
            assert all(len(page.objects) + len(page.prefixes) <= 3 for page in pages)
            assert all(o.size == len(o.key.encode()) for page in pages for o in page.objects)

    anyio.run(check)
