"""`dropbeard devices [retire ID]`: the devices of a root (mode, status, last snapshot,
files, whether each has seen this device's latest), and retiring one (IO: store,
stdout)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

from dropbeard.cli.rootbucket import RootBucket, open_root_bucket
from dropbeard.core.errors import ExitCode, UsageError
from dropbeard.core.retention import format_period
from dropbeard.core.timestamps import utc_iso
from dropbeard.sync.devicelog import snapshot_time
from dropbeard.sync.gc import policy_of
from dropbeard.sync.heads import Heads, device_ids, read_heads
from dropbeard.sync.registry import read_registry, retire, update_registry


class DeviceRow(msgspec.Struct, kw_only=True):
    """One device as `devices` lists it. `seen_our_latest` is None when there is nothing
    to see (this device, one that does not pull, or no snapshot of ours yet)."""

    device_id: str
    this_device: bool
    status: str
    mode: str | None
    snapshot: str | None
    published_at: str | None
    files: int | None
    seen_our_latest: bool | None
    problem: str | None = None


async def devices_command(args: argparse.Namespace) -> int:
    async with open_root_bucket(args.root) as rb:
        if args.action == "retire":
            return await _retire(rb, args)
        rows = await device_rows(rb)
    if args.json:
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
    else:
        print(render_devices(rows))
    return ExitCode.OK


async def device_rows(rb: RootBucket) -> list[DeviceRow]:
    registry, _ = await read_registry(rb.store, rb.keys)
    present = await device_ids(rb.store, rb.keys)
    heads = await read_heads(rb.store, rb.keys, present)
    ours = heads.heads.get(rb.device_id)
    latest = {d: h.snapshot for d, h in heads.heads.items() if h.snapshot is not None}
    reader = rb.reader()
    snaps = await reader.read_all({d: [s] for d, s in latest.items()})
    rows = []
    for device in sorted(set(registry.devices) | set(present)):
        record = registry.devices.get(device)
        head = heads.heads.get(device)
        snap = snaps.get(device, {}).get(latest.get(device, ""))
        rows.append(
            DeviceRow(
                device_id=device,
                this_device=device == rb.device_id,
                status=record.status if record else "unregistered",
                mode=record.mode if record else None,
                snapshot=head.snapshot if head else None,
                published_at=head.published_at if head else None,
                files=snap.files if snap else None,
                seen_our_latest=_seen(device, rb.device_id, heads, ours.snapshot if ours else None),
                problem=heads.failed.get(device),
            )
        )
    return rows


def _seen(device: str, me: str, heads: Heads, ours: str | None) -> bool | None:
    if device == me or ours is None:
        return None
    head = heads.heads.get(device)
    if head is None:
        return False
    mark = head.seen.get(me)
    return mark is not None and mark.snapshot is not None and mark.snapshot >= ours


def render_devices(rows: list[DeviceRow]) -> str:
    seen = {True: "yes", False: "no", None: "-"}
    table = [("DEVICE", "STATUS", "MODE", "LAST SNAPSHOT", "FILES", "SEEN OUR LATEST")]
    for r in rows:
        table.append(
            (
                r.device_id + (" (this device)" if r.this_device else ""),
                r.status,
                r.mode or "-",
                snapshot_time(r.snapshot) if r.snapshot else "-",
                f"{r.files:,}" if r.files is not None else "-",
                seen[r.seen_our_latest],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in table]  # fmt: skip
    lines += [f"{r.device_id}: {r.problem}" for r in rows if r.problem]
    return "\n".join(lines)


async def _retire(rb: RootBucket, args: argparse.Namespace) -> int:
    device = args.device
    if device is None:
        raise UsageError("devices retire: which device? (dropbeard devices retire ID)")
    if device == rb.device_id:
        raise UsageError(
            f"{device} is this device: retire it from another device, or re-init this "
            "folder under a new --device-id"
        )
    registry = await update_registry(rb.store, rb.keys, retire(device, utc_iso(datetime.now(UTC))))
    grace = format_period(policy_of(registry).grace)
    out: dict[str, Any] = {"retired": device, "grace": grace}
    if args.json:
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
    elif not args.quiet:
        print(
            f"retired {device}: sync and status ignore it from now on; gc keeps its last "
            f"snapshot for {grace}, then deletes its folder"
        )
    return ExitCode.OK
