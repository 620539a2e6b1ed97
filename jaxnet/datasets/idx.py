"""IDX files, the binary format of the canonical MNIST distribution (raw or gzipped).

Layout (big-endian): two zero bytes, a dtype code, the number of dimensions ``ndim``,
then ``ndim`` uint32 sizes, then the values in C order. MNIST images are
``0x00000803`` (uint8, 3-D: count, rows, columns) and labels ``0x00000801`` (uint8, 1-D).
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from jaxnet.datasets.errors import MNISTFormatError

# IDX dtype code -> big-endian NumPy dtype
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (detected by content, not by name).

    Returns a native-endian array with the file's shape and dtype (uint8 for MNIST).
    Raises ``MNISTFormatError`` naming the file for an empty or truncated file, a wrong
    magic number, an unknown dtype code, or a size that disagrees with the header. The
    PyTorch counterpart is ``torchvision.datasets.mnist.read_sn3_pascalvincent_tensor``.
    """
    with open(path, "rb") as f:
        data = f.read()
    return parse_idx(data, os.fspath(path))


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Parse the bytes of an IDX file (raw or gzipped); ``name`` labels error messages.

    PyTorch counterpart: ``torchvision.datasets.mnist.read_sn3_pascalvincent_tensor``
    reads a path; this takes the bytes (e.g. of a download) and checks them."""
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise MNISTFormatError(f"{name}: corrupt gzip data: {err}") from None
    if not data:
        raise MNISTFormatError(f"{name}: empty file, expected an IDX header")
    if len(data) < 4:
        raise MNISTFormatError(f"{name}: truncated IDX header: {len(data)} bytes, need 4")
    if data[:2] != b"\x00\x00":
        raise MNISTFormatError(
            f"{name}: bad IDX magic number 0x{data[:4].hex()}, expected 0x0000 followed by "
            "a dtype code and the number of dimensions"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise MNISTFormatError(f"{name}: unknown IDX dtype code 0x{code:02x}, expected {known}")
    if ndim == 0:
        raise MNISTFormatError(f"{name}: IDX header declares 0 dimensions, expected at least 1")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise MNISTFormatError(
            f"{name}: truncated IDX header: {len(data)} bytes, need {offset} for {ndim} sizes"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = offset + dtype.itemsize * int(np.prod(shape))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes"
        raise MNISTFormatError(
            f"{name}: {what}: header {shape} of {dtype.name} needs {expected} bytes, "
            f"file has {len(data)}"
        )
    array = np.frombuffer(data, dtype, offset=offset).reshape(shape)
    return array.astype(dtype.newbyteorder("="))
