"""IDX files, the binary format of the canonical MNIST distribution (raw or gzipped).

Layout (big-endian): two zero bytes, a dtype code, the number of dimensions ``ndim``,
then ``ndim`` uint32 sizes, then the values in C order. MNIST images are
``0x00000803`` (uint8, 3-D: count, rows, columns) and labels ``0x00000801`` (uint8, 1-D).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from typing import BinaryIO

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
_CHUNK = 1 << 20  # bytes read at a time


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (detected by content, not by name).

    Returns a native-endian array with the file's shape and dtype (uint8 for MNIST).
    Raises ``MNISTFormatError`` naming the file for an empty or truncated file, a wrong
    magic number, an unknown dtype code, corrupt gzip data, or a size that disagrees with
    the header (sizes whose product overflows included). The file is read in chunks and
    never beyond the size its header declares plus one chunk, so a lying header or a gzip
    bomb costs no more memory than the data really there. The PyTorch counterpart is
    ``torchvision.datasets.mnist.read_sn3_pascalvincent_tensor``.
    """
    with open(path, "rb") as f:
        return _read_stream(f, os.fspath(path))


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Parse the bytes of an IDX file (raw or gzipped); ``name`` labels error messages.

    PyTorch counterpart: ``torchvision.datasets.mnist.read_sn3_pascalvincent_tensor``
    reads a path; this takes the bytes (e.g. of a download) and checks them."""
    return _read_stream(io.BytesIO(data), name)


def _read_stream(raw: BinaryIO, name: str) -> np.ndarray:
    gzipped = raw.read(2) == _GZIP_MAGIC
    raw.seek(0)
    stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
    try:
        return _parse(stream, name)
    except (OSError, EOFError, zlib.error) as err:
        if not gzipped:
            raise
        raise MNISTFormatError(f"{name}: corrupt gzip data: {err}") from None


def _parse(stream: BinaryIO, name: str) -> np.ndarray:
    magic = stream.read(4)
    if not magic:
        raise MNISTFormatError(f"{name}: empty file, expected an IDX header")
    if len(magic) < 4:
        raise MNISTFormatError(f"{name}: truncated IDX header: {len(magic)} bytes, need 4")
    if magic[:2] != b"\x00\x00":
        raise MNISTFormatError(
            f"{name}: bad IDX magic number 0x{magic.hex()}, expected 0x0000 followed by "
            "a dtype code and the number of dimensions"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise MNISTFormatError(f"{name}: unknown IDX dtype code 0x{code:02x}, expected {known}")
    if ndim == 0:
        raise MNISTFormatError(f"{name}: IDX header declares 0 dimensions, expected at least 1")
    offset = 4 + 4 * ndim
    sizes = _read_up_to(stream, 4 * ndim)
    if len(sizes) < 4 * ndim:
        raise MNISTFormatError(
            f"{name}: truncated IDX header: {4 + len(sizes)} bytes, need {offset} for {ndim} sizes"
        )
    shape = struct.unpack(f">{ndim}I", sizes)
    dtype = IDX_DTYPES[code]
    expected = offset + dtype.itemsize * math.prod(shape)  # Python ints: no overflow
    payload = _read_up_to(stream, expected - offset + 1)
    if len(payload) != expected - offset:
        if len(payload) < expected - offset:
            what, size = "truncated", offset + len(payload)
        else:  # count the rest without keeping it
            what, size = "trailing bytes", offset + len(payload) + _count_rest(stream)
        raise MNISTFormatError(
            f"{name}: {what}: header {shape} of {dtype.name} needs {expected} bytes, "
            f"file has {size}"
        )
    array = np.frombuffer(payload, dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _read_up_to(stream: BinaryIO, count: int) -> bytes:
    """At most ``count`` bytes, fewer at the end of the stream; memory grows with what
    is read, never with ``count``."""
    chunks, total = [], 0
    while total < count:
        chunk = stream.read(min(_CHUNK, count - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _count_rest(stream: BinaryIO) -> int:
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
    return total
