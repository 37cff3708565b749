"""Tests of the IDX reader and writer on real files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from data_tools.idx import TYPE_CODES, IDXError, read_idx, write_idx


def _header(code: int, shape) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "uint8": rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8),
        "int8": rng.integers(-128, 128, size=(7,), dtype=np.int8),
        "int16": rng.integers(-(2**15), 2**15, size=(3, 4), dtype=np.int16),
        "int32": rng.integers(-(2**31), 2**31, size=(2, 3, 4, 5), dtype=np.int32),
        "float32": rng.standard_normal((6, 2)).astype(np.float32),
        "float64": rng.standard_normal((4,)),
    }


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("kind", list(_arrays()))
def test_does_a_written_array_read_back_identical(tmp_path, kind, suffix):
    """Does write_idx -> read_idx give back the same shape, dtype and values (plain and gzip)?"""
    array = _arrays()[kind]
    path = write_idx(tmp_path / f"a-{kind}{suffix}", array)
    back = read_idx(path)
    assert back.dtype == array.dtype
    assert back.dtype.isnative
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_is_the_file_big_endian_as_the_format_requires(tmp_path):
    """Does write_idx store the header and int16 data big-endian, byte for byte?"""
    path = write_idx(tmp_path / "x", np.array([1, 258], dtype=np.int16))
    assert path.read_bytes() == _header(0x0B, (2,)) + b"\x00\x01\x01\x02"


def test_is_gzip_recognised_by_content_not_by_name(tmp_path):
    """Does read_idx decompress a gzip file whose name has no .gz (and read a plain file named .gz)?"""
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    payload = _header(0x08, (3, 4)) + array.tobytes()
    (tmp_path / "compressed").write_bytes(gzip.compress(payload))
    (tmp_path / "plain.gz").write_bytes(payload)
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), array)


def test_does_write_idx_leave_no_temporary_file(tmp_path):
    """Does an atomic write leave exactly the target file in the directory, readable by others?"""
    write_idx(tmp_path / "labels.gz", np.zeros(3, dtype=np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["labels.gz"]
    assert (tmp_path / "labels.gz").stat().st_mode & 0o777 == 0o644


def test_does_write_idx_reject_unsupported_dtypes(tmp_path):
    """Does write_idx refuse int64 (no IDX type code) and leave no file behind?"""
    with pytest.raises(IDXError, match=r"cannot write dtype int64"):
        write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.int64))
    with pytest.raises(IDXError, match=r"0-dimensional"):
        write_idx(tmp_path / "x.idx", np.uint8(3))
    assert list(tmp_path.iterdir()) == []


GOOD = _header(0x08, (2, 3)) + bytes(range(6))

CORRUPTIONS = {
    "empty": (b"", r"empty file"),
    "bad magic": (b"\x01\x02" + GOOD[2:], r"bad magic number 0x0102"),
    "bad type code": (bytes([0, 0, 0x0A, 2]) + GOOD[4:], r"unsupported type code 0x0A"),
    "zero dimensions": (bytes([0, 0, 0x08, 0]), r"wrong number of dimensions.*0"),
    "truncated header": (GOOD[:6], r"truncated header"),
    "truncated data": (GOOD[:-2], r"truncated data.*needs 6 data bytes, found 4"),
    "extra bytes": (GOOD + b"\x00\x00\x00", r"too long.*needs 6 data bytes, found 9"),
    "corrupt gzip": (gzip.compress(GOOD)[:-9] + b"garbage!!", r"corrupt gzip"),
    "truncated gzip": (gzip.compress(GOOD)[:12], r"corrupt gzip"),
    "empty gzip": (gzip.compress(b""), r"empty file.*after gzip"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_is_each_corruption_reported_with_the_file_and_the_problem(tmp_path, case):
    """Does each kind of corruption raise IDXError naming the file and what is wrong?"""
    content, problem = CORRUPTIONS[case]
    path = tmp_path / f"broken-{case.replace(' ', '-')}"
    path.write_bytes(content)
    with pytest.raises(IDXError, match=problem) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_is_truncated_gzip_data_reported_as_truncated(tmp_path):
    """Does a well-formed gzip of a short IDX payload report truncated data and mention gzip?"""
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(GOOD[:-1]))
    with pytest.raises(IDXError, match=r"truncated data.*after gzip decompression"):
        read_idx(path)


def test_does_read_idx_check_the_expected_number_of_dimensions(tmp_path):
    """Does read_idx(ndim=3) reject a 2-dimensional file, saying expected and found?"""
    path = tmp_path / "two-dims"
    path.write_bytes(GOOD)
    assert read_idx(path, ndim=2).shape == (2, 3)
    with pytest.raises(IDXError, match=r"wrong number of dimensions: expected 3, the header says 2"):
        read_idx(path, ndim=3)


def test_is_the_idx_error_a_value_error():
    """Can callers catch IDXError as a ValueError?"""
    assert issubclass(IDXError, ValueError)


def test_is_a_missing_file_a_file_not_found_error(tmp_path):
    """Does a missing file raise FileNotFoundError rather than a format error?"""
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_does_the_reader_cover_every_type_code_of_the_format():
    """Are all six IDX type codes of the specification supported?"""
    assert sorted(TYPE_CODES) == [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]
    assert all(dtype.byteorder in (">", "|") for dtype in TYPE_CODES.values())
