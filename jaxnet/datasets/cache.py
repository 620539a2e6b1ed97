"""An on-disk cache of named arrays: one ``.npz`` file, written atomically and checksummed.

The cache directory is, in order of precedence: the ``cache_dir`` argument, then
``$JAXNET_DATA_DIR/mnist``, then ``$XDG_CACHE_HOME/jaxnet/mnist`` (default
``~/.cache/jaxnet/mnist``). Files are plain ``.npz`` archives read with
``allow_pickle=False``; a SHA-256 of the arrays is stored beside them and checked on load.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxnet.datasets.errors import MNISTChecksumError, MNISTFormatError

DATA_DIR_ENV = "JAXNET_DATA_DIR"
_DIGEST_KEY = "sha256"


def resolve_cache_dir(path: str | os.PathLike | None = None, dataset: str = "mnist") -> Path:
    """The directory holding ``dataset``'s cache: ``path`` if given, else from the environment."""
    if path is not None:
        return Path(path)
    root = os.environ.get(DATA_DIR_ENV)
    if root:
        return Path(root) / dataset
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "jaxnet" / dataset


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over each array's name, dtype, shape and bytes, in the mapping's order."""
    digest = hashlib.sha256()
    for name, array in arrays.items():
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` and their SHA-256 to ``path`` atomically.

    The archive goes to a temporary file in the same directory, is flushed and fsynced,
    then renamed over ``path`` (``os.replace``): readers see the old file or the new
    one, never a partial write; on any error the temporary file is removed.
    """
    path = Path(path)
    if _DIGEST_KEY in arrays:
        raise ValueError(f"write_arrays: the name {_DIGEST_KEY!r} is reserved for the checksum")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, 0o644)  # mkstemp creates 0o600
            np.savez(f, **arrays, **{_DIGEST_KEY: np.array(arrays_sha256(arrays))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def read_arrays(
    path: str | os.PathLike, names: Sequence[str], expected_sha256: str | None = None
) -> dict[str, np.ndarray]:
    """Read the arrays ``names`` written by ``write_arrays``, verifying their SHA-256.

    Raises ``FileNotFoundError`` when ``path`` is missing, ``MNISTFormatError`` when it is
    not such an archive (wrong names, unreadable, pickled objects) and
    ``MNISTChecksumError`` when the arrays do not match the checksum recorded with them
    or, if given, ``expected_sha256``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_arrays: no cache file at {path}")
    if not zipfile.is_zipfile(path):
        raise MNISTFormatError(f"{path}: not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = {key: archive[key] for key in archive.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:  # ValueError: pickles
        raise MNISTFormatError(f"{path}: unreadable cache file: {err}") from None
    expected_keys = {*names, _DIGEST_KEY}
    if set(stored) != expected_keys:
        raise MNISTFormatError(
            f"{path}: cache holds {sorted(stored)}, expected {sorted(expected_keys)}"
        )
    not_arrays = sorted(k for k, v in stored.items() if not isinstance(v, np.ndarray))
    if not_arrays:
        raise MNISTFormatError(f"{path}: members {not_arrays} are not .npy arrays")
    arrays = {name: stored[name] for name in names}
    recorded = str(stored[_DIGEST_KEY])
    actual = arrays_sha256(arrays)
    if actual != recorded:
        raise MNISTChecksumError(
            f"{path}: arrays have SHA-256 {actual}, the cache recorded {recorded}"
        )
    if expected_sha256 is not None and actual != expected_sha256:
        raise MNISTChecksumError(
            f"{path}: arrays have SHA-256 {actual}, expected {expected_sha256}"
        )
    return arrays


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
