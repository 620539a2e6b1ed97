"""Bad files and bad input: truncation, corruption, pickled payloads, and docs/errors.md.

* Every truncated prefix of a valid IDX, CSV and cache file is refused with the project's
  error type, or (CSV cut exactly at a row boundary) read as the rows it still holds.
  Truncated safetensors weights and training states are covered in test_checkpoint.py.
* Corrupt checkpoints beyond those of test_checkpoint.py, read as training states.
* Nothing half-loads: a failed load raises and leaves the caller's template untouched.
* No file makes jaxnet run code: a pickle whose unpickling would create a marker file is
  fed to every reader (as a checkpoint, a torch zip checkpoint, the MNIST cache, IDX and
  CSV files); each refuses it and the marker never appears.
* A layer class given for a layer instance is refused, as torch refuses it.
* docs/errors.md: every row's error type and message are those of the real exception,
  triggered here.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from jax.sharding import AxisType, Mesh

from jaxnet import nn, optim, parallel, train
from jaxnet.checkpoint import CheckpointError, load_state, load_weights, save_state, save_weights
from jaxnet.datasets import (
    MNISTFormatError,
    batch_order,
    cache,
    load_mnist,
    normalize,
    read_csv,
    read_idx,
)
from jaxnet.datasets import mnist as mnist_module
from jaxnet.nn import functional as F
from jaxnet.nn import init
from jaxnet.nn.loss import CrossEntropyLoss
from jaxnet.nn.utils import clip_grad_norm
from jaxnet.optim import lr_scheduler

IDX_CODES = {"uint8": 0x08, "int16": 0x0B, "float64": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: magic, big-endian sizes, big-endian values."""
    header = bytes([0, 0, IDX_CODES[array.dtype.name], array.ndim])
    sizes = struct.pack(f">{array.ndim}I", *array.shape)
    return header + sizes + array.astype(array.dtype.newbyteorder(">")).tobytes()


def csv_bytes(images: np.ndarray, labels: np.ndarray, header: bool) -> bytes:
    rows = ["label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))]
    rows = rows if header else []
    rows += [",".join(map(str, [y, *x.ravel()])) for x, y in zip(images, labels, strict=True)]
    return ("\n".join(rows) + "\n").encode()


def prefixes(data: bytes):
    """Every proper prefix of ``data``, the empty one included."""
    return (data[:length] for length in range(len(data)))


# ------------------------------------------------------------------ truncated files


@pytest.mark.parametrize("dtype", list(IDX_CODES))
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_every_truncated_idx_file_is_refused(tmp_path, rng, dtype, gz):
    array = (rng.standard_normal((3, 2, 4)) * 100).astype(dtype)
    data = idx_bytes(array)
    data = gzip.compress(data) if gz else data
    path = tmp_path / "train-images-idx3-ubyte"
    for prefix in prefixes(data):
        path.write_bytes(prefix)
        with pytest.raises(MNISTFormatError, match=re.escape(str(path))):
            read_idx(path)
    path.write_bytes(data)
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize("header", [False, True], ids=["rows", "header+rows"])
def test_every_truncated_csv_file_is_refused_or_read_as_its_whole_rows(rng, header):
    """A cut inside a row must raise; a cut at a row boundary leaves whole rows only.

    Each row ends in a three-digit pixel, so a cut inside the last number leaves a row
    with 785 columns and a wrong value: that must not pass for data either.
    """
    images = rng.integers(0, 10, (3, 28, 28), dtype=np.uint8)
    images[:, -1, -1] = [255, 128, 173]
    labels = np.array([7, 0, 9], np.uint8)
    data = csv_bytes(images, labels, header)
    wrong = []
    for prefix in prefixes(data):
        try:
            got_images, got_labels = read_csv(io.BytesIO(prefix))
        except MNISTFormatError:
            continue
        rows = len(got_labels)
        if not (
            np.array_equal(got_images, images[:rows]) and np.array_equal(got_labels, labels[:rows])
        ):
            wrong.append(prefix[-12:].decode())
    assert not wrong, f"{len(wrong)} truncated files read as wrong data, ending in {wrong}"
    np.testing.assert_array_equal(read_csv(io.BytesIO(data))[0], images)


def test_every_truncated_cache_file_is_refused(tmp_path, rng):
    arrays = {"images": rng.integers(0, 256, (2, 4, 4), dtype=np.uint8)}
    path = tmp_path / "mnist.npz"
    cache.write_arrays(path, arrays)
    data = path.read_bytes()
    for prefix in prefixes(data):
        path.write_bytes(prefix)
        with pytest.raises(MNISTFormatError, match=re.escape(str(path))):
            cache.read_arrays(path, ["images"])
    path.write_bytes(data)
    np.testing.assert_array_equal(cache.read_arrays(path, ["images"])["images"], arrays["images"])


# ------------------------------------------------------------------ corrupt checkpoints

STATE_METADATA = {"format": "jaxnet.train_state", "version": "1", "prng_keys": "{}"}
W = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
BODY = np.array([1.5, -2.0], np.float32).tobytes()
LIKE = {"w": np.zeros(2, np.float32)}


def state_file(header, body=BODY) -> bytes:
    """A safetensors file from a header (a dict, or raw JSON bytes) and a data section."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def with_w(entry=None, metadata=None) -> bytes:
    """The valid one-tensor state file with ``['w']``'s entry or the metadata changed."""
    return state_file({"['w']": entry or W, "__metadata__": metadata or STATE_METADATA})


VALID_HEADER = json.dumps({"['w']": W, "__metadata__": STATE_METADATA}).encode()

# Corruptions test_checkpoint.py does not make (it reads its cases with load_weights).
CORRUPT_STATES = {
    "header length 0": (struct.pack("<Q", 0) + VALID_HEADER + BODY, "not a valid safetensors"),
    "header length one short": (
        struct.pack("<Q", len(VALID_HEADER) - 1) + VALID_HEADER + BODY,
        "not a valid safetensors",
    ),
    "header length one long": (
        struct.pack("<Q", len(VALID_HEADER) + 1) + VALID_HEADER + BODY,
        "not a valid safetensors",
    ),
    "tensor entry not an object": (
        with_w(entry=5),
        "expected an object with exactly dtype, shape and data_offsets, got 5",
    ),
    "offsets reversed": (
        with_w({**W, "data_offsets": [8, 0]}),
        r"data_offsets must be two integers 0 <= begin <= end, got \[8, 0\]",
    ),
    "offsets missing": (
        with_w({"dtype": "F32", "shape": [2]}),
        "expected an object with exactly dtype, shape and data_offsets",
    ),
    "three offsets": (with_w({**W, "data_offsets": [0, 4, 8]}), "data_offsets must be two"),
    "shape overflows": (
        with_w({**W, "shape": [2**32, 2**32, 4]}),
        r"shape \[4294967296, 4294967296, 4\] is too large for an array",
    ),
    "shape not integers": (
        with_w({**W, "shape": [2.0]}),
        r"shape must be a list of non-negative integers, got \[2.0\]",
    ),
    "shape a boolean": (with_w({**W, "shape": [True, 2]}), "shape must be a list of non-negative"),
    "dtype lower case": (with_w({**W, "dtype": "f32"}), "unknown dtype 'f32'"),
    "empty tensor past the end": (
        state_file(
            {
                "['w']": W,
                "['e']": {"dtype": "F32", "shape": [0], "data_offsets": [100, 100]},
                "__metadata__": STATE_METADATA,
            }
        ),
        "invalid offset for tensor `\\['e'\\]`",
    ),
    "NUL bytes after the header": (
        state_file(VALID_HEADER + b"\x00\x00"),
        "invalid JSON in header: Extra data",
    ),
    "metadata not a map": (state_file({"['w']": W, "__metadata__": [1]}), "expected a map"),
    "metadata name repeated": (
        state_file(
            b'{"[\'w\']": %s, "__metadata__": {"format": "pt", "format": '
            b'"jaxnet.train_state", "version": "1", "prng_keys": "{}"}}' % json.dumps(W).encode()
        ),
        r"ambiguous header: \['format'\] appear more than once",
    ),
    "no metadata": (state_file({"['w']": W}), "got format None version None"),
    "format missing": (
        with_w(metadata={"version": "1", "prng_keys": "{}"}),
        "got format None version '1'",
    ),
    "prng_keys name repeated": (
        with_w(
            {**W, "dtype": "U32"},
            {**STATE_METADATA, "prng_keys": '{"[\'w\']": "rbg", "[\'w\']": "threefry2x32"}'},
        ),
        "prng_keys",
    ),
}


@pytest.mark.parametrize("case", CORRUPT_STATES, ids=list(CORRUPT_STATES))
def test_corrupt_state_file_is_refused(tmp_path, case):
    data, reason = CORRUPT_STATES[case]
    path = tmp_path / "state.safetensors"
    path.write_bytes(data)
    like = {"w": jax.random.key(0)} if case.startswith("prng_keys") else LIKE
    with pytest.raises(CheckpointError, match=rf"load_state: .*{reason}"):
        load_state(path, like)


def test_the_corruptions_edit_a_loadable_file(tmp_path):
    path = tmp_path / "state.safetensors"
    path.write_bytes(with_w())
    np.testing.assert_array_equal(load_state(path, LIKE)["w"], [1.5, -2.0])
    path.write_bytes(
        with_w(
            {**W, "dtype": "U32"}, {**STATE_METADATA, "prng_keys": '{"[\'w\']": "threefry2x32"}'}
        )
    )
    restored = load_state(path, {"w": jax.random.key(0)})
    assert jax.random.key_impl(restored["w"]) == jax.random.key_impl(jax.random.key(0))


# ------------------------------------------------------------------ nothing half-loads


def host_copy(tree):
    return jax.tree.map(lambda leaf: np.array(leaf, copy=True), tree)


def assert_same_bits(tree, snapshot):
    assert jax.tree.structure(tree) == jax.tree.structure(snapshot)
    for leaf, saved in zip(jax.tree.leaves(tree), jax.tree.leaves(snapshot), strict=True):
        assert np.asarray(leaf).tobytes() == saved.tobytes()


def mlp_state():
    params = {"0": {"weight": np.full((3, 2), 7.0, np.float32), "bias": np.ones(3, np.float32)}}
    return {"params": params, "opt": optax.adam(1e-3).init(params), "step": np.int32(4)}


def test_failed_state_load_leaves_the_template_untouched(tmp_path):
    path = tmp_path / "state.safetensors"
    saved = mlp_state()
    saved["params"]["0"]["weight"][:] = -1.0
    save_state(path, saved)
    like = mlp_state()
    like["params"]["0"]["bias"] = np.ones(4, np.float32)  # the last leaf does not match
    snapshot = host_copy(like)
    with pytest.raises(CheckpointError, match=r"'\]\['bias'\]\": expected float32\[4\]"):
        load_state(path, like)
    assert_same_bits(like, snapshot)

    restored = load_state(path, mlp_state())
    restored["params"]["0"]["weight"][:] = 99.0  # the result shares no memory with the file
    assert_same_bits(load_state(path, mlp_state()), host_copy(saved))


def test_failed_weights_load_returns_nothing(tmp_path):
    """A file missing a key is refused as a whole: no partly loaded params come back."""
    path = tmp_path / "w.safetensors"
    weight = {"0": {"weight": np.zeros((3, 2), np.float32)}}
    save_weights(path, nn.Sequential(nn.Linear(2, 3, bias=False)), weight)
    with pytest.raises(CheckpointError, match=r"missing key '0\.bias'"):
        load_weights(path, nn.Sequential(nn.Linear(2, 3)))


def test_failed_state_dict_load_leaves_the_params_untouched():
    params = {
        "0": {"weight": np.full((8, 4), 5.0, np.float32), "bias": np.ones(8, np.float32)},
        "2": {"weight": np.full((2, 8), 5.0, np.float32), "bias": np.ones(2, np.float32)},
    }
    snapshot = host_copy(params)
    state_dict = {**SMALL.state_dict(small_params()), "0.bias": np.zeros(4, np.float32)}
    with pytest.raises(ValueError, match=r"'0.bias': expected float32\[8\], got float32\[4\]"):
        SMALL.load_state_dict(state_dict, params=params)
    assert_same_bits(params, snapshot)


# ------------------------------------------------------------------ no code runs


class Payload:
    """Unpickling this object writes ``marker``: what a malicious file would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


@pytest.fixture
def marker(tmp_path):
    """A path that appears only if a payload is unpickled; checked after every test."""
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "a file made jaxnet run code"


def payloads(marker: Path) -> dict[str, bytes]:
    return {f"pickle-{p}": pickle.dumps(Payload(marker), protocol=p) for p in (0, 2, 5)}


def test_the_payload_runs_code_when_unpickled(tmp_path):
    proof = tmp_path / "proof"
    for data in payloads(proof).values():
        pickle.loads(data)  # what torch.load(weights_only=False) or np.load(allow_pickle) do
        assert proof.read_text() == "code ran"
        proof.unlink()


def test_pickles_named_safetensors_are_refused(tmp_path, marker):
    path = tmp_path / "model.safetensors"
    for data in payloads(marker).values():
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match="not a valid safetensors file"):
            load_weights(path, SMALL)
        with pytest.raises(CheckpointError, match="not a valid safetensors file"):
            load_state(path, like=LIKE)


def test_torch_checkpoint_with_a_payload_is_refused(tmp_path, marker):
    path = tmp_path / "model.safetensors"
    torch.save({"w": Payload(marker)}, path)  # a real torch zip checkpoint
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_weights(path, SMALL)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_state(path, like=LIKE)


def test_pickle_in_checkpoint_metadata_is_never_unpickled(tmp_path, marker):
    text = pickle.dumps(Payload(marker), protocol=0).decode("latin-1")
    path = tmp_path / "state.safetensors"
    path.write_bytes(with_w(metadata={**STATE_METADATA, "prng_keys": text}))
    with pytest.raises(CheckpointError, match="corrupt 'prng_keys' metadata"):
        load_state(path, LIKE)


def npz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def malicious_caches(marker: Path) -> dict[str, bytes]:
    """``mnist.npz`` files that would run the payload if read with pickles allowed."""
    checksum = npy_bytes(np.array("0" * 64))
    return {
        "object array": npz_bytes(
            {
                "train_images.npy": npy_bytes(np.array([Payload(marker)], dtype=object)),
                "sha256.npy": checksum,
            }
        ),
        "raw pickle member": npz_bytes(
            {"train_images.npy": pickle.dumps(Payload(marker)), "sha256.npy": checksum}
        ),
        "pickle file": pickle.dumps(Payload(marker)),
    }


@pytest.mark.parametrize("case", ["object array", "raw pickle member", "pickle file"])
def test_malicious_cache_is_refused_and_rebuilt(tmp_path, marker, monkeypatch, case):
    path = tmp_path / "mnist.npz"
    path.write_bytes(malicious_caches(marker)[case])
    with pytest.raises(MNISTFormatError, match=re.escape(str(path))):
        cache.read_arrays(path, ["train_images"])

    def fetch(source, directory):
        raise ConnectionError("offline")  # a rebuild was attempted

    monkeypatch.setattr(mnist_module, "_fetch", fetch)
    with (
        pytest.warns(UserWarning, match="rebuilding a bad cache"),
        pytest.raises(ConnectionError),
    ):
        load_mnist(cache_dir=tmp_path)


def test_pickles_as_idx_files_are_refused(tmp_path, marker):
    files = {**payloads(marker), "gzip": gzip.compress(pickle.dumps(Payload(marker)))}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(MNISTFormatError, match="bad IDX magic number"):
            read_idx(path)
    for base in mnist_module.IDX_NAMES.values():
        (tmp_path / base).write_bytes(files["pickle-5"])
    with pytest.raises(MNISTFormatError, match="bad IDX magic number"):
        load_mnist(source="idx", path=tmp_path)


def test_pickles_as_csv_files_are_refused(tmp_path, marker):
    for name, data in payloads(marker).items():
        path = tmp_path / f"{name}.csv"
        path.write_bytes(data)
        with pytest.raises(MNISTFormatError, match=re.escape(str(path))):
            read_csv(path)


# ------------------------------------------------------------------ bad input


def test_sequential_refuses_a_layer_class():
    """``nn.ReLU`` for ``nn.ReLU()``: torch's Sequential raises at construction
    ("... is not a Module subclass"); a class has ``init`` and ``apply`` attributes too."""
    with pytest.raises(TypeError, match="is not a Module subclass"):
        torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU)
    with pytest.raises(TypeError, match=r"Sequential: child 1 .*ReLU"):
        nn.Sequential(nn.Linear(2, 2), nn.ReLU)


# ------------------------------------------------------------------ docs/errors.md

ERRORS_DOC = Path(__file__).parents[1] / "docs" / "errors.md"
KEY = jax.random.key(0)
SMALL = nn.MLP(4, [8], 2)


def small_params():
    return {
        "0": {"weight": np.zeros((8, 4), np.float32), "bias": np.zeros(8, np.float32)},
        "2": {"weight": np.zeros((2, 8), np.float32), "bias": np.zeros(2, np.float32)},
    }


def wider_params():
    """``small_params`` of an MLP with 5 inputs instead of 4."""
    return {
        **small_params(),
        "0": {"weight": np.zeros((8, 5), np.float32), "bias": np.zeros(8, np.float32)},
    }


def torch_names(params, **edits):
    """``SMALL.state_dict(params)`` with entries replaced (or removed, with None)."""
    state_dict = {**SMALL.state_dict(params), **edits}
    return {k: v for k, v in state_dict.items() if v is not None}


def write(name: str, data: bytes) -> str:
    Path(name).write_bytes(data)
    return name


def mnist_csv(edits: dict[tuple[int, int], str]) -> bytes:
    """Two MNIST CSV rows of zeros; ``edits`` maps (row, column) to a replacement value."""
    rows = [["3", *["0"] * 784] for _ in range(2)]
    for (row, column), value in edits.items():
        rows[row][column] = value
    return ("\n".join(",".join(r) for r in rows) + "\n").encode()


def tampered_cache() -> str:
    cache.write_arrays("mnist.npz", {"train_images": np.zeros((1, 28, 28), np.uint8)})
    with np.load("mnist.npz") as archive:
        stored = dict(archive)
    stored["train_images"][0, 0, 0] = 1  # the recorded SHA-256 no longer matches
    np.savez("mnist.npz", **stored)
    return "mnist.npz"


def fit_small(data, batch_size=8, **kwargs):
    opt = optim.SGD(0.1)
    state = train.TrainState.create(SMALL.init(KEY), opt, KEY)

    def loss(params, batch):
        return F.mse_loss(SMALL.apply(params, batch[0]), batch[1])

    return train.fit(state, loss, data, epochs=1, batch_size=batch_size, progress=False, **kwargs)


def nan_data():
    x, y = np.ones((32, 4), np.float32), np.ones((32, 2), np.float32)
    x[3 * 8] = np.nan  # the fourth batch of 8
    return x, y


def two_device_mesh():
    """A 2x1 mesh (of the one CPU device twice): enough for the check made before placing."""
    device = jax.devices()[0]
    return Mesh(
        np.array([device, device]).reshape(2, 1),
        ("data", "model"),
        axis_types=(AxisType.Auto, AxisType.Auto),
    )


WEIGHT_999 = {"dtype": "F32", "shape": [8, 4], "data_offsets": [0, 999]}
EMPTY_HUGE = {"dtype": "F32", "shape": [0, 2**62, 2**62], "data_offsets": [0, 0]}
SHA_NPY = npy_bytes(np.array("0" * 64))


def fifo(name: str) -> str:
    os.mkfifo(name)
    return name


def npy_claiming(shape) -> bytes:
    """A .npy member whose header claims ``shape`` (uint8) over 10 bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    return header.getvalue() + bytes(10)


def interrupted_save():
    save_weights("model.safetensors", SMALL, small_params())
    before = Path("model.safetensors").read_bytes()

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "write", disk_full)
            save_weights("model.safetensors", SMALL, jax.tree.map(np.ones_like, small_params()))
    finally:
        assert Path("model.safetensors").read_bytes() == before  # the old file stands
        assert os.listdir() == ["model.safetensors"]  # no temporary file left


def saved_weights() -> str:
    save_weights("model.safetensors", SMALL, small_params())
    return "model.safetensors"


def saved_state() -> str:
    save_state("state.safetensors", {"params": small_params()})
    return "state.safetensors"


def damaged_weights() -> str:
    """A whole safetensors file whose last tensor byte was flipped after saving."""
    data = bytearray(Path(saved_weights()).read_bytes())
    data[-1] ^= 1
    return write("model.safetensors", bytes(data))


class _Unregistered(nn.Module):
    """Calls a layer it never registered."""

    def forward(self, scope, x):
        return nn.ReLU()(scope, x)


UNREGISTERED = _Unregistered()


def example_mse(params, batch):
    return {"mse": jnp.mean((SMALL.apply(params, batch[0]) - batch[1]) ** 2, axis=1)}


def batch_mse(params, batch):
    """A metric that wrongly returns the batch mean instead of one value per example."""
    return {"mse": F.mse_loss(SMALL.apply(params, batch[0]), batch[1])}


# Row id of docs/errors.md -> what triggers that row's error, run in an empty temporary
# working directory.
TRIGGERS = {
    # layers
    "linear-width": lambda: nn.Linear(784, 256).apply(
        nn.Linear(784, 256).init(KEY), jnp.zeros((512, 28, 28))
    ),
    "linear-rank": lambda: nn.Linear(3, 2).apply(nn.Linear(3, 2).init(KEY), jnp.float32(1.0)),
    "linear-dtype": lambda: nn.Linear(3, 2).apply(
        nn.Linear(3, 2).init(KEY), jnp.zeros((1, 3), jnp.complex64)
    ),
    "linear-size": lambda: nn.Linear(784, -256),
    "size-type": lambda: nn.Linear(784.0, 256),
    "linear-params": lambda: nn.Linear(4, 3).apply(
        {"weight": jnp.zeros((3, 5)), "bias": jnp.zeros(3)}, jnp.zeros((2, 4))
    ),
    "encoding-width": lambda: nn.PositionalEncoding(3, 10).apply({}, jnp.zeros((1024, 2))),
    "encoding-args": lambda: nn.PositionalEncoding(3, num_freqs=-1),
    "flatten-dims": lambda: nn.Flatten(2, 1).apply({}, jnp.zeros((2, 3, 4))),
    "sequential-child": lambda: nn.Sequential(nn.Linear(2, 2), F.relu),
    "sequential-position": lambda: SMALL.apply(small_params(), jnp.zeros((2, 5))),
    "params-shape": lambda: SMALL.apply(nn.MLP(4, [7], 2).init(KEY), jnp.zeros((2, 4))),
    "params-missing": lambda: SMALL.apply({}, jnp.zeros((2, 4))),
    "params-are-buffers": lambda: nn.BatchNorm1d(3).apply(
        nn.BatchNorm1d(3).init_buffers(), jnp.zeros((4, 3))
    ),
    "buffers-missing": lambda: nn.BatchNorm1d(3).apply(
        nn.BatchNorm1d(3).init(KEY), jnp.zeros((4, 3))
    ),
    "batchnorm-channels": lambda: nn.BatchNorm1d(6).apply(
        nn.BatchNorm1d(6).init(KEY), jnp.zeros((2, 8)), buffers=nn.BatchNorm1d(6).init_buffers()
    ),
    "batchnorm-one": lambda: nn.BatchNorm1d(3).apply(
        nn.BatchNorm1d(3).init(KEY), jnp.zeros((1, 3)), buffers=nn.BatchNorm1d(3).init_buffers()
    ),
    "dropout-key": lambda: nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).apply(
        nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).init(KEY), jnp.zeros((1, 2))
    ),
    "dropout-p": lambda: nn.Dropout(1.5),
    "training-flag": lambda: jax.jit(SMALL.apply)(small_params(), jnp.zeros((1, 4)), training=True),
    "layer-list": lambda: type(
        "Block", (nn.Module,), {"__init__": lambda self: setattr(self, "layers", [nn.ReLU()])}
    )(),
    "layer-unregistered": lambda: UNREGISTERED.apply({}, jnp.zeros((1, 2))),
    "layer-call": lambda: nn.ReLU()({}, jnp.zeros(2)),
    "conv-channels-last": lambda: nn.Conv2d(3, 8, 3).apply(
        nn.Conv2d(3, 8, 3).init(KEY), jnp.zeros((2, 32, 32, 3))
    ),
    "conv-groups": lambda: nn.Conv2d(3, 8, 3, groups=2),
    "conv-same-stride": lambda: nn.Conv2d(3, 8, 3, stride=2, padding="same"),
    "conv-padding": lambda: nn.Conv2d(3, 8, 3, padding_mode="mirror"),
    "conv-kernel": lambda: nn.Conv2d(1, 1, 5).apply(
        nn.Conv2d(1, 1, 5).init(KEY), jnp.zeros((1, 1, 3, 3))
    ),
    "mlp-args": lambda: nn.MLP(4, 8, 2),
    "immutable": lambda: setattr(nn.Linear(2, 2), "in_features", 3),
    # losses
    "loss-shape": lambda: F.mse_loss(jnp.zeros((4, 1)), jnp.zeros(4)),
    "loss-target-shape": lambda: F.cross_entropy(jnp.zeros((4, 10)), jnp.zeros((4, 1), int)),
    "loss-target-dtype": lambda: F.cross_entropy(jnp.zeros((4, 10)), jnp.zeros(4)),
    "loss-weight": lambda: F.cross_entropy(
        jnp.zeros((4, 10)), jnp.zeros(4, int), weight=jnp.ones(9)
    ),
    "labels-concrete": lambda: F.cross_entropy(jnp.zeros((3, 10)), jnp.array([0, 10, -1])),
    "labels-traced": lambda: jax.jit(F.cross_entropy)(jnp.zeros((3, 10)), jnp.array([0, 10, 2])),
    "one-hot": lambda: F.one_hot(jnp.array([3, 10]), 10),
    "one-hot-classes": lambda: F.one_hot(jnp.array([0, 1]), 0),
    "reduction": lambda: F.mse_loss(jnp.zeros(3), jnp.zeros(3), reduction="avg"),
    "label-smoothing": lambda: F.cross_entropy(
        jnp.zeros((2, 3)), jnp.array([0, 1]), label_smoothing=1.5
    ),
    "loss-layer-keyword": lambda: CrossEntropyLoss(size_average=True),
    # initialisers
    "nonlinearity": lambda: init.calculate_gain("swish"),
    "fan-mode": lambda: init.kaiming_uniform(KEY, (256, 784), mode="fan_avg"),
    "fan-shape": lambda: init.xavier_uniform(KEY, (10,)),
    # optimisers and schedules
    "lr-negative": lambda: optim.SGD(-0.1),
    "lr-type": lambda: optim.Adam("1e-3"),
    "betas": lambda: optim.Adam(betas=(0.9, 1.0)),
    "nesterov": lambda: optim.SGD(0.1, nesterov=True),
    "weight-decay": lambda: optim.AdamW(weight_decay=-0.01),
    "hyper-nan": lambda: optim.Adam(float("nan")),
    "hyper-type": lambda: optim.SGD(0.1, momentum="0.9"),
    "step-size": lambda: lr_scheduler.StepLR(0.1, step_size=0),
    "milestones": lambda: lr_scheduler.MultiStepLR(0.1, milestones=[30, 10]),
    "gamma": lambda: lr_scheduler.ExponentialLR(0.1, gamma=0.0),
    "anneal": lambda: lr_scheduler.OneCycleLR(0.1, 100, anneal_strategy="cosine"),
    "one-cycle-div": lambda: lr_scheduler.OneCycleLR(0.1, 100, div_factor=0),
    "schedules": lambda: lr_scheduler.SequentialLR(
        [lr_scheduler.StepLR(0.1, 10), lr_scheduler.ExponentialLR(0.1, 0.9)], milestones=[]
    ),
    "clip-max-norm": lambda: clip_grad_norm({"w": jnp.ones(3)}, max_norm=-1.0),
    "clip-non-finite": lambda: clip_grad_norm(
        {"w": jnp.array([1.0, jnp.nan])}, 1.0, error_if_nonfinite=True
    ),
    # state dicts
    "state-dict-missing": lambda: SMALL.load_state_dict(
        torch_names(small_params(), **{"2.bias": None})
    ),
    "state-dict-unexpected": lambda: SMALL.load_state_dict(
        torch_names(small_params(), **{"4.weight": np.zeros((2, 2))})
    ),
    "state-dict-shape": lambda: SMALL.load_state_dict(
        torch_names(small_params(), **{"0.weight": np.zeros((4, 8), np.float32)})
    ),
    "state-dict-dtype": lambda: SMALL.load_state_dict(
        torch_names(small_params(), **{"0.bias": np.zeros(8, np.float64)})
    ),
    "state-dict-no-match": lambda: SMALL.load_state_dict(
        {f"module.{k}": v for k, v in torch_names(small_params()).items()}, strict=False
    ),
    "state-dict-template": lambda: SMALL.load_state_dict(
        torch_names(small_params(), **{"2.bias": None}), strict=False
    ),
    # data files
    "idx-truncated": lambda: read_idx(
        write("train-labels-idx1-ubyte", idx_bytes(np.zeros(5, np.uint8))[:-2])
    ),
    "idx-magic": lambda: read_idx(write("train-labels-idx1-ubyte", b"PK\x03\x04" + bytes(8))),
    "idx-gzip": lambda: read_idx(
        write("train-labels-idx1-ubyte.gz", gzip.compress(idx_bytes(np.zeros(5, np.uint8)))[:-6])
    ),
    "csv-columns": lambda: read_csv(write("mnist_train.csv", b"3,0,0\n1,0,0\n")),
    "csv-value": lambda: read_csv(write("mnist_train.csv", mnist_csv({(1, 5): "256"}))),
    "csv-label": lambda: read_csv(write("mnist_train.csv", mnist_csv({(1, 0): "10"}))),
    "csv-empty": lambda: read_csv(write("mnist_train.csv", b"")),
    "csv-header-only": lambda: read_csv(write("mnist_train.csv", b"label,pixel0\n")),
    "cache-checksum": lambda: cache.read_arrays(tampered_cache(), ["train_images"]),
    "cache-pickle": lambda: cache.read_arrays(
        write(
            "mnist.npz",
            npz_bytes(
                {"train_images.npy": npy_bytes(np.array([{}], object)), "sha256.npy": SHA_NPY}
            ),
        ),
        ["train_images"],
    ),
    "cache-members": lambda: cache.read_arrays(
        write("mnist.npz", npz_bytes({"train_images.npy": b"", "extra.npy": b""})),
        ["train_images"],
    ),
    "cache-header": lambda: cache.read_arrays(
        write(
            "mnist.npz",
            npz_bytes({"train_labels.npy": npy_claiming((6 * 10**12,)), "sha256.npy": SHA_NPY}),
        ),
        ["train_labels"],
    ),
    "mnist-source": lambda: load_mnist(source="torchvision"),
    "normalize-twice": lambda: normalize(np.zeros((2, 28, 28), np.float32)),
    "batch-order-key": lambda: batch_order(None, 60000, 512),
    # checkpoints
    "ckpt-truncated": lambda: load_weights(
        write("model.safetensors", Path(saved_weights()).read_bytes()[:-1]), SMALL
    ),
    "ckpt-not-safetensors": lambda: load_weights(
        write("model.safetensors", pickle.dumps(small_params())), SMALL
    ),
    "ckpt-header": lambda: load_weights(
        write("model.safetensors", state_file(b"{not json}")), SMALL
    ),
    "ckpt-nested": lambda: load_weights(
        write("model.safetensors", state_file(b'{"a": ' + b"[" * 10**5 + b"]" * 10**5 + b"}")),
        SMALL,
    ),
    "ckpt-offsets": lambda: load_weights(
        write("model.safetensors", state_file({"0.weight": WEIGHT_999}, bytes(128))), SMALL
    ),
    "ckpt-shape": lambda: load_weights(
        write("model.safetensors", state_file({"e": EMPTY_HUGE}, b"")), SMALL
    ),
    "ckpt-not-regular": lambda: load_weights(fifo("model.safetensors"), SMALL),
    "ckpt-payload": lambda: load_weights(damaged_weights(), SMALL),
    "ckpt-template": lambda: load_weights(saved_weights(), nn.MLP(5, [8], 2)),
    "ckpt-kind": lambda: load_state(saved_weights(), {"params": small_params()}),
    "ckpt-state-template": lambda: load_state(saved_state(), {"params": {}}),
    "ckpt-missing": lambda: load_weights("missing.safetensors", SMALL),
    "ckpt-non-finite": lambda: save_weights(
        "model.safetensors",
        nn.Sequential(nn.Linear(2, 1, bias=False)),
        {"0": {"weight": np.array([[1.0, np.nan]], np.float32)}},
    ),
    "ckpt-dtype": lambda: save_weights(
        "model.safetensors",
        nn.Sequential(nn.Linear(2, 2, bias=False, dtype=jnp.complex128)),
        {"0": {"weight": jnp.ones((2, 2), jnp.complex128)}},
    ),
    "ckpt-interrupted": interrupted_save,
    "ckpt-no-folder": lambda: save_weights("nodir/model.safetensors", SMALL, small_params()),
    # training
    "nan-loss": lambda: fit_small(nan_data()),
    "nan-policy": lambda: train.train_step(lambda p, b: 0.0, nan_policy="x"),
    "fit-batch": lambda: fit_small((np.ones((32, 4)), np.ones((32, 2))), batch_size=64),
    "fit-args": lambda: train.fit(None, None, None, epochs=1.5, batch_size=8),
    "fit-eval": lambda: fit_small((np.ones((32, 4)), np.ones((32, 2))), metric_fn=batch_mse),
    "metric-shape": lambda: train.evaluate(
        batch_mse, small_params(), (np.ones((8, 4)), np.ones((8, 2))), batch_size=8
    ),
    "batch-devices": lambda: fit_small(
        (np.ones((32, 4)), np.ones((32, 2))), batch_size=9, mesh=two_device_mesh()
    ),
    "shard-axis": lambda: parallel.shard_batch(np.zeros((2, 3)), two_device_mesh(), axis=-5),
    "evaluate-empty": lambda: train.evaluate(
        batch_mse, small_params(), (np.ones((0, 4)), np.ones((0, 2)))
    ),
    "plateau-metric": lambda: fit_small(
        (np.ones((32, 4)), np.ones((32, 2))),
        metric_fn=example_mse,
        eval_data=(np.ones((8, 4)), np.ones((8, 2))),
        plateau_metric="mse",
    ),
}

NO_ERROR = "—"  # the error column of rows documenting a result, not an exception


def doc_rows() -> dict[str, tuple[str, str]]:
    """``{row id: (error type, message)}`` from the table of docs/errors.md."""
    rows = {}
    for line in ERRORS_DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) != 5 or not cells[0].startswith("`") or cells[0] == "`id`":
            continue
        row_id, error, message = cells[0].strip("`"), cells[3], cells[4]
        error = error.split()[0].strip("`")
        message = re.sub(r"^(``?)\s?(.*?)\s?\1$", r"\2", message)  # `m` or `` m ``
        rows[row_id] = (error, message)
    return rows


def test_errors_doc_has_a_row_per_trigger():
    assert sorted(doc_rows()) == sorted(TRIGGERS)


@pytest.mark.parametrize("row_id", TRIGGERS)
def test_errors_doc_row_is_the_real_error(row_id, tmp_path, monkeypatch):
    error, message = doc_rows()[row_id]
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the doc lists errors, not warnings
        try:
            result = TRIGGERS[row_id]()
        except Exception as exc:
            assert type(exc).__name__ == error, f"{row_id}: raised {type(exc).__name__}"
            actual = str(exc).splitlines()[0]
        else:
            assert error == NO_ERROR, f"{row_id}: nothing was raised"
            actual = "NaN" if np.isnan(result).all() else repr(result)
    if message.endswith("…"):  # the doc shows the start of a long message
        assert actual.startswith(message[:-1]), f"{row_id}: {actual!r}"
    elif message.startswith("…"):  # or its end
        assert actual.endswith(message[1:]), f"{row_id}: {actual!r}"
    else:
        assert actual == message, f"{row_id}: {actual!r}"
