"""The registry's updates keep what they do not change (IO, on a real local store)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Registry
from dropbeard.store.local import LocalStore
from dropbeard.sync.registry import read_registry, register, retire, update_registry

NOW = "2026-05-22T18:05:00Z"


@pytest.mark.anyio
async def test_registering_and_retiring_keep_the_retention_policy(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    keys = RootKeys("notes")
    await update_registry(store, keys, register("laptop", "bidirectional", NOW, take_over=False))

    def policy(registry: Registry) -> Registry:
        return msgspec.structs.replace(registry, retention={"all": "3h"}, grace="2h")

    await update_registry(store, keys, policy)
    await update_registry(store, keys, register("desktop", "bidirectional", NOW, take_over=False))
    await update_registry(store, keys, retire("laptop", NOW))
    registry, _ = await read_registry(store, keys)
    assert (registry.retention, registry.grace) == ({"all": "3h"}, "2h")
    assert registry.devices["laptop"].status == "retired"
    assert registry.devices["desktop"].status == "active"
