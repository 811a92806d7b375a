"""The aiobotocore client an `S3Store` talks through: credentials, settings, and one client
opened on first need and kept (IO: opens the connection pool; reads the environment).

Settings that work beyond AWS: request checksums only when an operation requires them,
path-style addressing on request, no retries inside botocore (transient errors surface as
`Unavailable` and `RetryingStore` retries them). The pool is sized to the store's
concurrency, its small requests included. Each request costs one round trip and no
second hash of a known payload (`dropbeard.store.s3requests`); single-object GET, HEAD,
PUT and DELETE and listing pages skip botocore's per-request machinery once it has shown
what they look like (`dropbeard.store.s3objects`).

An endpoint given with fixed credentials, no proxy and shapes an earlier process learnt
(`dropbeard.store.s3shapecache`) needs no client at all until a request does: the client,
and the import of aiobotocore, aiohttp and botocore behind it, wait until then. Over
https, dropbeard's own connections verify the server as botocore's default would
(`s3wire.default_tls`); an AWS config file that may name another CA bundle, or a server
that context refuses, leaves https to the client.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any
from urllib.parse import urlsplit

import anyio

from dropbeard.core.imports import import_quietly
from dropbeard.store.base import SMALL_REQUESTS_PER_SLOT
from dropbeard.store.s3errors import translate
from dropbeard.store.s3objects import Direct, ObjectRequests
from dropbeard.store.s3shape import Shape
from dropbeard.store.s3shapecache import Kept, ShapeCache, cache_folder, identity
from dropbeard.store.s3sigv4 import Credentials

_LOADER: Any = None
#: Environment variables that route requests through a proxy (urllib's names, any case).
_PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy")


def model_loader() -> Any:
    """botocore's data loader (service models, endpoints), shared by every store in the
    process: it is read-only data, and parsing the S3 model again costs ~0.3 s (blocking
    the event loop) for each new session."""
    global _LOADER
    if _LOADER is None:
        from dropbeard.store.s3models import Loader

        _LOADER = Loader()
    return _LOADER


def credentials_from_env(env: dict[str, str] | None = None) -> Credentials | None:
    """DROPBEAR_S3_* variables, which take precedence over the standard AWS chain."""
    env = dict(os.environ) if env is None else env
    key = env.get("DROPBEAR_S3_ACCESS_KEY_ID")
    secret = env.get("DROPBEAR_S3_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, env.get("DROPBEAR_S3_SESSION_TOKEN") or None)
    return None


def _on_endpoint(kept: Kept, endpoint_url: str, bucket: str) -> Kept:
    """The kept shapes that send to `endpoint_url` (or, addressed by virtual host, to
    `bucket` under it): a cache file that names another server is not followed."""
    endpoint = urlsplit(endpoint_url)
    hosts = {endpoint.netloc.lower(), f"{bucket}.{endpoint.netloc}".lower()}

    def fits(shape: Shape) -> bool:
        url = urlsplit(shape.url_prefix)
        return url.scheme.lower() == endpoint.scheme.lower() and url.netloc.lower() in hosts

    return Kept(
        kept.format,
        {k: v for k, v in kept.shapes.items() if fits(v)},
        {k: v for k, v in kept.seen.items() if fits(v)},
    )


def _config_names_a_ca_bundle() -> bool:
    """True if the AWS config file may set `ca_bundle` (for some profile): then only
    botocore knows which bundle verifies the endpoint."""
    path = os.environ.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config")
    try:
        with open(path, "rb") as f:
            return b"ca_bundle" in f.read(1 << 20)
    except OSError:
        return False


class S3Connection:
    """One S3 client for one store, created on first `client()` and closed by `aclose()`.
    `description` names the store in the error of a failed connection."""

    def __init__(
        self,
        description: str,
        *,
        bucket: str | None = None,
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
        self._settings: dict[str, Any] = {
            "addressing_style": addressing_style,
            "max_pool_connections": max(concurrency * SMALL_REQUESTS_PER_SLOT + 8, 10),
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._lock = anyio.Lock()
        self._cache: ShapeCache | None = None
        kept = Kept()
        signing = self._fixed_signing()
        direct = None
        if signing is not None and bucket is not None:
            self._cache = ShapeCache(
                cache_folder(),
                identity(
                    {
                        "endpoint": endpoint_url,
                        "region": self._region,
                        "addressing_style": addressing_style,
                        "bucket": bucket,
                        "access_key_id": signing.access_key_id,
                        "profile": profile,  # its settings shape requests too
                    }
                ),
            )
            kept = _on_endpoint(self._cache.load(), endpoint_url or "", bucket)
            direct = Direct(
                signing, connect_timeout, read_timeout, self._settings["max_pool_connections"]
            )
        self._kept = kept
        self._objects = ObjectRequests(
            self.client, known=kept.shapes, seen=kept.seen, direct=direct
        )

    def _fixed_signing(self) -> Credentials | None:
        """The credentials botocore would sign with, when they are fixed and known without
        it, and its requests go out as dropbeard's own would: an endpoint given, over
        plain http, or over https verified against the CA bundle botocore would use (not
        one named in the AWS config file); no proxy; keys given (or in the environment,
        with no profile to prefer). None otherwise."""
        endpoint = (self._endpoint_url or "").lower()
        if endpoint.startswith("https://"):
            if _config_names_a_ca_bundle():
                return None
        elif not endpoint.startswith("http://"):
            return None
        env = os.environ
        if any(env.get(name) or env.get(name.upper()) for name in _PROXY_ENV):
            return None
        if self._credentials is not None:
            return self._credentials
        if self._profile or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE"):
            return None
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret or env.get("AWS_CREDENTIAL_EXPIRATION"):
            return None
        return Credentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)

    async def client(self) -> Any:
        """The aiobotocore S3 client, opened on the first call."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    for module in ("dropbeard.store.tlsdefaults", "aiobotocore.session"):
                        await anyio.to_thread.run_sync(import_quietly, module)
                    client = await self._open()
                    self._objects.attach(client)
                    self._client = client
        return self._client

    async def objects(self) -> ObjectRequests:
        """GET, HEAD, PUT and DELETE of single objects, and listing pages."""
        return self._objects

    async def _open(self) -> Any:
        from aiobotocore.session import get_session
        from botocore.config import Config

        from dropbeard.store.s3requests import streamline, tune_parsers

        config = Config(
            parameter_validation=False,  # dropbeard builds every request itself
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": self._settings["addressing_style"]},
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=self._settings["max_pool_connections"],
            connect_timeout=self._settings["connect_timeout"],
            read_timeout=self._settings["read_timeout"],
            tcp_keepalive=True,
        )
        session = get_session()
        session.register_component("data_loader", model_loader())
        tune_parsers(session)
        if self._profile:
            session.set_config_variable("profile", self._profile)
        kwargs: dict[str, Any] = {
            "region_name": self._region,
            "endpoint_url": self._endpoint_url,
            "config": config,
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
        """Close the connections; keep the shapes learnt for the next process."""
        self._objects.close()
        known, seen = self._objects.learnt()
        kept = Kept(shapes=known, seen=seen)
        if self._cache is not None and (known or seen) and kept != self._kept:
            await anyio.to_thread.run_sync(self._cache.save, kept)
            self._kept = kept
        await self._stack.aclose()
        self._client = None


__all__ = ["Credentials", "S3Connection", "credentials_from_env", "model_loader"]
