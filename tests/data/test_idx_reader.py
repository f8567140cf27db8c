"""read_idx on idx files written byte by byte here: every type, raw and gzip, and damaged files."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
from datahelpers import idx_bytes, write_file

from fastmlp.datasets import IdxError, read_idx, write_idx


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_reads_every_type_raw_and_gzip(tmp_path, gz, dtype):
    rng = np.random.default_rng(7)
    a = (rng.standard_normal((3, 5, 2)) * 50).astype(dtype)
    p = write_file(tmp_path / "x.idx", idx_bytes(a), gz=gz)
    out = read_idx(p)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, a)


def test_mnist_style_header_values(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    raw = idx_bytes(images)
    assert raw[:4] == b"\x00\x00\x08\x03" and raw[4:8] == (2).to_bytes(4, "big")
    out = read_idx(write_file(tmp_path / "images", raw))
    assert out.shape == (2, 28, 28)
    np.testing.assert_array_equal(out, images)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_file(tmp_path / "labels.gz", idx_bytes(a), gz=False)), a)
    np.testing.assert_array_equal(read_idx(write_file(tmp_path / "labels", idx_bytes(a), gz=True)), a)


@pytest.mark.parametrize("gz", [False, True])
def test_write_idx_round_trip_matches_independent_bytes(tmp_path, gz):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 7
    write_idx(tmp_path / "w", a, compress=gz)
    data = gzip.open(tmp_path / "w").read() if gz else (tmp_path / "w").read_bytes()
    assert data == idx_bytes(a)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


def test_wrong_magic(tmp_path):
    p = write_file(tmp_path / "bad", b"\x12\x34\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(IdxError, match=r"bad'.*not an idx file.*0x12340801"):
        read_idx(p)


def test_unknown_type_code(tmp_path):
    p = write_file(tmp_path / "bad", b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(IdxError, match="magic number is 0x00000701"):
        read_idx(p)


def test_zero_dimensions(tmp_path):
    p = write_file(tmp_path / "bad", b"\x00\x00\x08\x00")
    with pytest.raises(IdxError, match="not an idx file"):
        read_idx(p)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_magic(tmp_path, gz):
    p = write_file(tmp_path / "short", b"\x00\x00", gz=gz)
    with pytest.raises(IdxError, match=r"short'.*truncated.*2 bytes"):
        read_idx(p)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_dimensions(tmp_path, gz):
    p = write_file(tmp_path / "dims", b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + b"\x00\x00", gz=gz)
    with pytest.raises(IdxError, match=r"truncated inside its header: 3 dimensions need 12 bytes"):
        read_idx(p)


@pytest.mark.parametrize("gz", [False, True])
def test_short_data(tmp_path, gz):
    raw = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    p = write_file(tmp_path / "images", raw[:-100], gz=gz)
    with pytest.raises(IdxError, match=r"images'.*truncated.*\[4, 28, 28\].*3136 data bytes.*3036"):
        read_idx(p)


def test_multibyte_short_data_counts_bytes(tmp_path):
    raw = idx_bytes(np.zeros(10, dtype=np.float32))
    p = write_file(tmp_path / "f", raw[:-3])
    with pytest.raises(IdxError, match="40 data bytes.*37 follow"):
        read_idx(p)


def test_extra_data(tmp_path):
    raw = idx_bytes(np.zeros(10, dtype=np.uint8)) + b"junk"
    with pytest.raises(IdxError, match="more data than its header says"):
        read_idx(write_file(tmp_path / "long", raw))


def test_implausible_dimensions(tmp_path):
    raw = b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3
    with pytest.raises(IdxError, match="not plausible"):
        read_idx(write_file(tmp_path / "huge", raw))


def test_corrupted_gzip_data(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    p = write_file(tmp_path / "images.gz", idx_bytes(a), gz=True)
    blob = bytearray(p.read_bytes())
    for i in range(len(blob) // 2, len(blob) // 2 + 16):
        blob[i] ^= 0xFF
    p.write_bytes(bytes(blob))
    with pytest.raises(IdxError, match=r"images.gz'.*gzip data is corrupted or truncated"):
        read_idx(p)


def test_truncated_gzip_stream(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    p = write_file(tmp_path / "images.gz", idx_bytes(a), gz=True)
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(IdxError, match="images.gz"):
        read_idx(p)


def test_gzip_magic_with_garbage(tmp_path):
    p = write_file(tmp_path / "fake.gz", b"\x1f\x8b" + b"\x00" * 30)
    with pytest.raises(IdxError, match="fake.gz"):
        read_idx(p)
