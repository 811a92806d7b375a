"""root.toml and remote URLs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.config import (
    RemoteConfig,
    RemoteURL,
    RootConfig,
    parse_remote_url,
    parse_root_config,
    render_root_config,
)
from dropbeard.core.errors import UsageError

ROOT_SRC = "/data/.dropbear/root.toml"


def root_error(text: str) -> str:
    with pytest.raises(UsageError) as info:
        parse_root_config(text, ROOT_SRC)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)
    return str(info.value).removeprefix(f"config {ROOT_SRC}: ")


# --- root.toml -------------------------------------------------------------------------

MINIMAL_ROOT = """
root_id = "photos"
device_id = "laptop"
[remote]
url = "s3://my-bucket/dropbeard"
"""


def test_root_config_defaults() -> None:
    cfg = parse_root_config(MINIMAL_ROOT, ROOT_SRC)
    assert cfg == RootConfig(
        root_id="photos",
        device_id="laptop",
        mode="bidirectional",
        remote=RemoteConfig(url="s3://my-bucket/dropbeard", addressing_style="auto"),
    )


def test_root_config_every_key() -> None:
    cfg = parse_root_config(
        """
        root_id = "0.photos_2-x"
        device_id = "old-phone"
        mode = "archive-only"
        [remote]
        url = "s3://b12"
        endpoint_url = "http://127.0.0.1:8333"
        region = "eu-west-1"
        profile = "home"
        addressing_style = "path"
        """,
        ROOT_SRC,
    )
    assert cfg == RootConfig(
        root_id="0.photos_2-x",
        device_id="old-phone",
        mode="archive-only",
        remote=RemoteConfig(
            url="s3://b12",
            endpoint_url="http://127.0.0.1:8333",
            region="eu-west-1",
            profile="home",
            addressing_style="path",
        ),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('device_id = "a"\n[remote]\nurl="/x"', "root_id: missing (it is required)"),
        ('root_id = "a"\ndevice_id = "b"', "missing [remote] table (it is required)"),
        ('root_id = "a"\ndevice_id = "b"\nremote = "s3://x"', "remote: expected a [remote] table"),
        ('root_id = "A"\ndevice_id = "b"\n[remote]\nurl="/x"', "root_id: 'A' is not a valid id"),
        ('root_id = "-a"\ndevice_id = "b"\n[remote]\nurl="/x"', "root_id: '-a' is not a valid"),
        (f'root_id = "{"a" * 65}"\ndevice_id = "b"\n[remote]\nurl="/x"', "root_id: 'aaaa"),
        ('root_id = "a"\ndevice_id = "b c"\n[remote]\nurl="/x"', "device_id: 'b c' is not a"),
        ('root_id = "a"\ndevice_id = ""\n[remote]\nurl="/x"', "device_id: '' is not a valid id"),
        (
            'root_id = "a"\ndevice_id = "b"\nmode = "both"\n[remote]\nurl="/x"',
            "mode: must be one of bidirectional, upload-only, download-only, archive-only, "
            "got 'both'",
        ),
        ('root_id = "a"\ndevice_id = "b"\n[remote]\nurl="x"', "remote.url: remote path 'x' is"),
        ('root_id = "a"\ndevice_id = "b"\n[remote]\nregion="x"', "remote.url: missing"),
        (
            'root_id = "a"\ndevice_id = "b"\n[remote]\nurl="s3://b12"\nendpoint-url="http://h"',
            "unknown key 'endpoint-url' in [remote]; did you mean 'endpoint_url'?",
        ),
        (
            'root_id = "a"\ndevice_id = "b"\n[remote]\nurl="s3://b12"\nendpoint_url="h:9000"',
            "remote.endpoint_url: 'h:9000' has no scheme: add http:// or https:// "
            "(e.g. http://h:9000)",
        ),
        (
            'root_id = "a"\ndevice_id = "b"\n[remote]\nurl="s3://b12"\naddressing_style="dns"',
            "remote.addressing_style: must be one of auto, path, virtual, got 'dns'",
        ),
        (
            'root_id = "a"\ndevice_id = "b"\n[remote]\nurl="/mnt/nas"\nregion="eu"',
            "remote.region: only applies to s3:// remotes",
        ),
    ],
)
def test_root_config_errors(text: str, expected: str) -> None:
    assert root_error(text).startswith(expected)


def test_id_of_64_characters_is_accepted() -> None:
    cfg = parse_root_config(MINIMAL_ROOT.replace('"photos"', f'"{"p" * 64}"'), ROOT_SRC)
    assert cfg.root_id == "p" * 64


def test_endpoint_url_credentials_are_not_echoed() -> None:
    text = MINIMAL_ROOT + 'endpoint_url = "https://AKIA:s3cr3t@minio.local"\n'
    message = root_error(text)
    assert "s3cr3t" not in message
    assert message == "remote.endpoint_url: must not contain credentials"


def test_secret_in_remote_url_is_never_echoed() -> None:
    text = MINIMAL_ROOT.replace("s3://my-bucket/dropbeard", "s3://AKIAXYZ:s3cr3t@my-bucket")
    message = root_error(text)
    assert "s3cr3t" not in message
    assert "AKIAXYZ" not in message
    assert message.startswith("remote.url: remote url must not contain credentials")


def test_round_trip_full() -> None:
    cfg = RootConfig(
        root_id="photos",
        device_id="laptop",
        mode="download-only",
        remote=RemoteConfig(
            url="s3://my-bucket/a/b",
            endpoint_url="https://s3.example.com",
            region='we"ird\\region',
            profile="prof\tile ünï 🎉 \x01\x7f\n",
            addressing_style="virtual",
        ),
    )
    text = render_root_config(cfg)
    assert parse_root_config(text, ROOT_SRC) == cfg


def test_rendered_minimal_config_omits_unset_keys() -> None:
    cfg = parse_root_config(MINIMAL_ROOT, ROOT_SRC)
    text = render_root_config(cfg)
    assert "region" not in text
    assert "addressing_style" not in text
    assert parse_root_config(text, ROOT_SRC) == cfg


_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30)
_ids = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True)


@settings(max_examples=100)
@given(root_id=_ids, device_id=_ids, directory=_text, profile=_text, region=_text)
def test_round_trip_any_strings(
    root_id: str, device_id: str, directory: str, profile: str, region: str
) -> None:
    local = RootConfig(
        root_id=root_id,
        device_id=device_id,
        remote=RemoteConfig(url="/" + directory.replace("\0", "")),
    )
    assert parse_root_config(render_root_config(local), ROOT_SRC) == local
    s3 = RootConfig(
        root_id=root_id,
        device_id=device_id,
        mode="upload-only",
        remote=RemoteConfig(url="s3://bucket", profile=profile, region=region),
    )
    assert parse_root_config(render_root_config(s3), ROOT_SRC) == s3


# --- remote URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket", RemoteURL(kind="s3", bucket="bucket", prefix="")),
        ("s3://bucket/", RemoteURL(kind="s3", bucket="bucket", prefix="")),
        ("s3://my.bucket-1/a/b/", RemoteURL(kind="s3", bucket="my.bucket-1", prefix="a/b")),
        ("S3://bucket//x", RemoteURL(kind="s3", bucket="bucket", prefix="x")),
        ("/mnt/nas/sync", RemoteURL(kind="local", path="/mnt/nas/sync")),
        ("/mnt/nas/sync/", RemoteURL(kind="local", path="/mnt/nas/sync")),
        ("/", RemoteURL(kind="local", path="/")),
        ("/odd://name", RemoteURL(kind="local", path="/odd://name")),
        ("file:///mnt/usb", RemoteURL(kind="local", path="/mnt/usb")),
        ("file://localhost/mnt/my%20usb", RemoteURL(kind="local", path="/mnt/my usb")),
    ],
)
def test_remote_urls(url: str, expected: RemoteURL) -> None:
    assert parse_remote_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "remote url is empty"),
        ("s3://", "s3 url has no bucket"),
        ("s3:///prefix", "s3 url has no bucket"),
        ("s3://ab", "invalid bucket name 'ab'"),
        ("s3://" + "b" * 64, "invalid bucket name"),
        ("s3://My-Bucket", "invalid bucket name 'My-Bucket'"),
        ("s3://under_score", "invalid bucket name 'under_score'"),
        ("s3://-bucket", "invalid bucket name"),
        ("s3://bucket-", "invalid bucket name"),
        ("s3://a..b", "invalid bucket name 'a..b'"),
        ("s3://192.168.1.1", "invalid bucket name '192.168.1.1'"),
        ("s3://bucket:9000", "invalid bucket name 'bucket:9000'"),
        ("s3://bucket/a/../b", "invalid prefix 'a/../b'"),
        ("s3://bucket/a//b", "invalid prefix 'a//b'"),
        ("s3://bucket?x=1", "s3 url must not have a query"),
        ("gs://bucket", "unsupported remote url scheme 'gs://'"),
        ("https://bucket.s3.amazonaws.com", "'https://' is a server's address, not a remote"),
        ("s3:/bucket/x", "'s3:/bucket/x' is not a valid url: did you mean 's3://bucket/x'?"),
        ("S3:bucket", "'S3:bucket' is not a valid url: did you mean 's3://bucket'?"),
        ("file:/mnt/nas", "'file:/mnt/nas' is not a valid url: did you mean 'file:///mnt/nas'?"),
        ("relative/dir", "remote path 'relative/dir' is not absolute"),
        ("~/sync", "remote path '~/sync' is not absolute"),
        ("file://nas/share", "file url names host 'nas'"),
        ("file://relative", "file url names host 'relative'"),
        ("/a\0b", "remote path contains a NUL"),
    ],
)
def test_remote_url_rejections(url: str, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_remote_url(url)
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAXYZ:s3cr3t@bucket",
        "s3://AKIAXYZ:s3cr3t@bucket/prefix",
        "s3://s3cr3t@bucket",
        "file://AKIAXYZ:s3cr3t@localhost/x",
    ],
)
def test_credentials_in_url_are_refused_without_echo(url: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_remote_url(url)
    message = str(info.value)
    assert "must not contain credentials" in message
    assert "s3cr3t" not in message
    assert "AKIAXYZ" not in message
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
