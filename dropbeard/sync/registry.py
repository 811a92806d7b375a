"""The root's device registry `devices/registry.json`, updated with conditional writes
(If-None-Match to create, If-Match to update, retried on precondition failure) (IO)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from dropbeard.core.errors import DropbeardError, NotFound, PreconditionFailed, UsageError
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import DeviceRecord, Registry, decode_registry, encode
from dropbeard.store.base import Store

MAX_ATTEMPTS = 20


async def read_registry(store: Store, keys: RootKeys) -> tuple[Registry, str | None]:
    """The registry and its etag; an empty registry and None when there is none yet."""
    try:
        data, etag = await _get_with_etag(store, keys.registry)
    except NotFound:
        return Registry(devices={}), None
    return decode_registry(data, keys.registry), etag


async def _get_with_etag(store: Store, key: str) -> tuple[bytes, str]:
    result = await store.get_if_changed(key, None)
    assert result is not None  # no etag given: never "not modified"
    return result


async def update_registry(
    store: Store, keys: RootKeys, change: Callable[[Registry], Registry]
) -> Registry:
    """Apply `change` to the current registry and write it back atomically; a concurrent
    writer makes us re-read and re-apply. `change` may raise to refuse."""
    for _ in range(MAX_ATTEMPTS):
        current, etag = await read_registry(store, keys)
        updated = change(current)
        data = encode(updated)
        try:
            if etag is None:
                await store.put_if_absent(keys.registry, data)
            else:
                await store.put_if_match(keys.registry, data, etag)
            return updated
        except PreconditionFailed:
            continue
    raise DropbeardError(
        f"updating {keys.registry}: still changing under us after {MAX_ATTEMPTS} attempts"
    )


def register(
    device_id: str, mode: str, now: str, *, take_over: bool, ours: str | None = None
) -> Callable[[Registry], Registry]:
    """A registry change adding `device_id` as active, registered at `now`; refuses an
    active id unless `take_over` (the person says this really is that device, reinstalled)
    or the active record is the one an earlier attempt of this same `init` wrote (its
    `registered_at` is `ours`)."""

    def change(registry: Registry) -> Registry:
        existing = registry.devices.get(device_id)
        mine = ours is not None and existing is not None and existing.registered_at == ours
        if existing is not None and existing.status == "active" and not take_over and not mine:
            raise UsageError(
                f"device id {device_id!r} is already active in this root; choose another "
                "--device-id, or pass --take-over if this machine replaces it"
            )
        devices = dict(registry.devices)
        devices[device_id] = DeviceRecord(status="active", mode=mode, registered_at=now)
        return msgspec.structs.replace(registry, devices=devices)

    return change


def retire(device_id: str, now: str) -> Callable[[Registry], Registry]:
    def change(registry: Registry) -> Registry:
        existing = registry.devices.get(device_id)
        if existing is None:
            raise UsageError(f"no device {device_id!r} in this root")
        devices = dict(registry.devices)
        devices[device_id] = DeviceRecord(
            status="retired",
            mode=existing.mode,
            registered_at=existing.registered_at,
            retired_at=now,
        )
        return msgspec.structs.replace(registry, devices=devices)

    return change
