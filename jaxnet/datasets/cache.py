"""An on-disk cache of named arrays: one ``.npz`` file, written atomically and checksummed.

The cache directory is, in order of precedence: the ``cache_dir`` argument, then
``$JAXNET_DATA_DIR/mnist``, then ``$XDG_CACHE_HOME/jaxnet/mnist`` (default
``~/.cache/jaxnet/mnist``). Files are plain ``.npz`` archives read with
``allow_pickle=False``; a SHA-256 of the arrays is stored beside them and checked on load.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxnet._safefile import arrays_sha256 as arrays_sha256
from jaxnet._safefile import write_atomically
from jaxnet.datasets.errors import MNISTChecksumError, MNISTFormatError

DATA_DIR_ENV = "JAXNET_DATA_DIR"
_DIGEST_KEY = "sha256"


def resolve_cache_dir(path: str | os.PathLike | None = None, dataset: str = "mnist") -> Path:
    """The directory holding ``dataset``'s cache: ``path`` if given, else from the environment.

    PyTorch equivalent: the ``root`` argument of ``torchvision.datasets.MNIST`` (torchvision
    has no default cache directory; ``torch.hub.get_dir()`` is the closest).
    """
    if path is not None:
        return Path(path)
    root = os.environ.get(DATA_DIR_ENV)
    if root:
        return Path(root) / dataset
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "jaxnet" / dataset


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` and their SHA-256 to ``path`` atomically, creating its folder.

    PyTorch equivalent: ``torch.save(tensors, path)``, which neither checksums nor writes
    atomically. The archive is built in memory, then written with
    :func:`jaxnet._safefile.write_atomically`: readers see the old file or the new one,
    never a partial write; on any error no temporary file is left.
    """
    path = Path(path)
    if _DIGEST_KEY in arrays:
        raise ValueError(f"write_arrays: the name {_DIGEST_KEY!r} is reserved for the checksum")
    path.parent.mkdir(parents=True, exist_ok=True)
    archive = io.BytesIO()
    np.savez(archive, **arrays, **{_DIGEST_KEY: np.array(arrays_sha256(arrays))})
    write_atomically("write_arrays", path, archive.getbuffer())


def read_arrays(
    path: str | os.PathLike, names: Sequence[str], expected_sha256: str | None = None
) -> dict[str, np.ndarray]:
    """Read the arrays ``names`` written by ``write_arrays``, verifying their SHA-256.

    PyTorch equivalent: ``torch.load(path, weights_only=True)``, which stores no checksum.
    Raises ``FileNotFoundError`` when ``path`` is missing, ``MNISTFormatError`` when it is
    not such an archive and ``MNISTChecksumError`` when the arrays do not match the
    checksum recorded with them or, if given, ``expected_sha256``.

    The file is untrusted and checked before anything large is allocated: member names
    first (from the zip directory, nothing decompressed), then each member must be stored
    uncompressed as ``write_arrays`` stores it (so no member is larger than the file),
    and each ``.npy`` header must describe a non-object array whose size is exactly the
    member's; only then are the arrays read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_arrays: no cache file at {path}")
    expected = {f"{name}.npy": name for name in (*names, _DIGEST_KEY)}
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            found = [member.filename for member in members]
            if sorted(found) != sorted(expected):
                raise MNISTFormatError(
                    f"{path}: cache holds {sorted(found)}, expected {sorted(expected)}"
                )
            stored = {expected[m.filename]: _read_member(path, archive, m) for m in members}
    except MNISTFormatError:
        raise
    except zipfile.BadZipFile as err:
        raise MNISTFormatError(f"{path}: not an .npz archive: {err}") from None
    except (OSError, EOFError, ValueError, RuntimeError) as err:
        raise MNISTFormatError(f"{path}: unreadable cache file: {err}") from None
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


def _read_member(path: Path, archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member, read only once its header agrees with its stored size."""
    where = f"{path}: member {member.filename!r}"
    if member.compress_type != zipfile.ZIP_STORED or member.file_size != member.compress_size:
        raise MNISTFormatError(f"{where} is compressed; the cache stores its arrays uncompressed")
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:
            raise MNISTFormatError(f"{where}: unsupported .npy version {version}")
        shape, _, dtype = read_header(stream)
        if dtype.hasobject:
            raise MNISTFormatError(f"{where} holds Python objects, which are never unpickled")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != member.file_size - stream.tell():
            raise MNISTFormatError(
                f"{where}: its header declares {dtype}{list(shape)} ({nbytes} bytes), "
                f"the member holds {member.file_size - stream.tell()} bytes of data"
            )
    with archive.open(member) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)
