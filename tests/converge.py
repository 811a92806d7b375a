"""Support for the end-to-end convergence tests: several roots ("devices") sharing one
remote, each driven through the real command line in-process (`dropbeard.cli.main`), and a
raw store on the same remote to look at the bucket or tamper with it (test support, IO).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from dropbeard.cli.main import main
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Entry, decode_head, decode_snapshot
from dropbeard.core.treediff import to_entry
from dropbeard.store.base import Store
from dropbeard.store.local import LocalStore
from dropbeard.sync.treeread import walk
from dropbeard.sync.trees import TreeStore

T = TypeVar("T")
ROOT_ID = "r1"
CONFLICT_TS = r"[0-9]{8}T[0-9]{6}Z"


@dataclass
class Result:
    """One command's exit code and output."""

    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """Runs `dropbeard ARGS` in this process and captures what it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> Result:
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return Result(code, out, err)


@dataclass
class Bucket:
    """The shared remote: the URL devices are initialised with, a raw store on the same base
    for reading and tampering with objects directly, and the CLI the devices run."""

    url: str
    init_args: tuple[str, ...]
    opener: Callable[[], Store]
    cli: Cli
    keys: RootKeys = field(default_factory=lambda: RootKeys(ROOT_ID))

    def run(self, fn: Callable[[Store], Awaitable[T]]) -> T:
        async def go() -> T:
            store = self.opener()
            try:
                return await fn(store)
            finally:
                await store.aclose()

        return anyio.run(go)

    def get(self, key: str) -> bytes:
        return self.run(lambda s: s.get(key))

    def put(self, key: str, data: bytes) -> None:
        self.run(lambda s: s.put(key, data))

    def objects(self) -> dict[str, str]:
        """Every object of the root: key -> etag."""

        async def walk(store: Store) -> dict[str, str]:
            found: dict[str, str] = {}
            async for page in store.list(self.keys.prefix):
                found.update((o.key, o.etag) for o in page.objects)
            return found

        return self.run(walk)

    def has_head(self, device: str) -> bool:
        return self.keys.head(device) in self.objects()

    def listing(self, device: str) -> Listed:
        """What the snapshot `device`'s head points at lists."""
        head = decode_head(self.get(self.keys.head(device)), "head")
        assert head.snapshot is not None and head.tree is not None
        return Listed(head.snapshot, self.tree_entries(head.tree))

    def tree_entries(self, root: str) -> list[Entry]:
        """Every entry of the tree `root`, in tree order (every node verified)."""

        async def read(store: Store) -> list[Entry]:
            trees = TreeStore(store, self.keys)
            return [to_entry(p, e) async for p, e in walk(trees, root)]

        return self.run(read)

    def all_listed_paths(self) -> set[str]:
        """Every path in every snapshot any device ever published."""
        paths: set[str] = set()
        for key in self.objects():
            if "/snapshots/" in key:
                snapshot = decode_snapshot(self.get(key), key)
                paths |= {e.path for e in self.tree_entries(snapshot.tree)}
        return paths

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.put(self.keys.blob(sha), data)
        return sha


@dataclass
class Listed:
    """A device's published listing: its snapshot id and every entry of its tree."""

    snapshot: str
    entries: list[Entry]


def local_bucket(tmp_path: Path, cli: Cli) -> Bucket:
    folder = tmp_path / "remote"
    folder.mkdir()
    return Bucket(str(folder), (), lambda: LocalStore(folder), cli)


def s3_bucket(server: Any, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> Bucket:
    """A fresh prefix in the test bucket of `server` (SeaweedFS, or one of
    `tests.s3servers`); credentials only in the environment."""
    from tests.conftest import make_s3_store

    monkeypatch.setenv("DROPBEAR_S3_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("DROPBEAR_S3_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.delenv("DROPBEAR_S3_SESSION_TOKEN", raising=False)
    prefix = f"conv-{uuid.uuid4().hex[:12]}"
    return Bucket(
        f"s3://{server.bucket}/{prefix}",
        ("--endpoint-url", server.endpoint, "--addressing-style", "path"),
        lambda: make_s3_store(server, prefix),
        cli,
    )


class Device:
    """One root on this machine, acting as one device of root `r1`."""

    def __init__(self, bucket: Bucket, root: Path, device_id: str) -> None:
        self.bucket, self.root, self.id = bucket, root, device_id
        self.cli = bucket.cli

    def init(self, mode: str = "bidirectional") -> Device:
        got = self.cli(
            "init",
            str(self.root),
            "--remote",
            self.bucket.url,
            *self.bucket.init_args,
            "--device-id",
            self.id,
            "--root-id",
            ROOT_ID,
            "--mode",
            mode,
            "-q",
        )
        assert got.code == 0, got.err
        return self

    def sync(self, *flags: str, code: int = 0) -> Result:
        got = self.cli("sync", str(self.root), "--json", "--check-full", *flags)
        if got.code != code:
            why = self.cli("status", str(self.root), "--offline").out
            raise AssertionError(
                f"{self.id}: sync exited {got.code}, not {code}: {got.err}{got.out}{why}"
            )
        return got

    def status(self) -> dict[str, Any]:
        """`status --json`; its exit code is 4 exactly when conflicts, problems or a halted
        delete remain, else 0."""
        got = self.cli("status", str(self.root), "--json")
        result: dict[str, Any] = got.json
        attention = bool(result["conflicts"] or result["problems"] or result["halted"])
        assert got.code == (4 if attention else 0), got.err
        return result

    def path(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, data: str | bytes) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def tree(self) -> dict[str, tuple[object, ...]]:
        return tree(self.root)


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """What a person sees in a root (never `.dropbear/`): per relative path its type,
    permission bits, and bytes or symlink target (special files: only their kind)."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != ".dropbear"]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("symlink", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", mode)
            elif stat.S_ISREG(st.st_mode):
                found[rel] = ("file", mode, Path(full).read_bytes())
            else:  # a FIFO, socket or device: never read (a FIFO would block)
                found[rel] = ("special", stat.S_IFMT(st.st_mode))
    return found


def devices(bucket: Bucket, tmp_path: Path, *names: str, mode: str = "") -> list[Device]:
    """Initialised devices named `names`, each in its own folder under `tmp_path`."""
    made = []
    for name in names:
        d = Device(bucket, tmp_path / f"root-{name}", name)
        made.append(d.init(mode) if mode else d.init())
    return made
