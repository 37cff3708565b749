"""Reading and writing IDX files, the format MNIST is distributed in.

An IDX file is a big-endian header followed by the raw array data::

    offset  size     content
    0       2        two zero bytes
    2       1        type code (see ``TYPE_CODES``)
    3       1        number of dimensions, ndim
    4       4*ndim   each dimension as a big-endian uint32
    ...     ...      prod(dims) items, big-endian, C order

Files may be gzip-compressed; compression is recognised by its magic bytes (1f 8b), not by the
file name, so a compressed file saved without ``.gz`` (or a download written to a temporary
name) is read all the same.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDXError", "read_idx", "write_idx", "TYPE_CODES"]

#: IDX type code -> big-endian numpy dtype of the stored items.
TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIM = 2**32 - 1


class IDXError(ValueError):
    """A file is not a valid IDX file (or not the IDX file that was expected).

    The message always names the file and the problem.
    """


def _type_names() -> str:
    return ", ".join(f"0x{code:02X} ({dtype.newbyteorder('=').name})" for code, dtype in TYPE_CODES.items())


def _decompress(path: Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise IDXError(
            f"{path}: corrupt gzip data ({err}); the file starts with the gzip magic bytes 1f 8b "
            "but cannot be decompressed - was the download interrupted?"
        ) from err


def read_idx(path, *, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a numpy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is detected from the content.
    ndim : int, optional
        If given, the number of dimensions the file must have.

    Returns
    -------
    numpy.ndarray
        Shape as stored in the header, dtype from the type code, native byte order, writable.

    Raises
    ------
    IDXError
        If the file is empty, not gzip-decodable, has a bad magic number, an unsupported type
        code, an unexpected number of dimensions, or fewer or more data bytes than its header
        announces. The message names the file and the problem.
    FileNotFoundError
        If the file does not exist.
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw:
        raise IDXError(f"{path}: empty file (0 bytes)")
    compressed = raw[:2] == _GZIP_MAGIC
    if compressed:
        raw = _decompress(path, raw)
        if not raw:
            raise IDXError(f"{path}: empty file (0 bytes after gzip decompression)")
    where = " after gzip decompression" if compressed else ""

    if len(raw) < 4:
        raise IDXError(f"{path}: truncated header: {len(raw)} bytes{where}, an IDX header needs at least 4")
    if raw[0] != 0 or raw[1] != 0:
        raise IDXError(
            f"{path}: bad magic number 0x{raw[:4].hex().upper()}{where}: an IDX file starts with two "
            "zero bytes, a type code and the number of dimensions - is this an IDX file?"
        )
    code, n_dims = raw[2], raw[3]
    if code not in TYPE_CODES:
        raise IDXError(f"{path}: unsupported type code 0x{code:02X}; supported: {_type_names()}")
    if n_dims == 0:
        raise IDXError(f"{path}: wrong number of dimensions: the header says 0, an IDX array needs at least 1")
    if ndim is not None and n_dims != ndim:
        raise IDXError(f"{path}: wrong number of dimensions: expected {ndim}, the header says {n_dims}")

    header_len = 4 + 4 * n_dims
    if len(raw) < header_len:
        raise IDXError(
            f"{path}: truncated header: {n_dims} dimensions need {header_len} header bytes, "
            f"found {len(raw)}{where}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=n_dims, offset=4))
    dtype = TYPE_CODES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        problem = "truncated data" if actual < expected else "too long: extra bytes after the data"
        raise IDXError(
            f"{path}: {problem}: shape {shape} of {dtype.newbyteorder('=').name} needs {expected:,} "
            f"data bytes, found {actual:,}{where}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # a native-order, writable copy


def _type_code(path: Path, dtype: np.dtype) -> int:
    for code, stored in TYPE_CODES.items():
        if dtype.kind == stored.kind and dtype.itemsize == stored.itemsize:
            return code
    raise IDXError(f"{path}: cannot write dtype {dtype} to IDX; supported: {_type_names()}")


def write_idx(path, array) -> Path:
    """Write an array to an IDX file, gzip-compressed when the name ends in ``.gz``.

    The file is written to a temporary file in the same directory and then moved into place,
    so a reader never sees a half-written file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination. The directory must exist.
    array : array_like
        At least one dimension; dtype uint8, int8, int16, int32, float32 or float64.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim == 0 or array.ndim > 255:
        raise IDXError(f"{path}: cannot write a {array.ndim}-dimensional array to IDX (1 to 255 dimensions)")
    if any(d > _MAX_DIM for d in array.shape):
        raise IDXError(f"{path}: dimension too large for IDX in shape {array.shape}")
    code = _type_code(path, array.dtype)
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=TYPE_CODES[code]).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp creates 0600; data files are for sharing
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
