"""jaxnet.datasets on hostile files: lying headers, oversized members, overflowing sizes.

A corrupt MNIST cache is refused with MNISTFormatError before anything large is allocated,
and load_mnist rebuilds it; every bad IDX file raises MNISTFormatError, in memory bounded by
the data really there; the CSV reader numbers a row the same way in every message.
"""

import gzip
import io
import re
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from jaxnet.datasets import MNIST, MNISTFormatError, cache, load_mnist, read_csv, read_idx
from jaxnet.datasets import mnist as mnist_module

MIB = 2**20


def npy_header(shape, dtype=np.uint8) -> bytes:
    """The header np.save writes for an array of ``shape`` (version 1.0)."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    np.lib.format.write_array_header_1_0(buffer, {**header, "shape": tuple(shape)})
    return buffer.getvalue()


def npz(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def valid_members(arrays) -> dict[str, bytes]:
    """The members write_arrays would write, as bytes."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, sha256=np.array(cache.arrays_sha256(arrays)))
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def peak_bytes(call):
    """Run ``call`` (which must raise MNISTFormatError); the peak of traced allocations."""
    tracemalloc.start()
    try:
        with pytest.raises(MNISTFormatError) as info:
            call()
        return tracemalloc.get_traced_memory()[1], str(info.value)
    finally:
        tracemalloc.stop()


@pytest.fixture
def labels():
    return {"train_labels": np.arange(10, dtype=np.uint8)}


def test_a_header_claiming_six_trillion_labels_is_refused_without_allocating(tmp_path, labels):
    members = valid_members(labels)
    members["train_labels.npy"] = npy_header((6 * 10**12,)) + bytes(10)
    path = npz(tmp_path / "mnist.npz", members)
    peak, message = peak_bytes(lambda: cache.read_arrays(path, ["train_labels"]))
    assert "declares uint8[6000000000000] (6000000000000 bytes)" in message
    assert peak < MIB


def test_an_oversized_extra_member_is_refused_before_decompression(tmp_path, labels):
    """256 MiB of zeros deflate to a quarter MiB; the names are checked first."""
    path = tmp_path / "mnist.npz"
    npz(path, valid_members(labels))
    with (
        zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive,
        archive.open("extra.npy", "w", force_zip64=True) as member,
    ):
        for _ in range(256):
            member.write(bytes(MIB))
    peak, message = peak_bytes(lambda: cache.read_arrays(path, ["train_labels"]))
    assert "cache holds ['extra.npy', 'sha256.npy', 'train_labels.npy']" in message
    assert peak < 8 * MIB


def test_a_compressed_member_is_refused_before_decompression(tmp_path, labels):
    path = npz(tmp_path / "mnist.npz", valid_members(labels), zipfile.ZIP_DEFLATED)
    with pytest.raises(MNISTFormatError, match=r"member '\w+\.npy' is compressed"):
        cache.read_arrays(path, ["train_labels"])


def test_a_member_named_twice_is_refused(tmp_path, labels):
    members = valid_members(labels)
    path = npz(tmp_path / "mnist.npz", members)
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr("train_labels.npy", members["train_labels.npy"])
    with pytest.raises(MNISTFormatError, match=r"cache holds .*'train_labels.npy', 'train_labels"):
        cache.read_arrays(path, ["train_labels"])


def test_a_header_larger_than_its_data_is_refused(tmp_path, labels):
    members = valid_members(labels)
    members["train_labels.npy"] = npy_header((11,)) + bytes(10)
    path = npz(tmp_path / "mnist.npz", members)
    with pytest.raises(MNISTFormatError, match=r"declares uint8\[11\] \(11 bytes\), the member"):
        cache.read_arrays(path, ["train_labels"])


def corrupt_caches(canonical: MNIST) -> dict[str, bytes]:
    members = valid_members(canonical._asdict())
    images = members["train_images.npy"]
    return {
        "6e12 labels": {**members, "train_labels.npy": npy_header((6 * 10**12,)) + bytes(5)},
        "extra member": {**members, "extra.npy": bytes(100)},
        "missing member": {k: v for k, v in members.items() if k != "test_labels.npy"},
        "bad npy magic": {**members, "train_images.npy": b"\x93NUMPX" + images[6:]},
        "npy version 9": {**members, "train_images.npy": images[:6] + b"\x09\x00" + images[8:]},
        "header not a dict": {**members, "train_labels.npy": b"\x93NUMPY\x01\x00\x04\x00[]\n"},
        "truncated member": {**members, "train_images.npy": images[:-1]},
        "flipped pixel": {**members, "train_images.npy": images[:-1] + bytes([images[-1] ^ 1])},
    }


@pytest.mark.parametrize("case", list(corrupt_caches(MNIST(*[np.zeros(1)] * 4))))
def test_every_corrupt_cache_is_rebuilt(tmp_path, rng, monkeypatch, case):
    monkeypatch.setattr(mnist_module, "TRAIN_SIZE", 5)
    monkeypatch.setattr(mnist_module, "TEST_SIZE", 3)
    canonical = MNIST(
        rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 5, dtype=np.uint8),
        rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 3, dtype=np.uint8),
    )
    monkeypatch.setattr(mnist_module, "MNIST_SHA256", canonical.sha256())
    monkeypatch.setattr(mnist_module, "_fetch", lambda source, directory: canonical)
    path = npz(tmp_path / "mnist.npz", corrupt_caches(canonical)[case])
    with pytest.warns(UserWarning, match="rebuilding a bad cache"):
        data = load_mnist(cache_dir=tmp_path)
    for got, expected in zip(data, canonical, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert cache.read_arrays(path, MNIST._fields, canonical.sha256())  # rebuilt whole


# ---------------------------------------------------------------- IDX


def idx_header(shape, code=0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "shape",
    [(2**32 - 1,) * 3, (2**32 - 1,) * 4, (2**16, 2**16, 2**16, 2**16)],
    ids=["3-d", "4-d", "product 2**64"],
)
def test_idx_sizes_whose_product_overflows_are_refused(tmp_path, gz, shape):
    data = idx_header(shape) + bytes(16)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    expected = 4 + 4 * len(shape) + int(np.prod(np.array(shape, dtype=object)))
    with pytest.raises(
        MNISTFormatError,
        match=re.escape(f"truncated: header {shape} of uint8 needs {expected} bytes, file has"),
    ):
        read_idx(path)


def test_a_gzip_bomb_behind_a_small_idx_header_is_refused_in_small_memory(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(idx_header((5,)) + bytes(5))
        for _ in range(128):
            f.write(bytes(MIB))
    peak, message = peak_bytes(lambda: read_idx(path))
    assert message.endswith(
        f"trailing bytes: header (5,) of uint8 needs 13 bytes, file has {13 + 128 * MIB}"
    )
    assert peak < 64 * MIB


def test_a_huge_idx_header_over_little_data_reads_only_the_data(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_header((60000, 28, 28)) + bytes(1000))
    peak, message = peak_bytes(lambda: read_idx(path))
    assert message.endswith("needs 47040016 bytes, file has 1016")
    assert peak < 4 * MIB


# ---------------------------------------------------------------- CSV row numbers


def csv_rows(edits, header: bool, blank_second: bool = False) -> bytes:
    rows = [["3", *["0"] * 784] for _ in range(3)]
    for (row, column), value in edits.items():
        rows[row][column] = value
    lines = [",".join(r) for r in rows]
    if blank_second:
        lines.insert(1, "")
    return (("label,pixels\n" if header else "") + "\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("header", [False, True], ids=["no header", "header"])
@pytest.mark.parametrize("blank", [False, True], ids=["", "blank line"])
def test_csv_errors_number_the_same_row_the_same_way(header, blank):
    """The third data row is "data row 3" whether its pixel, label or width is wrong."""
    messages = []
    for edits in ({(2, 5): "256"}, {(2, 0): "10"}, {(2, 784): "0,0"}):
        with pytest.raises(MNISTFormatError) as info:
            read_csv(io.BytesIO(csv_rows(edits, header, blank)))
        messages.append(str(info.value))
    assert messages == [
        "<stream>: data row 3, column 6: '256' is not an integer in 0..255",
        "<stream>: data row 3: label 10 outside 0..9",
        "<stream>: data row 3: expected 785 columns (label and 784 pixels), got 786",
    ]
