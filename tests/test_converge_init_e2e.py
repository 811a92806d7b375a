"""`init` end to end through the CLI, where it meets a bucket that already knows the device:
an earlier `init` whose registration landed unseen, and a device id taken over from an
earlier holder that published (SPEC 1.5, 4 step 1)."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

import dropbeard.cli.init as cli_init
from dropbeard.core.model import decode_registry
from dropbeard.store.base import Store
from dropbeard.store.forwarding import ForwardingStore
from tests.converge import ROOT_ID, Bucket, Device, devices
from tests.faults import FaultStore
from tests.timedstore import Call, Timed


def timed_inits(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """From now on, the store calls of every `init` the test runs, each held 50 ms
    (`Timed`)."""
    made: list[Call] = []
    real = cli_init.open_store
    monkeypatch.setattr(
        cli_init,
        "open_store",
        lambda *a, **k: Timed(real(*a, **k), made),  # type: ignore[arg-type]
    )
    return made


def registry_writes(bucket: Bucket, calls: list[Call]) -> list[float]:
    """When each write of the registry ended."""
    return [end for op, key, _, end in calls
            if key == bucket.keys.registry and op.startswith("put")]  # fmt: skip


def init_args(bucket: Bucket, root: Path, device: str, *extra: str) -> list[str]:
    return ["init", str(root), "--remote", bucket.url, *bucket.init_args,
            "--root-id", ROOT_ID, "--device-id", device, "-q", *extra]  # fmt: skip


@pytest.mark.parametrize(
    "write", ["put_if_absent", "put_if_match"], ids=["creating-the-registry", "updating-it"]
)
def test_an_init_whose_registration_landed_unseen_can_be_run_again(
    remote: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    if write == "put_if_match":  # the registry exists already: it is updated
        devices(remote, tmp_path, "first")
    a = Device(remote, tmp_path / "root-a", "a")
    real = cli_init.open_store

    def losing_the_reply(*args: object, **kwargs: object) -> Store:
        faults = FaultStore(real(*args, **kwargs))  # type: ignore[arg-type]
        faults.lose_reply(write, prefix=remote.keys.registry)  # after every retry
        return faults

    with monkeypatch.context() as patched:
        patched.setattr(cli_init, "open_store", losing_the_reply)
        got = remote.cli(*init_args(remote, a.root, "a"))
    assert got.code == 10, got.err
    registry = decode_registry(remote.get(remote.keys.registry), "registry")
    assert registry.devices["a"].status == "active"  # it landed
    assert remote.cli("sync", str(a.root)).code == 3  # not a root yet

    a.init()  # the same init again: no "already active", no --take-over needed
    a.write("note.txt", "a's note\n")
    a.sync()
    assert not a.path(".dropbear.init-tmp").exists()
    again = decode_registry(remote.get(remote.keys.registry), "registry")
    assert again.devices["a"] == registry.devices["a"]

    # and the guard still refuses the id to any other folder
    other = remote.cli(*init_args(remote, tmp_path / "elsewhere", "a"))
    assert other.code == 2 and "already active" in other.err


def test_a_refused_init_leaves_nothing_behind(remote: Bucket, tmp_path: Path) -> None:
    devices(remote, tmp_path, "a")
    folder = tmp_path / "elsewhere"

    got = remote.cli(*init_args(remote, folder, "a"))

    assert got.code == 2
    assert not folder.exists()  # not even the folder init made for it


def test_a_device_id_taken_over_never_deletes_what_its_old_holder_published(
    remote: Bucket, tmp_path: Path
) -> None:
    """The new folder starts from nothing the old one agreed on: what it lacks is not a
    delete. It takes the old holder's ids though, so its first delete is a new seq that
    the other devices read."""
    old, b = devices(remote, tmp_path, "a", "b")
    for name in ("x.txt", "y.txt", "z.txt"):
        old.write(name, f"{name} from the old laptop\n")
    old.sync()
    old.path("z.txt").unlink()
    old.sync()  # tombstone 1
    b.sync()

    new = Device(remote, tmp_path / "reinstalled", "a")
    assert remote.cli(*init_args(remote, new.root, "a", "--take-over")).code == 0
    new.write("fresh.txt", "made on the new laptop\n")
    first = new.sync().json
    assert first["tombstones"] == 0 and first["halted"] is None
    b.sync()
    assert sorted(b.tree()) == ["fresh.txt", "x.txt", "y.txt"]
    new.sync()
    assert sorted(new.tree()) == ["fresh.txt", "x.txt", "y.txt"]

    new.path("x.txt").unlink()
    new.sync()
    assert remote.keys.tombstone("a", 2) in remote.objects()
    b.sync()
    assert sorted(b.tree()) == sorted(new.tree()) == ["fresh.txt", "y.txt"]
    assert b.status()["conflicts"] == []


def test_init_counts_what_it_will_receive_while_it_registers(
    remote: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a slow link `init` waits for its registration's round trips, not also for a
    count done after them: the count reads the others' heads and snapshots meanwhile,
    all the snapshots at once."""
    laptop, desktop = devices(remote, tmp_path, "laptop", "desktop")
    for name in ("a.txt", "b.txt", "c.txt"):
        laptop.write(name, f"{name}\n")
    laptop.sync()
    desktop.sync()
    calls = timed_inits(monkeypatch)

    got = remote.cli("init", str(tmp_path / "new"), "--remote", remote.url,
                     *remote.init_args, "--device-id", "new")  # fmt: skip

    assert got.code == 0, got.err
    assert "3 files (18 B) to receive from desktop, laptop" in got.out
    registry_write = registry_writes(remote, calls)
    counting = min(start for op, key, start, _ in calls
                   if op == "list_page" and key == remote.keys.devices_prefix)  # fmt: skip
    snapshots = [(start, end) for op, key, start, end in calls
                 if op == "get" and "/snapshots/" in key]  # fmt: skip
    heads = [start for op, key, start, _ in calls
             if key in (remote.keys.head("laptop"), remote.keys.head("desktop"))]  # fmt: skip
    assert len(registry_write) == 1 and len(snapshots) == 2
    assert counting < registry_write[0]  # counting began while it registered
    assert min(heads) < registry_write[0]  # and read the heads meanwhile
    assert max(start for start, _ in snapshots) < min(end for _, end in snapshots)


def test_init_probes_the_server_while_it_registers(
    remote: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe of conditional writes (three round trips) changes nothing of the
    registration, only what init says: it runs while the device registers, not after."""
    calls = timed_inits(monkeypatch)
    got = remote.cli(*init_args(remote, tmp_path / "new", "new"))
    assert got.code == 0, got.err
    registry_write = registry_writes(remote, calls)
    probe = [(op, start, end) for op, key, start, end in calls if "/probe-" in key]
    by_key: dict[str, list[str]] = {}
    for op, key, _, _ in calls:
        if "/probe-" in key:
            by_key.setdefault(key, []).append(op)
    assert sorted(by_key.values()) == [
        ["put", "put_if_match", "delete"],
        ["put_if_absent", "put_if_absent", "delete"],
    ]
    assert len(registry_write) == 1
    assert probe[0][1] < registry_write[0]  # probing began before the registration ended
    # Both questions at once, each on its own object: three round trips, not five.
    firsts = sorted((s, e) for op, s, e in probe if op in ("put", "put_if_absent"))[:2]
    assert max(s for s, _ in firsts) < min(e for _, e in firsts)
    assert not [k for k in remote.objects() if "/probe-" in k]  # its scratch object is gone


class LandingLate(ForwardingStore):
    """The probe's first write lands 0.2 s after it is sent and answers after 0.3 s: a
    server finishes a request it received, whether or not the client still waits."""

    def __init__(self, inner: Store, bucket: Bucket, landings: list[threading.Timer]) -> None:
        super().__init__(inner)
        self.bucket, self.landings = bucket, landings

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if "/probe-" not in key or self.landings:
            return await self.inner.put_if_absent(key, data, sha256=sha256)
        landing = threading.Timer(0.2, self.bucket.put, (key, data))
        self.landings.append(landing)
        landing.start()
        await anyio.sleep(0.3)
        return (await self.inner.head(key)).etag


def test_a_refused_init_leaves_no_probe_behind(
    remote: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An init refused (the device id is another folder's) while its probe's first write
    is on its way waits for that write before it deletes the probe's scratch object:
    abandoned, the write would land after the delete and stay."""
    devices(remote, tmp_path, "laptop")
    before = remote.objects()
    landings: list[threading.Timer] = []
    real = cli_init.open_store
    monkeypatch.setattr(
        cli_init,
        "open_store",
        lambda *a, **k: LandingLate(real(*a, **k), remote, landings),  # type: ignore[arg-type]
    )
    got = remote.cli(*init_args(remote, tmp_path / "elsewhere", "laptop"))
    assert got.code == 2 and "already active" in got.err
    assert len(landings) == 1
    landings[0].join()
    assert remote.objects() == before


def test_init_that_cannot_count_what_it_will_receive_still_registers(
    remote: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (laptop,) = devices(remote, tmp_path, "laptop")
    laptop.write("a.txt", "a\n")
    laptop.sync()
    real = cli_init.open_store

    def unreadable_snapshots(*args: object, **kwargs: object) -> Store:
        faults = FaultStore(real(*args, **kwargs))  # type: ignore[arg-type]
        faults.fail("get", times=100, prefix=remote.keys.snapshots_prefix("laptop"))
        return faults

    new = Device(remote, tmp_path / "new", "new")
    with monkeypatch.context() as patched:
        patched.setattr(cli_init, "open_store", unreadable_snapshots)
        got = remote.cli(*init_args(remote, new.root, "new")[:-1])  # not quiet

    assert got.code == 0, got.err
    assert "joined root" in got.out and "to receive" not in got.out
    registry = decode_registry(remote.get(remote.keys.registry), "registry")
    assert registry.devices["new"].status == "active"
    new.sync()
    assert new.tree() == laptop.tree()
