"""Files that are never half-written, and the checksum that shows their arrays are whole.

Shared by :mod:`jaxnet.checkpoint` and :mod:`jaxnet.datasets.cache`. PyTorch has no
equivalent: ``torch.save`` writes the target in place and stores no checksum.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Mapping

import numpy as np

_WRITE_CHUNK = 1 << 26  # bytes per os.write call


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over each array's name, dtype, shape and bytes, in the mapping's order.

    PyTorch has no equivalent (``torchvision`` checks MD5s of whole downloaded files).
    """
    digest = hashlib.sha256()
    for name, array in arrays.items():
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def write_atomically(fn: str, path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Replace ``path`` by ``data`` so that no crash leaves a partial or missing file.

    PyTorch has no equivalent: ``torch.save`` writes ``path`` in place.

    A fresh temporary file next to ``path`` receives the bytes and is fsynced, then
    ``os.replace`` (atomic on POSIX and Windows) puts it in place and the directory is
    fsynced so the rename itself survives a power cut. On any error the temporary file is
    removed and ``path`` is untouched. A process killed outright (SIGKILL, power loss)
    before the rename can leave a hidden ``.<name>.<random>.tmp`` beside the target; the
    target itself is always whole. An ``OSError`` creating the temporary file (a missing
    folder, no permission) is raised naming ``path``, prefixed with ``fn``.
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
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view[:_WRITE_CHUNK]) :]
            os.fsync(fd)
        finally:
            os.close(fd)
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
