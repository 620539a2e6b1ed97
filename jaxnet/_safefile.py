"""Files that are never half-written, read without trusting them, and checksummed.

Shared by :mod:`jaxnet.checkpoint` and :mod:`jaxnet.datasets.cache`:

* :func:`write_atomically`: a temporary file renamed over the target, so a crash leaves the
  old file or the new one; the next successful write removes temporaries of killed writes.
* :func:`open_regular_file`: refuses FIFOs, devices and folders before reading a byte.
* :class:`SafetensorsFile`: the safetensors header read and checked in full (size, JSON,
  names, dtypes, shapes, byte ranges against the file size) before any tensor byte is
  read, then only the tensors asked for; :func:`safetensors_chunks` writes the format.
* :func:`arrays_sha256`: the checksum that shows arrays are whole.

PyTorch has no equivalent: ``torch.save`` writes the target in place and stores no
checksum; ``safetensors.torch.load_file`` checks the header as this module does.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import stat
import struct
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO, NamedTuple

import ml_dtypes
import numpy as np

try:  # POSIX: a writer holds a lock on its temporary file until it is renamed
    import fcntl
except ImportError:  # pragma: no cover - Windows, where open files cannot be removed
    fcntl = None

_WRITE_CHUNK = 1 << 26  # bytes per os.write call
_READ_CHUNK = 1 << 26  # bytes per readinto call
# safetensors' own limit on the JSON header (its MAX_HEADER_SIZE).
MAX_HEADER_BYTES = 100_000_000
# Temporaries without a byte are left alone this long: their writer may not hold its lock yet.
_EMPTY_TEMP_GRACE_S = 60.0
# safetensors dtype names and the NumPy dtypes they hold (little-endian, as stored).
SAFETENSORS_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("<u1"),
    "I8": np.dtype("<i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "C64": np.dtype("<c8"),
}
SAFETENSORS_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}
_TENSOR_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
_MAX_DIMS = 64  # NumPy's limit on an array's number of dimensions


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over each array's name, dtype, shape and bytes, in the mapping's order.

    PyTorch has no equivalent (``torchvision`` checks MD5s of whole downloaded files).
    """
    digest = hashlib.sha256()
    for name, array in arrays.items():
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


# ------------------------------------------------------------------ writing


def write_atomically(fn: str, path: str | os.PathLike, *chunks: Any) -> None:
    """Replace ``path`` by the concatenated byte buffers ``chunks``; no crash leaves a
    partial or missing file.

    PyTorch has no equivalent: ``torch.save`` writes ``path`` in place.

    A fresh temporary file ``.<name>.<12 hex digits>.tmp`` next to ``path`` receives the
    bytes and is fsynced, then ``os.replace`` (atomic on POSIX and Windows) puts it in
    place and the directory is fsynced so the rename itself survives a power cut. On any
    error the temporary file is removed and ``path`` is untouched. A process killed
    outright (SIGKILL, power loss) before the rename leaves its temporary file; on POSIX
    the next successful write of the same ``path`` removes such leftovers. The writer
    holds an ``flock`` on its temporary file until the rename, so a leftover is one whose
    lock can be taken; no other file is touched. An ``OSError`` creating the temporary
    file (a missing folder, no permission) is raised naming ``path``, prefixed with ``fn``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    # O_EXCL: never reuse a file; mode 0o666 lets the umask decide, as open(path, "wb") does.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
    except OSError as error:
        folder = os.path.dirname(path) or os.curdir
        missing = isinstance(error, FileNotFoundError) and not os.path.isdir(directory)
        reason = f"the folder {folder!r} does not exist" if missing else error.strerror
        raise OSError(error.errno, f"{fn}: cannot write {path!r}: {reason}") from None
    try:
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                while view:
                    view = view[os.write(fd, view[:_WRITE_CHUNK]) :]
            os.fsync(fd)
            if fcntl is not None:  # POSIX renames an open file; the lock lasts until then
                os.replace(tmp, path)
        finally:
            os.close(fd)
        if fcntl is None:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # other systems cannot open a directory to fsync it
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    remove_stale_temporaries(path)


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove the temporary files that killed :func:`write_atomically` calls left for ``path``.

    Only names ``.<name of path>.<12 hex digits>.tmp`` in ``path``'s folder are candidates,
    and only those no live writer holds (their ``flock`` can be taken); a file without a
    byte is also left alone for a minute, since its writer may be between creating and
    locking it. Returns the names removed. POSIX only (elsewhere nothing is removed).
    """
    if fcntl is None:
        return []
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(rf"\.{re.escape(os.path.basename(path))}\.[0-9a-f]{{12}}\.tmp")
    removed = []
    for name in os.listdir(directory):
        if pattern.fullmatch(name) and _remove_if_unlocked(os.path.join(directory, name)):
            removed.append(name)
    return removed


def _remove_if_unlocked(tmp: str) -> bool:
    try:
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:  # gone (its writer renamed it), or not ours to open
        return False
    try:
        info = os.fstat(fd)
        fresh = info.st_size == 0 and time.time() - info.st_mtime < _EMPTY_TEMP_GRACE_S
        if not stat.S_ISREG(info.st_mode) or fresh:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        return True
    finally:
        os.close(fd)


def safetensors_chunks(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> list:
    """The bytes of a safetensors file, as a header and one buffer per tensor.

    PyTorch equivalent: ``safetensors.torch.save``. The JSON header has its keys sorted and
    no spaces, padded with spaces to a multiple of 8 bytes; tensors follow in order of
    decreasing item size, then name (as ``safetensors`` orders them), so every tensor is
    aligned to its item size and equal inputs give equal bytes. Arrays must be
    C-contiguous, of a dtype in :data:`SAFETENSORS_NAMES`.
    """
    if "__metadata__" in tensors:
        raise ValueError("safetensors: '__metadata__' is reserved and cannot name a tensor")
    order = sorted(tensors, key=lambda name: (-tensors[name].dtype.itemsize, name))
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name in order:
        array = tensors[name]
        header[name] = {
            "dtype": SAFETENSORS_NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    data = [np.ascontiguousarray(tensors[name]).reshape(-1).view(np.uint8) for name in order]
    return [struct.pack("<Q", len(text)) + text, *data]


# ------------------------------------------------------------------ reading


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for binary reading, after checking it is a regular file.

    Opening never blocks (a FIFO without a writer would block ``open``) and the check is
    made on the opened file, so the path cannot be swapped in between. A FIFO, device
    (``/dev/zero``), socket or folder raises ``OSError`` whose ``strerror`` says
    ``"not a regular file (a FIFO)"``; so do the errors of ``open`` itself.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({_file_kind(mode)})", path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), "not a file")


class TensorEntry(NamedTuple):
    """One tensor of a safetensors header: dtype, shape and absolute byte range in the file."""

    dtype: np.dtype
    shape: tuple[int, ...]
    start: int
    stop: int


class SafetensorsFile:
    """A safetensors file whose header has been read and checked; tensors are read on demand.

    PyTorch equivalent: ``safetensors.safe_open(path, framework="pt")``. The constructor
    reads only the 8-byte length and the header, and raises ``ValueError`` (a message
    fragment, without the path) unless: the header length is at most
    :data:`MAX_HEADER_BYTES` and inside the file; the header is UTF-8 JSON, an object,
    without a repeated name at any level (checked in linear time), not nested deeper than
    Python's parser allows; ``__metadata__`` maps strings to strings; every tensor has
    exactly ``dtype`` (a name of :data:`SAFETENSORS_DTYPES`), ``shape`` (at most 64
    non-negative ints, a size NumPy can represent, zero-element tensors included) and
    ``data_offsets`` spanning exactly its bytes; and the byte ranges tile the data
    section without gap or overlap up to the end of the file. ``OSError`` comes from
    opening, reading, or :func:`open_regular_file`'s refusals. Use it as a context manager.
    """

    def __init__(self, path: str | os.PathLike):
        self._file = open_regular_file(path)
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            self.entries, self.metadata = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def read(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        """The tensors ``names`` as fresh NumPy arrays; only their bytes are read.

        ``ValueError`` if the file was cut short since its header was read.
        """
        tensors = {}
        for name in names:
            entry = self.entries[name]
            array = np.empty(entry.shape, entry.dtype)
            self._read_into(array.reshape(-1).view(np.uint8), entry.start, name)
            tensors[name] = array
        return tensors

    def _read_into(self, buffer: np.ndarray, offset: int, name: str) -> None:
        self._file.seek(offset)
        done = 0
        while done < buffer.size:
            got = self._file.readinto(buffer[done : done + _READ_CHUNK])
            if not got:
                raise ValueError(f"tensor {name!r} ends past the end of the file (cut short?)")
            done += got

    def _read_exactly(self, count: int) -> bytes:
        data = self._file.read(count)
        while len(data) < count:
            more = self._file.read(count - len(data))
            if not more:
                break
            data += more
        return data

    def _read_header(self) -> tuple[dict[str, TensorEntry], dict[str, str]]:
        if self.size < 8:
            raise ValueError(f"header too small: the file has {self.size} bytes, need at least 8")
        length = int.from_bytes(self._read_exactly(8), "little")
        if length > MAX_HEADER_BYTES:
            raise ValueError(
                f"header too large: {length} bytes declared, the limit is {MAX_HEADER_BYTES}"
            )
        if length > self.size - 8:
            raise ValueError(
                f"invalid header length {length}: the file has {self.size - 8} bytes after it"
            )
        raw = self._read_exactly(length)
        if len(raw) < length:
            raise ValueError(f"header cut short: {len(raw)} of {length} bytes")
        header = _parse_json(raw)
        if not isinstance(header, dict):
            raise ValueError(f"invalid header: expected a JSON object, got {_short(header)}")
        metadata = header.pop("__metadata__", None)
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, dict) or not all(
            isinstance(value, str) for value in metadata.values()
        ):
            raise ValueError(
                f"invalid __metadata__: expected a map of strings to strings, got "
                f"{_short(metadata)}"
            )
        start = 8 + length
        entries = {name: _tensor_entry(name, info, start) for name, info in header.items()}
        _check_tiling(entries, start, self.size)
        return entries, metadata


class RepeatedNamesError(ValueError):
    """A JSON object names an entry twice (the safetensors and ``json`` parsers keep the last)."""


def unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON ``object_pairs_hook`` refusing repeated names, in linear time."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated = {name for name, _ in pairs if name in seen or seen.add(name)}
        raise RepeatedNamesError(f"{sorted(repeated)} appear more than once")
    return result


def _parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"invalid UTF-8 in header: {error}") from None
    try:
        return json.loads(text, object_pairs_hook=unique_names)
    except RepeatedNamesError as error:
        raise ValueError(f"ambiguous header: {error}") from None
    except RecursionError:
        raise ValueError("invalid JSON in header: nested too deeply") from None
    except ValueError as error:
        raise ValueError(f"invalid JSON in header: {error}") from None


def _tensor_entry(name: str, info: Any, data_start: int) -> TensorEntry:
    if not isinstance(info, dict) or info.keys() != _TENSOR_FIELDS:
        raise ValueError(
            f"tensor {name!r}: expected an object with exactly dtype, shape and "
            f"data_offsets, got {_short(info)}"
        )
    dtype = SAFETENSORS_DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    if dtype is None:
        raise ValueError(
            f"tensor {name!r}: unknown dtype {_short(info['dtype'])}; jaxnet reads "
            f"{', '.join(SAFETENSORS_DTYPES)}"
        )
    shape, offsets = info["shape"], info["data_offsets"]
    if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
        raise ValueError(
            f"tensor {name!r}: shape must be a list of non-negative integers, got {_short(shape)}"
        )
    # NumPy's own limits, checked here so that no array constructor raises later.
    if len(shape) > _MAX_DIMS or math.prod(d or 1 for d in shape) * dtype.itemsize > sys.maxsize:
        raise ValueError(f"tensor {name!r}: shape {_short(shape)} is too large for an array")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(_is_count(o) for o in offsets)
        and offsets[0] <= offsets[1]
    ):
        raise ValueError(
            f"tensor {name!r}: data_offsets must be two integers 0 <= begin <= end, "
            f"got {_short(offsets)}"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise ValueError(
            f"tensor {name!r}: {info['dtype']}{shape} needs {nbytes} bytes, its data_offsets "
            f"{offsets} span {offsets[1] - offsets[0]}"
        )
    return TensorEntry(dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _check_tiling(entries: Mapping[str, TensorEntry], data_start: int, size: int) -> None:
    """The byte ranges must cover the data section exactly, without gaps or overlaps."""
    position = data_start
    for entry, name in sorted((entry[2:], name) for name, entry in entries.items()):
        if entry[0] != position:
            raise ValueError(
                f"invalid offset for tensor `{name}`: its data starts at byte "
                f"{entry[0] - data_start}, expected {position - data_start} (the tensors must "
                "cover the data section without gaps or overlaps)"
            )
        position = entry[1]
    if position != size:
        raise ValueError(
            f"file not fully covered: the tensors end at byte {position - data_start} of a "
            f"{size - data_start}-byte data section"
        )


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (headers are untrusted and may be huge)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
