"""The aiobotocore client an `S3Store` talks through: credentials, settings, and one client
opened on first use and kept (IO: opens the connection pool; reads the environment).

Settings that work beyond AWS: request checksums only when an operation requires them,
path-style addressing on request, no retries inside botocore (transient errors surface as
`Unavailable` and `RetryingStore` retries them). The pool is sized to the store's
concurrency, its small requests included. Each request costs one round trip and no
second hash of a known payload (`dropbeard.store.s3requests`); single-object GET, HEAD
and PUT skip botocore's per-request machinery once it has shown what they look like
(`dropbeard.store.s3objects`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import anyio
import msgspec
from aiobotocore.session import AioSession, get_session
from botocore.config import Config
from botocore.loaders import JSONFileLoader, Loader, instance_cache

from dropbeard.store.base import SMALL_REQUESTS_PER_SLOT
from dropbeard.store.s3errors import translate
from dropbeard.store.s3objects import ObjectRequests
from dropbeard.store.s3requests import streamline, tune_parsers

_LOADER: Loader | None = None


class _JSONFiles(JSONFileLoader):  # type: ignore[misc]
    """botocore's model files (`.json`, `.json.gz`) decoded by msgspec: about three times
    faster than the standard library with the OrderedDict hook botocore uses (plain dicts
    keep the order too). A fresh process reads ~3.5 MB of them for its first client."""

    def _load_file(self, full_path: str, open_method: Any) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as fp:
            return msgspec.json.decode(fp.read())


class _Loader(Loader):  # type: ignore[misc]
    """botocore's data loader, cheaper for a one-shot command: model files decoded by
    msgspec, and the services it knows listed from their folders' names (botocore also
    lists every version folder of all ~400 services, ~900 listings, only to check the
    one asked for: `determine_latest_version` still fails for a service with no model
    of that type)."""

    FILE_LOADER_CLASS = _JSONFiles

    @instance_cache  # type: ignore[untyped-decorator]
    def list_available_services(self, type_name: str) -> list[str]:
        found: set[str] = set()
        for folder in self._potential_locations():
            found.update(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        return sorted(found)


def model_loader() -> Loader:
    """botocore's data loader (service models, endpoints), shared by every store in the
    process: it is read-only data, and parsing the S3 model again costs ~0.3 s (blocking
    the event loop) for each new session."""
    global _LOADER
    if _LOADER is None:
        _LOADER = _Loader()
    return _LOADER


class Credentials(msgspec.Struct, frozen=True):
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print secrets, even in a traceback's locals
        return f"Credentials(access_key_id={self.access_key_id[:4]}…)"


def credentials_from_env(env: dict[str, str] | None = None) -> Credentials | None:
    """DROPBEAR_S3_* variables, which take precedence over the standard AWS chain."""
    env = dict(os.environ) if env is None else env
    key = env.get("DROPBEAR_S3_ACCESS_KEY_ID")
    secret = env.get("DROPBEAR_S3_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, env.get("DROPBEAR_S3_SESSION_TOKEN") or None)
    return None


class S3Connection:
    """One S3 client for one store, created on first `client()` and closed by `aclose()`.
    `description` names the store in the error of a failed connection."""

    def __init__(
        self,
        description: str,
        *,
        endpoint_url: str | None,
        region: str | None,
        profile: str | None,
        addressing_style: str,
        credentials: Credentials | None,
        concurrency: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self._description = description
        self._endpoint_url = endpoint_url
        self._region = region or "us-east-1"
        self._profile = profile
        self._credentials = credentials or credentials_from_env()
        self._config = Config(
            parameter_validation=False,  # dropbeard builds every request itself
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": addressing_style},
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max(concurrency * SMALL_REQUESTS_PER_SLOT + 8, 10),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            tcp_keepalive=True,
        )
        self._client: Any = None
        self._objects: ObjectRequests | None = None
        self._stack = contextlib.AsyncExitStack()
        self._lock = anyio.Lock()

    async def client(self) -> Any:
        """The aiobotocore S3 client, opened on the first call."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await self._open()
                    self._objects = ObjectRequests(self._client)
        return self._client

    async def objects(self) -> ObjectRequests:
        """GET, HEAD and PUT of single objects through the client (opened if need be)."""
        await self.client()
        assert self._objects is not None
        return self._objects

    async def _open(self) -> Any:
        session: AioSession = get_session()
        session.register_component("data_loader", model_loader())
        tune_parsers(session)
        if self._profile:
            session.set_config_variable("profile", self._profile)
        kwargs: dict[str, Any] = {
            "region_name": self._region,
            "endpoint_url": self._endpoint_url,
            "config": self._config,
        }
        if (self._endpoint_url or "").lower().startswith("http://"):
            # No TLS to verify: without this, each client loads the CA bundle (~35 ms).
            kwargs["verify"] = False
        if self._credentials is not None:
            kwargs["aws_access_key_id"] = self._credentials.access_key_id
            kwargs["aws_secret_access_key"] = self._credentials.secret_access_key
            kwargs["aws_session_token"] = self._credentials.session_token
        with translate("connecting to", self._description):
            client = await self._stack.enter_async_context(session.create_client("s3", **kwargs))
        streamline(client)
        return client

    async def aclose(self) -> None:
        if self._objects is not None:
            self._objects.close()
        await self._stack.aclose()
        self._client = self._objects = None
