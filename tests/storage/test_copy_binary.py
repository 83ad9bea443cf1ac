"""Binary COPY encoding of sample rows, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from storage.copy_binary import TRAILER, CopyFormatError, decode_samples, encode_samples


def test_round_trip_is_bit_exact() -> None:
    rng = np.random.default_rng(7)
    times = rng.integers(-(2**40), 2**52, 1000, dtype=np.int64)
    ids = rng.integers(1, 2**62, 1000, dtype=np.int64)
    values = rng.standard_normal(1000)
    values[:4] = [np.nan, np.inf, -np.inf, -0.0]
    out_times, out_ids, out_values = decode_samples(encode_samples(times, ids, values))
    assert np.array_equal(out_times, times)
    assert np.array_equal(out_ids, ids)
    assert np.array_equal(out_values.view(np.int64), values.view(np.int64))


def test_empty_batch() -> None:
    times, ids, values = decode_samples(
        encode_samples(np.array([], np.int64), np.array([], np.int64), np.array([]))
    )
    assert len(times) == len(ids) == len(values) == 0


@pytest.mark.parametrize(
    "data",
    [
        b"not copy at all",
        encode_samples(np.array([1]), np.array([2]), np.array([3.0]))[:-2],
        encode_samples(np.array([1]), np.array([2]), np.array([3.0]))[:-3] + TRAILER,
    ],
    ids=["no signature", "no trailer", "truncated row"],
)
def test_malformed_input_is_rejected(data: bytes) -> None:
    with pytest.raises(CopyFormatError):
        decode_samples(data)
