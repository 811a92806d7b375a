"""Which root `init` joins (SPEC 5: the one the remote holds, unless told otherwise), and
what the other devices of a joined root will send (IO: one listing of `roots/`; the other
devices' heads and snapshots)."""

from __future__ import annotations

import contextlib

import anyio
import msgspec

from dropbeard.core.config import RootConfig
from dropbeard.core.errors import UsageError
from dropbeard.core.keys import ROOTS_PREFIX, RootKeys, root_id_of
from dropbeard.core.model import decode_snapshot
from dropbeard.store.base import Store
from dropbeard.sync.remote import read_remotes
from dropbeard.sync.workers import first_error


class RootChoice(msgspec.Struct, frozen=True):
    """The root `init` settles on: `joined` if the remote already held it; `existing`
    every root the remote holds."""

    root_id: str
    joined: bool
    existing: list[str]


async def remote_roots(store: Store) -> list[str]:
    """The ids of the roots a remote holds (one listing of `roots/`)."""
    found: list[str] = []
    async for page in store.list(ROOTS_PREFIX, delimiter="/"):
        for prefix in page.prefixes:
            with contextlib.suppress(ValueError):  # not a folder dropbeard made
                found.append(root_id_of(prefix))
    return sorted(found)


async def choose_root(store: Store, proposed: str, *, typed: bool, new_root: bool) -> RootChoice:
    """The root to join or create: `proposed` if the person `typed` it; else the one root
    the remote holds; else, when it holds several, a UsageError listing them unless
    `new_root`; else `proposed` (the folder's name)."""
    existing = await remote_roots(store)
    if typed:
        return RootChoice(proposed, proposed in existing, existing)
    if new_root:
        if proposed in existing:
            raise UsageError(
                f"the remote already holds a root {proposed!r}: pass --root-id NEW_ID to "
                "create another, or leave out --new-root to join it"
            )
        return RootChoice(proposed, False, existing)
    if len(existing) == 1:
        return RootChoice(existing[0], True, existing)
    if existing:
        raise UsageError(
            f"the remote holds several roots ({', '.join(existing)}): pass --root-id ID to "
            "join one of them, or --new-root to create another"
        )
    return RootChoice(proposed, False, existing)


class Incoming(msgspec.Struct, frozen=True):
    """What the other devices of a joined root hold: the files this device will receive
    and their bytes (the most any one device's snapshot lists: devices in sync list the
    same), and who publishes them."""

    files: int
    bytes: int
    devices: list[str]


async def incoming(store: Store, cfg: RootConfig) -> Incoming:
    """Count what the other active devices publish (their latest snapshots)."""
    keys = RootKeys(cfg.root_id)
    read = await read_remotes(
        store,
        keys,
        None,
        device_id=cfg.device_id,
        peers={},
        registry=None,
        registry_etag=None,
    )
    latest = {d: v.snapshot for d, v in read.devices.items() if v.snapshot is not None}
    counts: dict[str, tuple[int, int]] = {}

    async def count(dev: str, name: str) -> None:
        key = keys.snapshot(dev, name)
        snapshot = decode_snapshot(await store.get(key), key)
        counts[dev] = (snapshot.files, snapshot.bytes)

    with first_error():  # one round trip for all the snapshots, not one each
        async with anyio.create_task_group() as tg:
            for dev, name in latest.items():
                tg.start_soon(count, dev, name)
    files = max((f for f, _ in counts.values()), default=0)
    size = max((b for _, b in counts.values()), default=0)
    return Incoming(files, size, sorted(counts))
