"""Asking a remote whether it honours the conditional writes dropbeard relies on (IO: one
scratch object in the device's own folder, written, rewritten, then deleted).

The registry is updated with `If-None-Match: *` (create) and `If-Match: <etag>` (replace),
and `init`'s refusal of a device id already in use rests on them. A server that ignores
either header (s3rver does both) accepts every write, so two devices registering at once
can lose one registration without anyone noticing. `init` probes, and says so plainly.
"""

from __future__ import annotations

import contextlib
import secrets

import anyio

from dropbeard.core.errors import PreconditionFailed, StoreError
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Store

IF_NONE_MATCH = "If-None-Match: *"
IF_MATCH = "If-Match"


async def ignored_conditions(store: Store, keys: RootKeys, device_id: str) -> list[str]:
    """The conditional writes the server carried out when it had to refuse them: a
    create over an existing object (`IF_NONE_MATCH`), a replace with a stale etag
    (`IF_MATCH`). Empty when it honours both. Store errors are raised as they come."""
    key = keys.probe(device_id, secrets.token_hex(8))
    ignored: list[str] = []
    # Runs to its end even when cancelled (init failed meanwhile): a write abandoned in
    # flight may still land, after the delete meant to remove it. The store's own
    # timeouts bound it.
    with anyio.CancelScope(shield=True):
        try:
            first = await store.put_if_absent(key, b"probe: created")
            try:
                await store.put_if_absent(key, b"probe: created again")
                ignored.append(IF_NONE_MATCH)
            except PreconditionFailed:
                pass
            await store.put(key, b"probe: replaced")  # `first` is stale from now on
            try:
                await store.put_if_match(key, b"probe: replaced with a stale etag", first)
                ignored.append(IF_MATCH)
            except PreconditionFailed:
                pass
        finally:
            with contextlib.suppress(StoreError):
                await store.delete(key)
    return ignored


def ignored_warning(description: str, ignored: list[str]) -> str:
    """The one line `init` prints when the server ignores conditional writes."""
    return (
        f"warning: the server at {description} ignores {' and '.join(ignored)} on writes, "
        "so dropbeard cannot trust its device registry: two devices registering at the same "
        "time may lose a registration or both take one device id; prefer a server that "
        "honours conditional writes"
    )
