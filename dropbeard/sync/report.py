"""What `dropbeard status` reports of one root: identity, counts, conflicts, problems,
last publish and the other devices, read from the root directly (IO: state.sqlite, store
reads; never writes)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import msgspec

from dropbeard.core.config import RemoteConfig
from dropbeard.core.errors import DropbeardError, OfflineError, single_error
from dropbeard.core.keys import RootKeys
from dropbeard.core.plan import Base
from dropbeard.store.base import Store
from dropbeard.store.factory import open_store
from dropbeard.sync.drift import find_drift
from dropbeard.sync.remote import read_remotes
from dropbeard.sync.root import RootPaths, open_online
from dropbeard.sync.state import State
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.trees import TreeStore


class ConflictView(msgspec.Struct):
    path: str
    copies: list[str]


class DeviceStatus(msgspec.Struct):
    device_id: str
    snapshot: str | None
    published_at: str | None
    seen_our_latest: bool | None


class StatusReport(msgspec.Struct, kw_only=True):
    """One root's status. `halted` is the mass-delete halt of the last pass (with what to
    run); `devices_checked` is False when the bucket was not asked (`--offline`), so an
    empty `devices` then means "not checked", not "none"."""

    root: str
    online: bool
    reason: str | None = None
    root_id: str | None = None
    device_id: str | None = None
    mode: str | None = None
    remote: str | None = None
    counts: dict[str, int] = {}
    conflicts: list[ConflictView] = []
    problems: list[dict[str, str]] = []
    last_snapshot: str | None = None
    devices: list[DeviceStatus] = []
    devices_error: str | None = None
    drift: list[str] = []
    halted: str | None = None
    devices_checked: bool = False
    source: str = "root"

    @property
    def needs_attention(self) -> bool:
        """Conflicts, problems or a halted delete remain (exit 4)."""
        return bool(self.conflicts or self.problems or self.halted)


def _local_part(state: State, report: StatusReport) -> None:
    report.counts = state.statuses()
    report.last_snapshot = state.get_meta("last_snapshot")
    report.halted = state.get_meta("halted")
    report.problems = [
        {"path": p.path, "kind": p.kind, "message": p.message} for p in state.problems()
    ]
    decoder = msgspec.json.Decoder(Base)
    bases = state.bases()
    for path in state.paths_with_status("conflict"):
        base = decoder.decode(bases[path])
        copies = list(base.conflict.copies) if base.conflict else []
        report.conflicts.append(ConflictView(path, copies))


async def gather(
    paths: RootPaths,
    *,
    offline: bool,
    opener: Callable[[RemoteConfig], Store] = open_store,
) -> StatusReport:
    """The status of the root at `paths`; the bucket (opened with `opener`) is read unless
    `offline`."""
    report = StatusReport(root=str(paths.root), online=False)
    try:
        cfg, state = await anyio.to_thread.run_sync(open_online, paths)
    except OfflineError as exc:
        report.reason = str(exc)
        return report
    report.online = True
    report.root_id, report.device_id, report.mode = cfg.root_id, cfg.device_id, cfg.mode
    report.remote = cfg.remote.url
    try:
        await anyio.to_thread.run_sync(_local_part, state, report)
        peers = await anyio.to_thread.run_sync(state.peers)
    finally:
        state.close()
    if offline:
        return report
    report.devices_checked = True
    store = opener(cfg.remote)
    try:
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
        trees = TreeStore(store, keys, NodeCache(paths.trees))
        report.drift = await find_drift(store, trees, cfg.device_id, report.last_snapshot)
        # a device whose objects could not be trusted is listed, unknown (a problem names it)
        report.devices += [DeviceStatus(dev, None, None, None) for dev in read.unreadable]
        for dev, view in sorted(read.devices.items()):
            assert view.head is not None  # read afresh: no head was processed before
            mark = view.head.seen.get(cfg.device_id)
            report.devices.append(
                DeviceStatus(
                    dev,
                    view.head.snapshot,
                    view.head.published_at,
                    None
                    if report.last_snapshot is None
                    else bool(mark and mark.snapshot == report.last_snapshot),
                )
            )
    except (DropbeardError, BaseExceptionGroup) as exc:
        error = exc if isinstance(exc, DropbeardError) else single_error(exc)
        if error is None:
            raise
        report.devices_error = str(error)
        report.devices = [DeviceStatus(d, p.snapshot, None, None) for d, p in peers.items()]
    finally:
        await store.aclose()
    report.devices.sort(key=lambda d: d.device_id)
    return report
