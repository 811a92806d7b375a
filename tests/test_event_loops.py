"""The `anyio_backend` fixture (tests/conftest.py) runs every async test twice: once on the
standard asyncio loop and once on uvloop, the loop the CLI and the daemon use."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.anyio


async def test_each_backend_runs_the_loop_it_names(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    name, options = anyio_backend
    loop = type(asyncio.get_running_loop())
    assert name == "asyncio"
    if options["use_uvloop"]:
        assert loop.__module__.startswith("uvloop"), loop
    else:
        assert loop.__module__.startswith("asyncio"), loop
