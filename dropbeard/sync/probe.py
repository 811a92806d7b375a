"""Asking a remote whether it honours the conditional writes dropbeard relies on (IO: two
scratch objects in the device's own folder, written, rewritten, then deleted).

The registry is updated with `If-None-Match: *` (create) and `If-Match: <etag>` (replace),
and `init`'s refusal of a device id already in use rests on them. A server that ignores
either header (s3rver does both) accepts every write, so two devices registering at once
can lose one registration without anyone noticing. `init` probes, and says so plainly.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable

import anyio

from dropbeard.core.errors import PreconditionFailed, StoreError
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Store

IF_NONE_MATCH = "If-None-Match: *"
IF_MATCH = "If-Match"


#: An etag no probe object ever has: a replace naming it is a replace with a stale etag.
STALE_ETAG = '"00000000000000000000000000000000"'


async def ignored_conditions(store: Store, keys: RootKeys, device_id: str) -> list[str]:
    """The conditional writes the server carried out when it had to refuse them: a
    create over an existing object (`IF_NONE_MATCH`), a replace with a stale etag
    (`IF_MATCH`). Empty when it honours both. Store errors are raised as they come.

    Each is asked of a scratch object of its own, both at once: three round trips, where
    one object asked both in turn took five. (Two conditional writes to one key at once
    may be refused as conflicting, 409, by a server that honours both.)"""
    found: dict[str, bool] = {}
    errors: list[BaseException] = []

    async def create_twice(key: str) -> None:
        await store.put_if_absent(key, b"probe: created")
        found[IF_NONE_MATCH] = await _carried_out(store.put_if_absent(key, b"probe: again"))

    async def replace_stale(key: str) -> None:
        await store.put(key, b"probe: written")
        stale = store.put_if_match(key, b"probe: replaced with a stale etag", STALE_ETAG)
        found[IF_MATCH] = await _carried_out(stale)

    async def on_scratch(ask: Callable[[str], Awaitable[None]]) -> None:
        # Each to its end, and its object deleted, whatever the other one met: a write
        # abandoned in flight may still land, after the delete meant to remove it.
        key = keys.probe(device_id, secrets.token_hex(8))
        try:
            await ask(key)
        except Exception as exc:
            errors.append(exc)
        finally:
            with contextlib.suppress(StoreError):
                await store.delete(key)

    # Runs to its end even when cancelled (init failed meanwhile). The store's own
    # timeouts bound it.
    with anyio.CancelScope(shield=True):
        async with anyio.create_task_group() as tg:
            tg.start_soon(on_scratch, create_twice)
            tg.start_soon(on_scratch, replace_stale)
    if errors:
        raise errors[0]
    return [header for header in (IF_NONE_MATCH, IF_MATCH) if found[header]]


async def _carried_out(write: Awaitable[str]) -> bool:
    """Whether a conditional write the server should refuse was carried out."""
    try:
        await write
    except PreconditionFailed:
        return False
    return True


def ignored_warning(description: str, ignored: list[str]) -> str:
    """The one line `init` prints when the server ignores conditional writes."""
    return (
        f"warning: the server at {description} ignores {' and '.join(ignored)} on writes, "
        "so dropbeard cannot trust its device registry: two devices registering at the same "
        "time may lose a registration or both take one device id; prefer a server that "
        "honours conditional writes"
    )
