"""How S3 client errors are classified (dropbeard.store.s3errors): what is retried, what is
permanent. A feature the server lacks is permanent, so callers can fall back at once."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from dropbeard.core.errors import NotFound, PreconditionFailed, StoreError, Unavailable
from dropbeard.store.s3errors import translate


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "ListParts",
    )


def raised(error: ClientError) -> StoreError:
    with pytest.raises(StoreError) as info, translate("listing parts of", "k"):
        raise error
    return info.value


@pytest.mark.parametrize(
    ("code", "status"),
    [("NotImplemented", 501), ("", 501), ("MethodNotAllowed", 405)],
    ids=["not-implemented", "bare-501", "method-not-allowed"],
)
def test_a_feature_the_server_lacks_is_permanent(code: str, status: int) -> None:
    error = raised(client_error(code, status))
    assert type(error) is StoreError and error.key == "k"


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("InternalError", 500, Unavailable),
        ("", 503, Unavailable),
        ("SlowDown", 503, Unavailable),
        ("NoSuchUpload", 404, NotFound),
        ("PreconditionFailed", 412, PreconditionFailed),
    ],
)
def test_other_answers_keep_their_kind(code: str, status: int, kind: type[StoreError]) -> None:
    assert type(raised(client_error(code, status))) is kind
