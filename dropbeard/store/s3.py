"""S3Store: the `Store` protocol over any S3-compatible server, with aiobotocore (IO).

Every request goes through the store's one client (`dropbeard.store.s3client`). A file is
uploaded with one PUT (no multipart: dropbeard stores large files as chunks of at most
16 MiB, SPEC 1.6): read whole up to WHOLE_PUT, else streamed from disk. Object bytes sent
and received count against the store's `Bandwidth`, when it has one.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from dropbeard.core.errors import (
    IntegrityError,
    LocalFileError,
    NotFound,
    PreconditionFailed,
    Unavailable,
)
from dropbeard.store.bandwidth import Bandwidth, spend
from dropbeard.store.base import FileSlot, ListPage, ObjectInfo, Progress, validate_key
from dropbeard.store.s3body import FileBody
from dropbeard.store.s3client import S3Connection
from dropbeard.store.s3errors import translate
from dropbeard.store.s3objects import ObjectReply
from dropbeard.store.s3sigv4 import PAYLOAD_SHA256, Credentials
from dropbeard.store.slot import open_dest

#: Bytes read from a download's body at a time.
CHUNK = 1024 * 1024
#: Files up to this size are read whole and sent with one PUT; larger ones are streamed.
WHOLE_PUT = 16 * CHUNK
#: Bodies up to this size are hashed on the event loop (~0.1 ms), larger ones beside it.
INLINE_HASH = 256 * 1024


class S3Store:
    """Objects under `s3://bucket/prefix/`. See `dropbeard.store.base.Store` for the contract."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        addressing_style: str = "auto",
        credentials: Credentials | None = None,
        concurrency: int = 16,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        bandwidth: Bandwidth | None = None,
    ) -> None:
        self.bucket = bucket
        self._bandwidth = bandwidth
        self.prefix = prefix.strip("/")
        self.description = f"s3://{bucket}/{self.prefix}".rstrip("/")
        if endpoint_url:
            self.description += f" at {endpoint_url}"
        self._connection = S3Connection(
            self.description,
            bucket=bucket,
            endpoint_url=endpoint_url,
            region=region,
            profile=profile,
            addressing_style=addressing_style,
            credentials=credentials,
            concurrency=concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    # -- plumbing -------------------------------------------------------------------

    def _s3_key(self, key: str) -> str:
        """The S3 object key of store key `key` (validated)."""
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _store_key(self, s3_key: str) -> str:
        return s3_key[len(self.prefix) + 1 :] if self.prefix else s3_key

    async def _client(self) -> Any:
        """The aiobotocore S3 client, opened on first use."""
        return await self._connection.client()

    async def aclose(self) -> None:
        await self._connection.aclose()

    # -- reads ----------------------------------------------------------------------

    async def get(self, key: str) -> bytes:
        objects = await self._connection.objects()
        with translate("reading", key):
            data = (await objects.get(self.bucket, self._s3_key(key))).body
        await spend(self._bandwidth, len(data))
        return data

    async def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        objects = await self._connection.objects()
        conditions = {"IfNoneMatch": etag} if etag else {}
        with translate("reading", key, not_modified_ok=True) as outcome:
            reply = await objects.get(self.bucket, self._s3_key(key), **conditions)
        if outcome.not_modified:
            return None
        await spend(self._bandwidth, len(reply.body))
        if etag and reply.etag == etag:  # servers that ignore If-None-Match on GET
            return None
        return reply.body, reply.etag

    async def get_file(
        self,
        key: str,
        dest: Path | FileSlot,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        objects = await self._connection.objects()
        hasher = hashlib.sha256() if expected_sha256 else None

        async def fill(reply: ObjectReply, body: Any) -> ObjectInfo:
            info = _info(key, reply)
            if isinstance(dest, FileSlot) and info.size > dest.size:
                raise IntegrityError(
                    f"downloading {key}: the object has {info.size} bytes, "
                    f"not the {dest.size} expected",
                    key,
                )
            out = await anyio.to_thread.run_sync(open_dest, dest, key, info.size)
            got = 0
            try:
                while pieces := await _pieces_up_to(body, CHUNK):
                    n = sum(map(len, pieces))
                    await spend(self._bandwidth, n)
                    await anyio.to_thread.run_sync(_write_pieces, out, pieces, hasher, key)
                    got += n
                    if progress:
                        progress(n)
            finally:  # cancelled too: a direct download holds two descriptors
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(out.close)
            if got != info.size:  # the connection ended early without saying so
                raise Unavailable(f"downloading {key}: got {got} of its {info.size} bytes", key)
            return info

        with translate("downloading", key):
            info = await objects.get_streamed(self.bucket, self._s3_key(key), fill)
        if hasher is not None and hasher.hexdigest() != expected_sha256:
            raise IntegrityError(
                f"downloading {key}: content does not match its SHA-256 "
                f"(expected {expected_sha256}, got {hasher.hexdigest()})",
                key,
            )
        return info

    async def head(self, key: str) -> ObjectInfo:
        objects = await self._connection.objects()
        with translate("checking", key):
            reply = await objects.head(self.bucket, self._s3_key(key))
        return _info(key, reply)

    async def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        delimiter: str | None = None,
    ) -> AsyncIterator[ListPage]:
        objects = await self._connection.objects()
        params: dict[str, Any] = {
            "Prefix": (f"{self.prefix}/{prefix}" if self.prefix else prefix),
            "MaxKeys": 1000,
        }
        if start_after:
            params["StartAfter"] = self._s3_key(start_after)
        if delimiter:
            params["Delimiter"] = delimiter
        while True:
            with translate("listing", prefix or "/", listing=True):
                page = await objects.list_page(self.bucket, params)
            found = [
                ObjectInfo(
                    self._store_key(o.key),
                    o.size,
                    o.etag,
                    o.last_modified.timestamp() if o.last_modified else 0.0,
                )
                for o in page.objects
            ]
            prefixes = [self._store_key(p) for p in page.prefixes]
            if found or prefixes:
                yield ListPage(found, prefixes)
            if not page.truncated or not page.next_token:
                return
            params["ContinuationToken"] = page.next_token
            params.pop("StartAfter", None)

    # -- writes ---------------------------------------------------------------------

    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        return await self._put_object(key, data, "writing", sha256)

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        return await self._put_object(key, data, "creating", sha256, IfNoneMatch="*")

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        try:
            return await self._put_object(key, data, "replacing", None, IfMatch=etag)
        except NotFound as exc:
            raise PreconditionFailed(
                f"replacing {key}: it no longer exists (expected etag {etag})", key
            ) from exc

    async def _put_object(
        self, key: str, data: bytes, doing: str, sha256: str | None, **cond: str
    ) -> str:
        """PUT `data` at `key`, signed with its SHA-256: `sha256` if known, else hashed here
        (in a worker thread past INLINE_HASH), so that every PUT can be stamped from a
        known shape (botocore would hash it to sign it anyway)."""
        if sha256 is None:
            if len(data) <= INLINE_HASH:
                sha256 = hashlib.sha256(data).hexdigest()
            else:
                sha256 = await anyio.to_thread.run_sync(_sha256_of, data)
        objects = await self._connection.objects()
        await spend(self._bandwidth, len(data))
        with translate(doing, key):
            reply = await objects.put(self.bucket, self._s3_key(key), data, sha256, **cond)
        return reply.etag

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> str:
        size = (await anyio.Path(path).stat()).st_size
        if size <= WHOLE_PUT:
            data, digest = await anyio.to_thread.run_sync(_read_whole, path)
            _check_sha(key, digest, expected_sha256)
            etag = await self.put(key, data, sha256=digest)
            if progress:
                progress(len(data))
            return etag
        return await self._put_streamed(key, path, size, expected_sha256, progress)

    async def _put_streamed(
        self, key: str, path: Path, size: int, expected: str | None, progress: Progress | None
    ) -> str:
        """One PUT of the file at `path`, streamed from disk and signed with its SHA-256
        (`expected`, else hashed first: a server that checks it refuses other bytes). The
        body withholds its last piece unless what it read hashes to that digest, so on a
        server that does not check, a file that changed meanwhile is cut off unfinished and
        never becomes the object (IntegrityError)."""
        if expected is None:
            expected = await anyio.to_thread.run_sync(_sha256_of_file, path)
        body = await FileBody.open(path, key, size, expected, self._bandwidth, progress)
        client = await self._client()
        try:
            with translate("writing", key):
                resp = await client.put_object(
                    Bucket=self.bucket,
                    Key=self._s3_key(key),
                    Body=body.stream(),
                    ContentLength=size,
                    **{PAYLOAD_SHA256: expected},
                )
        except Exception:
            body.raise_refusal()  # the body's own verdict says what went wrong
            raise
        finally:
            await body.aclose()
        body.raise_refusal()
        return str(resp.get("ETag", ""))

    async def delete(self, key: str) -> None:
        objects = await self._connection.objects()
        with translate("deleting", key):
            await objects.delete(self.bucket, self._s3_key(key))


def _info(key: str, reply: ObjectReply) -> ObjectInfo:
    modified = reply.modified()
    return ObjectInfo(key, reply.size, reply.etag, modified.timestamp() if modified else 0.0)


async def _pieces_up_to(body: Any, size: int) -> list[bytes]:
    """The next pieces of a response body (aiohttp's stream, or botocore's StreamingBody
    over one), about `size` bytes together (none: its end), each as the connection
    received it: taken from aiohttp's buffer whole, never joined (a body's `read(n)`,
    like aiohttp's `readany`, joins what is buffered into one new `bytes`: a copy of
    every byte downloaded, on the event loop). Gathering about a CHUNK keeps a download
    to one worker-thread trip (write and hash) per CHUNK. Without aiohttp's stream under
    the body (another aiobotocore), `read` as before."""
    content = getattr(getattr(body, "_raw_stream", None), "content", body)
    readchunk = getattr(content, "readchunk", None)
    pieces: list[bytes] = []
    got = 0
    while got < size:
        if readchunk is None:
            piece: bytes = await body.read(size - got)
        else:
            piece, boundary = await readchunk()
            if not piece and boundary:  # the end of an HTTP chunk, not of the body
                continue
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return pieces


def _write_pieces(out: Any, pieces: list[bytes], hasher: Any, key: str) -> None:
    try:
        for piece in pieces:
            out.write(piece)
    except OSError as exc:
        raise LocalFileError(
            f"downloading {key}: local file {out.name}: {exc.strerror or exc}", key, exc.errno
        ) from None
    if hasher is not None:
        for piece in pieces:
            hasher.update(piece)


def _sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_of_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_whole(path: Path) -> tuple[bytes, str]:
    """The file's bytes and their SHA-256 (hashed here, in a worker thread, not on the
    event loop)."""
    with open(path, "rb") as f:
        data = f.read()
    return data, hashlib.sha256(data).hexdigest()


def _check_sha(key: str, got: str, expected: str | None) -> None:
    if expected is not None and got != expected:
        raise IntegrityError(
            f"uploading {key}: the file changed while it was read "
            f"(expected SHA-256 {expected}, read {got})",
            key,
        )


__all__ = ["S3Store"]
