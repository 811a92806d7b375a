"""Which files are chunked and which chunk lists are valid (SPEC 1.6), without a disk."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from dropbeard.core.chunking import (
    AVG_CHUNK,
    CHUNKED_ABOVE,
    MAX_CHUNK,
    MIN_CHUNK,
    Chunk,
    MiB,
    chunk_offsets,
    is_chunked,
    validate_chunks,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_parameters_are_spec_1_6s() -> None:
    sizes = {"min": MIN_CHUNK, "avg": AVG_CHUNK, "max": MAX_CHUNK}
    assert sizes == {"min": 1 * MiB, "avg": 4 * MiB, "max": 16 * MiB}


def test_a_file_over_16_mib_is_chunked_and_one_of_16_mib_or_less_is_one_blob() -> None:
    assert is_chunked(CHUNKED_ABOVE + 1) and not is_chunked(CHUNKED_ABOVE)
    assert not is_chunked(0)
    assert not is_chunked(16 * MiB)
    assert is_chunked(16 * MiB + 1)


def test_a_chunk_encodes_as_spec_pair() -> None:
    chunk = Chunk(sha("a"), 5)
    assert msgspec.json.encode([chunk]) == f'[["{sha("a")}",5]]'.encode()
    assert msgspec.json.decode(f'[["{sha("a")}",5]]', type=list[Chunk]) == [chunk]


def test_a_chunk_whose_size_is_not_an_integer_does_not_decode() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(f'[["{sha("a")}","5"]]', type=list[Chunk])


def test_a_valid_list_comes_back_as_a_tuple() -> None:
    chunks = [Chunk(sha("a"), MAX_CHUNK), Chunk(sha("b"), 3)]
    assert validate_chunks(chunks, MAX_CHUNK + 3) == tuple(chunks)


def test_a_chunk_may_repeat_in_a_file() -> None:
    chunks = [Chunk(sha("a"), MAX_CHUNK), Chunk(sha("b"), 3), Chunk(sha("a"), MAX_CHUNK)]
    assert validate_chunks(chunks, 2 * MAX_CHUNK + 3) == tuple(chunks)


def test_a_file_of_16_mib_or_less_another_writer_cut_is_valid() -> None:
    """This device stores such a file as one blob, but a reader needs only the list
    (SPEC 1.6): another writer's chunks of a small file are read, not refused."""
    chunks = [Chunk(sha("a"), 10), Chunk(sha("b"), 5)]
    assert validate_chunks(chunks, 15) == tuple(chunks)
    assert validate_chunks([Chunk(sha("c"), CHUNKED_ABOVE)], CHUNKED_ABOVE)


def test_chunks_cut_differently_are_still_valid() -> None:
    """SPEC 1.6: boundaries only matter for deduplication; sizes under MIN_CHUNK pass."""
    chunks = [Chunk(sha(str(i)), 1 if i % 2 else MAX_CHUNK - 1) for i in range(4)]
    assert validate_chunks(chunks, 2 * MAX_CHUNK)


@pytest.mark.parametrize(
    ("chunks", "size", "says"),
    [
        pytest.param([], 0, "names no chunk", id="empty_list_of_an_empty_file"),
        pytest.param([], CHUNKED_ABOVE + 1, "add up to 0", id="empty_list"),
        pytest.param(
            [Chunk(sha("a"), MAX_CHUNK), Chunk(sha("b"), 2)],
            MAX_CHUNK + 1,
            "add up to",
            id="sum_too_large",
        ),
        pytest.param(
            [Chunk(sha("a"), MAX_CHUNK), Chunk(sha("b"), 2)],
            MAX_CHUNK + 3,
            "add up to",
            id="sum_too_small",
        ),
        pytest.param(
            [Chunk(sha("a"), MAX_CHUNK + 1), Chunk(sha("b"), 1)],
            MAX_CHUNK + 2,
            "chunk 0 has",
            id="chunk_over_max",
        ),
        pytest.param(
            [Chunk(sha("a"), MAX_CHUNK), Chunk(sha("b"), 0), Chunk(sha("c"), 1)],
            MAX_CHUNK + 1,
            "chunk 1 has 0 bytes",
            id="empty_chunk",
        ),
        pytest.param(
            [Chunk(sha("a"), MAX_CHUNK), Chunk(sha("b"), -1), Chunk(sha("c"), 2)],
            MAX_CHUNK + 1,
            "chunk 1 has -1 bytes",
            id="negative_chunk",
        ),
        pytest.param(
            [Chunk(sha("a"), MAX_CHUNK), Chunk(sha("a"), 5), Chunk(sha("b"), 1)],
            MAX_CHUNK + 6,
            "chunk 1 repeats",
            id="same_digest_two_sizes",
        ),
        pytest.param(
            [Chunk(sha("a").upper(), MAX_CHUNK), Chunk(sha("b"), 1)],
            MAX_CHUNK + 1,
            "chunk 0:",
            id="uppercase_digest",
        ),
        pytest.param(
            [Chunk(sha("a"), MAX_CHUNK), Chunk("../../etc/passwd", 1)],
            MAX_CHUNK + 1,
            "chunk 1:",
            id="digest_that_is_a_path",
        ),
    ],
)
def test_an_invalid_list_is_refused_saying_why(chunks: list[Chunk], size: int, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        validate_chunks(chunks, size)


def test_offsets_are_where_each_chunk_starts() -> None:
    chunks = [Chunk(sha("a"), 5), Chunk(sha("b"), 7), Chunk(sha("c"), 1)]
    assert chunk_offsets(chunks) == [0, 5, 12]
    assert chunk_offsets([]) == []
