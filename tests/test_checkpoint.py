"""jaxnet.checkpoint: torch interop, bit-exact round trips, corrupt files, atomic writes."""

import functools
import hashlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch
from flax.training.train_state import TrainState

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from jaxnet._safefile import unique_names
from jaxnet.checkpoint import CheckpointError, load_state, load_weights, save_state, save_weights
from jaxnet.nn import MLP, Linear, ReLU, Sequential

NET = MLP(8, [16], 4)


class KeyedState(TrainState):
    """flax's TrainState plus the PRNG key a training loop carries."""

    key: jax.Array


@pytest.fixture(scope="module")
def params():
    return NET.init(jax.random.key(0))


def torch_twin():
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def raw_bits(leaf):
    """(kind, weak type, PRNG impl, dtype, shape, bytes): equal tuples mean equal leaves."""
    kind, weak, impl = type(leaf).__name__, getattr(leaf, "weak_type", None), None
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        impl, leaf = str(jax.random.key_impl(leaf)), jax.random.key_data(leaf)
    array = np.asarray(leaf)
    return kind, weak, impl, array.dtype, array.shape, array.tobytes()


def assert_bit_identical(got, expected):
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        assert raw_bits(g) == raw_bits(e)


def listing(directory):
    return sorted(os.listdir(directory))


# --- weights: torch interop ------------------------------------------------------------


def test_jaxnet_weights_load_into_torch_twin(tmp_path, params, rng):
    path = tmp_path / "mlp.safetensors"
    save_weights(path, NET, params)
    model = torch_twin()
    model.load_state_dict(safetensors.torch.load_file(path), strict=True)
    for name, tensor in model.state_dict().items():
        layer, field = name.split(".")
        assert tensor.numpy().tobytes() == np.asarray(params[layer][field]).tobytes(), name
    x = rng.standard_normal((5, 8)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(NET.apply(params, x)),
        model(torch.from_numpy(x)).detach().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_torch_weights_load_into_jaxnet(tmp_path, params, rng):
    torch.manual_seed(0)
    model = torch_twin()
    path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(model.state_dict(), path)
    loaded = load_weights(path, NET).params
    for name, tensor in model.state_dict().items():
        layer, field = name.split(".")
        assert isinstance(loaded[layer][field], jax.Array)
        assert np.asarray(loaded[layer][field]).tobytes() == tensor.numpy().tobytes(), name
    x = rng.standard_normal((5, 8)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(NET.apply(loaded, x)),
        model(torch.from_numpy(x)).detach().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_tied_weights_carry_torch_alias_keys(tmp_path, rng):
    shared = Linear(4, 4)
    net = Sequential(Linear(3, 4), ReLU(), shared, ReLU(), shared)
    shapes = {"0": {"weight": (4, 3), "bias": (4,)}, "2": {"weight": (4, 4), "bias": (4,)}}
    params = jax.tree.map(
        lambda shape: rng.standard_normal(shape).astype(np.float32),
        shapes,
        is_leaf=lambda x: isinstance(x, tuple),
    )
    path = tmp_path / "tied.safetensors"
    save_weights(path, net, params)
    torch_shared = torch.nn.Linear(4, 4)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.ReLU(), torch_shared, torch.nn.ReLU(), torch_shared
    )
    model.load_state_dict(safetensors.torch.load_file(path), strict=True)
    assert model[4].weight.detach().numpy().tobytes() == np.asarray(params["2"]["weight"]).tobytes()
    assert_bit_identical(jax.tree.map(np.asarray, load_weights(path, net).params), params)


def test_tied_weights_saved_once_by_torch_save_model_load(tmp_path, rng):
    """safetensors.torch.save_model writes a shared tensor once; load_model reads that,
    and so does load_weights given the model."""
    shared = Linear(4, 4)
    net = Sequential(shared, ReLU(), shared)
    torch_shared = torch.nn.Linear(4, 4)
    model = torch.nn.Sequential(torch_shared, torch.nn.ReLU(), torch_shared)
    path = tmp_path / "tied.safetensors"
    safetensors.torch.save_model(model, str(path))
    assert len(safetensors.torch.load_file(path)) == 2  # the shared Linear, once
    twin = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    twin.append(twin[0])
    assert safetensors.torch.load_model(twin, str(path), strict=True) == (set(), [])
    loaded = load_weights(path, net).params
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(loaded["0"][name], getattr(torch_shared, name).detach())


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint32])
def test_weights_round_trip_bit_exact(tmp_path, dtype):
    info = np.finfo(dtype) if np.issubdtype(dtype, np.floating) else np.iinfo(dtype)
    values = np.array([info.min, info.max, 0, 1, 3], dtype)
    if np.issubdtype(dtype, np.floating):
        values[2], values[3] = -0.0, info.smallest_subnormal
    saved = {"0": {"weight": jnp.asarray(values.reshape(1, 5)), "bias": values[:1]}}
    model = Sequential(Linear(5, 1, dtype=dtype))
    path = tmp_path / "w.safetensors"
    save_weights(path, model, saved)
    loaded = load_weights(path, model).params
    for field in ("weight", "bias"):
        assert np.asarray(loaded["0"][field]).dtype == dtype
        assert np.asarray(loaded["0"][field]).tobytes() == np.asarray(saved["0"][field]).tobytes()


# --- training state: round trips -------------------------------------------------------


@pytest.mark.parametrize(
    "tx",
    [optax.sgd(0.1, momentum=0.9), optax.adam(1e-2)],
    ids=["sgd-momentum", "adam"],
)
def test_train_state_round_trip_and_resume(tmp_path, params, tx, rng):
    x = jnp.asarray(rng.standard_normal((6, 8)), jnp.float32)
    grad = jax.grad(lambda p: jnp.sum(NET.apply(p, x) ** 2))
    train_step = jax.jit(lambda state: state.apply_gradients(grads=grad(state.params)))
    state = KeyedState.create(apply_fn=NET.apply, params=params, tx=tx, key=jax.random.key(1))
    state = train_step(train_step(state))
    path = tmp_path / "state.safetensors"
    save_state(path, state)
    # A template with other values: everything in the result must come from the file.
    like = train_step(
        KeyedState.create(
            apply_fn=NET.apply, params=NET.init(jax.random.key(9)), tx=tx, key=jax.random.key(9)
        )
    )
    restored = load_state(path, like)
    assert int(restored.step) == 2 and restored.step.weak_type  # as jit returns it
    assert_bit_identical(restored, state)
    # Resuming from the restored state continues exactly as the original would.
    assert_bit_identical(train_step(restored), train_step(state))


def mixed_state(seed):
    """A state with every supported kind of leaf, values depending on ``seed``."""
    # float32 bits: a NaN with payload, -0.0, inf, the smallest subnormal.
    special = np.array([0x7FC00001 + seed, 0x80000000, 0x7F800000, 1], np.uint32).view(np.float32)
    return {
        "params": {"0": {"weight": jnp.full((2, 3), seed, jnp.float64)}},
        "opt": (optax.EmptyState(), None, (), {"f32": jnp.asarray(special)}),
        "f64": np.linspace(0, 1 + seed, 4, dtype=np.float64),
        "i32": jnp.arange(3, dtype=jnp.int32) - seed,
        "u32": np.array([seed, 2**32 - 1], np.uint32),
        "raw_key": jax.random.PRNGKey(seed),
        "typed_key": jax.random.key(seed),
        "rbg_key": jax.random.key(seed, impl="rbg"),
        "key_batch": jax.random.split(jax.random.key(seed + 1), 3),
        "step": 7 + seed,
        "lr": 0.1 + seed,
        "flag": seed == 0,
        "scalar": np.float32(2.5 + seed),
    }


def test_state_round_trip_all_leaf_kinds(tmp_path):
    path = tmp_path / "state.safetensors"
    saved = mixed_state(0)
    save_state(path, saved)
    restored = load_state(path, like=mixed_state(1))
    assert_bit_identical(restored, saved)
    assert restored["opt"][:3] == (optax.EmptyState(), None, ())
    assert jax.dtypes.issubdtype(restored["typed_key"].dtype, jax.dtypes.prng_key)
    assert restored["raw_key"].dtype == jnp.uint32
    assert type(restored["f64"]) is np.ndarray and type(restored["scalar"]) is np.float32
    assert type(restored["flag"]) is bool and type(restored["lr"]) is float
    # Typed keys still draw the same numbers.
    np.testing.assert_array_equal(
        jax.random.uniform(restored["rbg_key"], (3,)), jax.random.uniform(saved["rbg_key"], (3,))
    )


def test_state_file_is_plain_safetensors(tmp_path):
    path = tmp_path / "state.safetensors"
    save_state(path, mixed_state(0))
    with safetensors.safe_open(path, framework="np") as f:
        metadata, names = f.metadata(), set(f.keys())
        key_data = f.get_tensor("['key_batch']")
    assert names == {
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(mixed_state(0))
    }
    assert metadata["format"] == "jaxnet.train_state" and metadata["version"] == "1"
    assert json.loads(metadata["prng_keys"]) == {
        "['key_batch']": "threefry2x32",
        "['rbg_key']": "rbg",
        "['typed_key']": "threefry2x32",
    }
    np.testing.assert_array_equal(key_data, jax.random.key_data(mixed_state(0)["key_batch"]))


# --- template mismatches ----------------------------------------------------------------


def test_load_state_lists_every_mismatch(tmp_path):
    path = tmp_path / "state.safetensors"
    save_state(path, mixed_state(0))
    like = mixed_state(0)
    del like["lr"]  # in the file, not in the template
    like["extra"] = np.zeros(2, np.float32)  # in the template, not in the file
    like["f64"] = np.zeros(5, np.float64)  # shape
    like["i32"] = jnp.zeros(3, jnp.int64)  # dtype
    like["typed_key"] = jax.random.PRNGKey(0)  # raw key where the file has a typed one
    like["rbg_key"] = jax.random.key(0)  # another implementation
    with pytest.raises(
        CheckpointError, match=r"does not match the template \(7 problems\)"
    ) as info:
        load_state(path, like)
    message = str(info.value)
    for expected in (
        "unexpected key \"['lr']\"",
        "missing key \"['extra']\"",
        "\"['f64']\": expected float64[5], got float64[4]",
        "\"['i32']\": expected int64[3], got int32[3]",
        "\"['typed_key']\": expected a plain array, got a typed PRNG key (threefry2x32)",
        "\"['rbg_key']\": expected uint32[2], got uint32[4]",
        "expected a typed PRNG key (threefry2x32), got a typed PRNG key (rbg)",
    ):
        assert expected in message


def test_load_weights_lists_every_mismatch(tmp_path, params):
    path = tmp_path / "w.safetensors"
    save_weights(path, NET, params)
    other = Sequential(Linear(8, 32, bias=False), ReLU(), Linear(32, 4, bias=False))
    with pytest.raises(
        CheckpointError, match=r"load_weights: .* does not match the template"
    ) as info:
        load_weights(path, other)
    for expected in (
        "'0.weight': expected float32[32, 8], got float32[16, 8]",
        "'2.weight': expected float32[4, 32], got float32[4, 16]",
        "unexpected key '0.bias'",
        "unexpected key '2.bias'",
    ):
        assert expected in str(info.value)


# --- truncated and corrupt files --------------------------------------------------------


TINY = Sequential(Linear(3, 2))


def tiny_params():
    return {
        "0": {
            "weight": jnp.arange(6, dtype=jnp.float32).reshape(2, 3),
            "bias": jnp.ones(2, jnp.float32),
        }
    }


def test_every_truncated_weights_file_is_rejected(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, TINY, tiny_params())
    data = path.read_bytes()
    for length in reversed(range(len(data))):  # every prefix, longest first
        os.truncate(path, length)
        with pytest.raises(CheckpointError, match="load_weights: "):
            load_weights(path, TINY).params
    path.write_bytes(data)
    assert_bit_identical(load_weights(path, TINY).params, tiny_params())


def test_every_truncated_state_file_is_rejected(tmp_path):
    params = {"0": {"weight": np.ones((2, 2), np.float32), "bias": np.ones(2, np.float32)}}
    state = {"params": params, "opt": optax.adam(1e-3).init(params), "key": jax.random.key(0)}
    path = tmp_path / "state.safetensors"
    save_state(path, state)
    data = path.read_bytes()
    for length in reversed(range(len(data))):  # every prefix, longest first
        os.truncate(path, length)
        with pytest.raises(CheckpointError, match="load_state: "):
            load_state(path, like=state)
    path.write_bytes(data)
    assert_bit_identical(load_state(path, like=state), state)


def build_file(header, body=b""):
    """A safetensors file from a header (dict, or raw bytes) and a data section."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


BODY = np.arange(6, dtype=np.float32).tobytes() + np.ones(2, np.float32).tobytes()
WEIGHT = {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
BIAS = {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]}


def edited(**entries):
    return build_file({"0.weight": WEIGHT, "0.bias": BIAS, **entries}, BODY)


CORRUPT_FILES = {
    "empty": (b"", "header too small"),
    "header length past the end": (struct.pack("<Q", 10_000) + b"{}", "invalid header length"),
    "header length 2**63": (struct.pack("<Q", 2**63) + b"{}", "header too large"),
    "header not JSON": (build_file(b"{not json}", BODY), "invalid JSON"),
    "header not UTF-8": (build_file(b'{"\xff": 1}'), "invalid UTF-8 in header"),
    "header a JSON list": (build_file([1, 2]), "expected a JSON object, got \\[1, 2\\]"),
    "offsets out of range": (
        edited(**{"0.bias": {**BIAS, "data_offsets": [24, 999]}}),
        r"'0.bias': F32\[2\] needs 8 bytes, its data_offsets \[24, 999\] span 975",
    ),
    "overlapping offsets": (
        edited(**{"0.bias": {**BIAS, "data_offsets": [16, 24]}}),
        "invalid offset",
    ),
    "gap between tensors": (
        build_file(
            {"0.weight": WEIGHT, "0.bias": {**BIAS, "data_offsets": [28, 36]}}, BODY + bytes(4)
        ),
        "invalid offset for tensor `0.bias`",
    ),
    "unknown dtype": (edited(**{"0.bias": {**BIAS, "dtype": "Q99"}}), "unknown dtype 'Q99'"),
    "dtype jaxnet lacks": (
        edited(**{"0.weight": {**WEIGHT, "dtype": "F8_E8M0", "shape": [2, 12]}}),
        "unknown dtype 'F8_E8M0'",
    ),
    "shape disagrees with byte count": (
        edited(**{"0.weight": {**WEIGHT, "shape": [3, 3]}}),
        r"F32\[3, 3\] needs 36 bytes",
    ),
    "negative dimension": (
        edited(**{"0.weight": {**WEIGHT, "shape": [-2, -3]}}),
        "shape must be a list of non-negative integers",
    ),
    "zero-element tensor too large for NumPy": (
        edited(**{"e": {"dtype": "F32", "shape": [0, 2**62, 2**62], "data_offsets": [32, 32]}}),
        r"tensor 'e': shape \[0, 4611686018427387904, 4611686018427387904\] is too large",
    ),
    "more dimensions than NumPy allows": (
        edited(**{"e": {"dtype": "F32", "shape": [0] * 65, "data_offsets": [32, 32]}}),
        "is too large for an array",
    ),
    "extra field in a tensor entry": (
        edited(**{"0.bias": {**BIAS, "offsets": [0, 8]}}),
        "expected an object with exactly dtype, shape and data_offsets",
    ),
    "header nested too deeply": (
        build_file(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        "invalid JSON in header: nested too deeply",
    ),
    "trailing bytes": (edited() + bytes(8), "file not fully covered"),
    "name repeated": (
        build_file(
            b'{"0.weight": %s, "0.bias": %s, "0.bias": %s}'
            % tuple(json.dumps(e).encode() for e in (WEIGHT, BIAS, BIAS)),
            BODY,
        ),
        r"\['0.bias'\] appear more than once",
    ),
    "metadata value not a string": (
        edited(__metadata__={"format": 1}),
        "expected a map of strings to strings",
    ),
    "pickle renamed": (pickle.dumps({"0.weight": np.zeros((2, 3))}), "not a valid safetensors"),
}


@pytest.mark.parametrize("case", CORRUPT_FILES, ids=list(CORRUPT_FILES))
def test_corrupt_file_is_rejected(tmp_path, case):
    data, reason = CORRUPT_FILES[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=reason):
        load_weights(path, TINY).params


def test_crafted_body_is_valid():
    """The corrupt cases above are edits of this file, which loads."""
    loaded = safetensors.numpy.load(edited())
    np.testing.assert_array_equal(loaded["0.weight"], np.arange(6, dtype=np.float32).reshape(2, 3))


def payload_start(data):
    """Offset of the tensor bytes: after the 8-byte length and the JSON header."""
    return 8 + struct.unpack("<Q", data[:8])[0]


def saved_file(tmp_path, kind):
    """A small weights or state file and the loader (with its template) that reads it."""
    path = tmp_path / f"{kind}.safetensors"
    if kind == "weights":
        save_weights(path, TINY, tiny_params())
        return path, lambda: load_weights(path, TINY)
    state = {"params": tiny_params(), "opt": optax.adam(1e-3).init(tiny_params()), "step": 3}
    save_state(path, state)
    return path, lambda: load_state(path, like=state)


@pytest.mark.parametrize("kind", ["weights", "state"])
def test_stored_digest_is_sha256_of_the_tensors(tmp_path, kind):
    """The recorded digest, recomputed with hashlib over the tensors in name order."""
    path, _ = saved_file(tmp_path, kind)
    digest = hashlib.sha256()
    for name, array in sorted(safetensors.numpy.load_file(path).items()):
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode() + array.tobytes())
    with safetensors.safe_open(path, framework="np") as f:
        assert f.metadata()["tensors_sha256"] == digest.hexdigest()


@pytest.mark.parametrize("kind", ["weights", "state"])
def test_damaged_tensor_bytes_are_rejected(tmp_path, kind):
    path, load = saved_file(tmp_path, kind)
    data = path.read_bytes()
    damaged = {  # offset of the first changed byte -> file
        len(data) - 4: data[:-4] + struct.pack("<f", np.nan),  # a NaN over the last float
        **{
            i: data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]  # every single bit flip
            for i in range(payload_start(data), len(data))
        },
    }
    for offset, bad in damaged.items():
        path.write_bytes(bad)
        with pytest.raises(CheckpointError, match="is corrupt: its tensors have SHA-256") as info:
            load()
        assert repr(str(path)) in str(info.value), offset
    path.write_bytes(data)
    load()


def test_torch_save_zip_is_rejected(tmp_path, params):
    path = tmp_path / "model.safetensors"
    torch.save(torch_twin().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_weights(path, NET)


def test_unreadable_paths_are_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="cannot be read: No such file"):
        load_weights(tmp_path / "absent.safetensors", TINY)
    with pytest.raises(CheckpointError, match=r"load_state: .* cannot be read: not a regular"):
        load_state(tmp_path, like={})


def test_wrong_kind_of_file_is_rejected(tmp_path):
    weights, state = tmp_path / "w.safetensors", tmp_path / "s.safetensors"
    save_weights(weights, TINY, tiny_params())
    save_state(state, {"params": tiny_params()})
    with pytest.raises(CheckpointError, match="got format 'pt' version None"):
        load_state(weights, like={"params": tiny_params()})
    with pytest.raises(CheckpointError, match="training state written by save_state"):
        load_weights(state, TINY)


def state_file_with_metadata(metadata):
    tensors = {"['w']": np.zeros(2, np.float32)}
    return safetensors.numpy.save(tensors, metadata={"format": "jaxnet.train_state", **metadata})


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({"version": "99"}, "expected format 'jaxnet.train_state' version '1'.*version '99'"),
        ({"version": "1", "prng_keys": "{oops"}, "corrupt 'prng_keys' metadata"),
        ({"version": "1", "prng_keys": '{"[\'k\']": "rbg"}'}, "corrupt 'prng_keys' metadata"),
        ({"version": "1", "prng_keys": "{\"['w']\": 3}"}, "corrupt 'prng_keys' metadata"),
    ],
    ids=["future version", "not JSON", "names an absent tensor", "impl not a string"],
)
def test_bad_state_metadata_is_rejected(tmp_path, metadata, reason):
    path = tmp_path / "s.safetensors"
    path.write_bytes(state_file_with_metadata(metadata))
    with pytest.raises(CheckpointError, match=reason):
        load_state(path, like={"w": np.zeros(2, np.float32)})


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


# --- refusing to write ------------------------------------------------------------------


def test_save_weights_refuses_non_finite_and_keeps_previous(tmp_path, params):
    path = tmp_path / "w.safetensors"
    save_weights(path, NET, params)
    before = path.read_bytes()
    bad = jax.tree.map(lambda a: a, params)
    bad["0"]["weight"] = bad["0"]["weight"].at[3, 1].set(jnp.nan)
    bad["2"]["bias"] = bad["2"]["bias"].at[0].set(-jnp.inf)
    with pytest.raises(ValueError, match=r"save_weights: .*non-finite.* in 0\.weight, 2\.bias;"):
        save_weights(path, NET, bad)
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["w.safetensors"]


def test_save_state_refuses_non_finite_params_only(tmp_path):
    path = tmp_path / "s.safetensors"
    state = KeyedState.create(
        apply_fn=NET.apply, params=tiny_params(), tx=optax.sgd(0.1), key=jax.random.key(0)
    )
    save_state(path, state)
    before = path.read_bytes()
    bad = state.replace(
        params={"0": {**tiny_params()["0"], "bias": jnp.array([0.0, jnp.nan], jnp.float32)}}
    )
    with pytest.raises(
        ValueError, match=r"save_state: .*non-finite.* in \.params\['0'\]\['bias'\];"
    ):
        save_state(path, bad)
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["s.safetensors"]
    # Outside the params inf is legitimate (a best loss starting at inf) and round-trips.
    with_inf = {"params": tiny_params(), "best_loss": np.inf}
    save_state(path, with_inf)
    assert_bit_identical(
        load_state(path, like={"params": tiny_params(), "best_loss": 0.0}), with_inf
    )
    # A state without a params field is checked whole.
    with pytest.raises(ValueError, match=r"non-finite.* in \['best_loss'\]"):
        save_state(path, {"best_loss": np.inf})


def test_unstorable_leaves_are_refused(tmp_path):
    path = tmp_path / "s.safetensors"
    with pytest.raises(TypeError, match=r"save_state: \"\['name'\]\" has dtype <U3"):
        save_state(path, {"params": tiny_params(), "name": "abc"})
    c128 = {"0": {"weight": jnp.ones((2, 2), jnp.complex128)}}
    with pytest.raises(TypeError, match=r"save_weights: '0\.weight' has dtype complex128.*cast it"):
        save_weights(path, Sequential(Linear(2, 2, bias=False, dtype=jnp.complex128)), c128)
    assert listing(tmp_path) == []


# --- atomic writes ----------------------------------------------------------------------


@pytest.mark.parametrize("save", [save_weights, save_state])
def test_save_into_missing_folder_names_the_target(tmp_path, save):
    path = tmp_path / "nodir" / "x.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        save(path, TINY, tiny_params()) if save is save_weights else save(path, tiny_params())
    message = str(info.value)
    assert f"{save.__name__}: cannot write {str(path)!r}" in message
    assert f"the folder {str(tmp_path / 'nodir')!r} does not exist" in message
    assert ".tmp" not in message
    assert listing(tmp_path) == []


def fail_os_call(monkeypatch, name):
    """Make ``os.<name>`` raise; ``write`` first writes half its buffer (a disk filling up)."""
    real_write = os.write
    calls = []

    def failing(*args):
        calls.append(name)
        if name == "write" and len(calls) == 1:
            fd, data = args
            return real_write(fd, data[: len(data) // 2])
        raise OSError(28, f"injected failure in os.{name}")

    monkeypatch.setattr(os, name, failing)
    return calls


@pytest.mark.parametrize("name", ["write", "fsync", "replace"])
@pytest.mark.parametrize("kind", ["weights", "state"])
def test_failed_save_keeps_previous_file(tmp_path, monkeypatch, params, name, kind):
    save = (lambda p, tree: save_weights(p, NET, tree)) if kind == "weights" else save_state
    path = tmp_path / "ckpt.safetensors"
    save(path, params)
    before = path.read_bytes()
    newer = NET.init(jax.random.key(7))
    calls = fail_os_call(monkeypatch, name)
    with pytest.raises(OSError, match=f"injected failure in os.{name}"):
        save(path, newer)
    monkeypatch.undo()
    assert calls, "the failure was not reached"
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["ckpt.safetensors"]


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch, params):
    fail_os_call(monkeypatch, "write")
    with pytest.raises(OSError, match="injected failure"):
        save_weights(tmp_path / "w.safetensors", NET, params)
    monkeypatch.undo()
    assert listing(tmp_path) == []


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from jaxnet.checkpoint import save_weights
    from jaxnet.nn import Linear, Sequential

    real_write = os.write

    def stalled_write(fd, data):  # write half, report, then hang until killed
        written = real_write(fd, data[: len(data) // 2])
        print("half-written", flush=True)
        time.sleep(60)
        return written

    os.write = stalled_write
    model = Sequential(Linear(1024, 512, bias=False))
    save_weights(sys.argv[1], model, {"0": {"weight": np.full((512, 1024), 2.0, np.float32)}})
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_mid_write_keeps_previous_file(tmp_path):
    path = tmp_path / "w.safetensors"
    old = {"0": {"weight": np.ones((512, 1024), np.float32)}}
    big = Sequential(Linear(1024, 512, bias=False))
    save_weights(path, big, old)
    before = path.read_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        assert line == "half-written\n", child.stderr.read()
        (stray,) = [name for name in listing(tmp_path) if name != "w.safetensors"]
        assert 0 < (tmp_path / stray).stat().st_size < len(before)  # really mid-write
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    loaded = load_weights(path, big).params
    assert np.asarray(loaded["0"]["weight"]).tobytes() == old["0"]["weight"].tobytes()
    # A killed process cannot clean up: its partial file stays hidden beside the target
    # until the next successful save of that target removes it.
    assert stray.startswith(".w.safetensors.") and stray.endswith(".tmp")
    assert listing(tmp_path) == sorted([stray, "w.safetensors"])
    newer = {"0": {"weight": np.full((512, 1024), 3.0, np.float32)}}
    save_weights(path, big, newer)
    assert listing(tmp_path) == ["w.safetensors"]
    loaded = load_weights(path, big).params
    assert np.asarray(loaded["0"]["weight"]).tobytes() == newer["0"]["weight"].tobytes()


def test_equal_checkpoints_are_equal_bytes(tmp_path, params):
    """The header is sorted: safetensors alone writes its metadata in hash order."""
    state = {"params": params, "step": np.int32(3), "key": jax.random.key(0)}
    for save in (functools.partial(save_weights, model=NET, params=params), save_state):
        data = set()
        for i in range(8):
            path = tmp_path / f"{i}.safetensors"
            save(path) if save is not save_state else save(path, state)
            data.add((tmp_path / f"{i}.safetensors").read_bytes())
        assert len(data) == 1


# --- untrusted files: refused fast, in small memory, with CheckpointError ----------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.parametrize("load", [load_weights, load_state])
def test_a_fifo_is_refused_without_blocking(tmp_path, load):
    fifo = tmp_path / "ckpt.safetensors"
    os.mkfifo(fifo)
    outcome = []

    def attempt():
        try:
            load(fifo, TINY) if load is load_weights else load(fifo, tiny_params())
        except Exception as error:  # the outcome is checked below
            outcome.append(error)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():  # a blocked open: give it a writer and an end of file
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=20)
        pytest.fail(f"{load.__name__} blocked on a FIFO")
    (error,) = outcome
    assert isinstance(error, CheckpointError)
    assert str(error).endswith("cannot be read: not a regular file (a FIFO)")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused_before_reading():
    with pytest.raises(CheckpointError, match=r"cannot be read: not a regular file \(a character"):
        load_weights("/dev/zero", TINY)


def sparse_file(path, header, data_bytes):
    """A safetensors file whose data section is a hole: it occupies no disk."""
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + data_bytes)


GIB2 = 2 * 1024**3
# Each reads a file whose template is one float32 [2, 3] weight named "0.weight".
LOADERS = {
    "weights": lambda path: load_weights(path, Sequential(Linear(3, 2, bias=False))),
    "state": lambda path: load_state(path, {"0": {"weight": np.zeros((2, 3), np.float32)}}),
}


@pytest.mark.parametrize("kind", ["weights", "state"])
def test_a_huge_unexpected_tensor_is_refused_without_reading_it(tmp_path, kind):
    """2 GiB of data for a tensor the template does not have: no byte of it is read."""
    name = "0.weight" if kind == "weights" else "['0']['weight']"
    small = {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    huge = {"dtype": "U8", "shape": [GIB2], "data_offsets": [24, 24 + GIB2]}
    metadata = {"format": "jaxnet.train_state", "version": "1", "prng_keys": "{}"}
    path = tmp_path / "huge.safetensors"
    header = {name: small, "huge": huge}
    sparse_file(
        path, {**header, "__metadata__": metadata} if kind == "state" else header, 24 + GIB2
    )
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"unexpected key .*huge"):
            LOADERS[kind](path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"refusing the file allocated {peak} bytes"


@pytest.mark.parametrize("kind", ["weights", "state"])
def test_a_mis_shaped_huge_tensor_is_refused_without_reading_it(tmp_path, kind):
    name = "0.weight" if kind == "weights" else "['0']['weight']"
    huge = {"dtype": "F32", "shape": [GIB2 // 4], "data_offsets": [0, GIB2]}
    metadata = {"format": "jaxnet.train_state", "version": "1", "prng_keys": "{}"}
    path = tmp_path / "huge.safetensors"
    header = {name: huge}
    sparse_file(path, {**header, "__metadata__": metadata} if kind == "state" else header, GIB2)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"expected float32\[2, 3\], got float32\[536"):
            LOADERS[kind](path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"refusing the file allocated {peak} bytes"


def test_deeply_nested_prng_keys_metadata_is_refused(tmp_path):
    path = tmp_path / "state.safetensors"
    save_state(path, {"w": np.ones(2, np.float32)})
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"]["prng_keys"] = "[" * 100_000 + "]" * 100_000
    path.write_bytes(build_file(header, data[8 + length :]))
    with pytest.raises(CheckpointError, match="corrupt 'prng_keys' metadata"):
        load_state(path, {"w": np.ones(2, np.float32)})


class CountingName(str):
    """A name that counts how often it is compared for equality."""

    comparisons = 0

    def __eq__(self, other):
        CountingName.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_repeated_name_check_is_linear():
    """Names are compared O(n) times, not O(n^2) (a 5.8 MB header once took 140 s)."""
    pairs = [(CountingName(f"t{i}"), i) for i in range(2000)]
    CountingName.comparisons = 0
    assert len(unique_names(pairs)) == 2000
    repeated = [*pairs, (CountingName("t7"), 0)]
    with pytest.raises(ValueError, match=r"\['t7'\] appear more than once"):
        unique_names(repeated)
    assert CountingName.comparisons <= 4 * len(repeated)


def test_a_large_header_with_a_repeated_name_is_refused(tmp_path):
    entries = b",".join(
        b'"t%d":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}' % i for i in range(100_000)
    )
    path = tmp_path / "big.safetensors"
    path.write_bytes(build_file(b"{" + entries + b',"t5":{}}'))
    assert 5_000_000 < path.stat().st_size < 7_000_000
    with pytest.raises(CheckpointError, match=r"ambiguous header: \['t5'\] appear more than once"):
        load_weights(path, TINY)


# --- reduced precision ------------------------------------------------------------------

TORCH_FLOATS = {
    "bfloat16": (torch.bfloat16, jnp.bfloat16),
    "float16": (torch.float16, jnp.float16),
    "float8_e4m3fn": (torch.float8_e4m3fn, jnp.float8_e4m3fn),
    "float8_e5m2": (torch.float8_e5m2, jnp.float8_e5m2),
}
TORCH_BITS = {1: torch.uint8, 2: torch.int16}


def torch_bits(tensor):
    """The raw bytes of a torch tensor, whatever its dtype."""
    bits = tensor.contiguous().view(TORCH_BITS[tensor.element_size()])
    return bits.numpy().tobytes()


@pytest.mark.parametrize("dtype", list(TORCH_FLOATS))
def test_reduced_precision_torch_weights_load_and_export_bit_exactly(tmp_path, dtype):
    torch_dtype, jax_dtype = TORCH_FLOATS[dtype]
    torch.manual_seed(0)
    twin = torch_twin().to(torch_dtype)
    path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(twin.state_dict(), path)
    model = Sequential(Linear(8, 16, dtype=jax_dtype), ReLU(), Linear(16, 4, dtype=jax_dtype))
    loaded = load_weights(path, model).params
    for name, tensor in twin.state_dict().items():
        layer, field = name.split(".")
        assert loaded[layer][field].dtype == jax_dtype
        assert np.asarray(loaded[layer][field]).tobytes() == torch_bits(tensor), name

    back = tmp_path / "jaxnet.safetensors"
    save_weights(back, model, loaded)
    exported = safetensors.torch.load_file(back)
    assert set(exported) == set(twin.state_dict())
    for name, tensor in twin.state_dict().items():
        assert exported[name].dtype == torch_dtype
        assert torch_bits(exported[name]) == torch_bits(tensor), name


def test_reduced_precision_state_round_trips_bit_exactly(tmp_path):
    values = np.array([1.0, -0.0, 65504.0, 6e-8, 3.0e38], np.float32)
    state = {
        "params": {
            "w16": jnp.asarray(values[:4], jnp.float16),
            "wbf": jnp.asarray(values, jnp.bfloat16),
        },
        "step": jnp.asarray(3),
    }
    path = tmp_path / "state.safetensors"
    save_state(path, state)
    assert_bit_identical(load_state(path, like=state), state)


def test_non_finite_reduced_precision_params_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"non-finite .* in 0\.weight"):
        save_weights(
            tmp_path / "w.safetensors",
            Sequential(Linear(1, 2, bias=False, dtype=jnp.bfloat16)),
            {"0": {"weight": jnp.full((2, 1), jnp.inf, jnp.bfloat16)}},
        )
    assert listing(tmp_path) == []


# --- temporary files of killed saves ----------------------------------------------------


def stale(directory, name):
    (directory / name).write_bytes(b"partial")
    return name


@pytest.mark.skipif(fcntl is None, reason="POSIX file locks")
def test_next_save_removes_stale_temporaries_of_its_target_only(tmp_path):
    path = tmp_path / "w.safetensors"
    ours = [
        stale(tmp_path, f".w.safetensors.{suffix}.tmp")
        for suffix in ("0123456789ab", "ffffffffffff")
    ]
    others = [
        stale(tmp_path, name)
        for name in (
            ".w.safetensors.tmp",  # no random part
            ".w.safetensors.0123456789AB.tmp",  # not jaxnet's lower-case hex
            ".w.safetensors.0123456789a.tmp",  # 11 digits
            ".w.safetensors.0123456789ab.tmp.keep",
            "w.safetensors.0123456789ab.tmp",  # not hidden
            ".x.safetensors.0123456789ab.tmp",  # another target's
            ".w.safetensors.x.0123456789ab.tmp",
        )
    ]
    empty_fresh = ".w.safetensors.aaaaaaaaaaaa.tmp"  # its writer may not have locked it yet
    (tmp_path / empty_fresh).write_bytes(b"")
    empty_old = ".w.safetensors.bbbbbbbbbbbb.tmp"
    (tmp_path / empty_old).write_bytes(b"")
    os.utime(tmp_path / empty_old, (0, 0))
    held = stale(tmp_path, ".w.safetensors.cccccccccccc.tmp")  # a live writer's
    with open(tmp_path / held, "rb") as live:
        fcntl.flock(live, fcntl.LOCK_EX)
        save_weights(path, TINY, tiny_params())
    assert listing(tmp_path) == sorted([*others, empty_fresh, held, "w.safetensors"])
    assert not set(ours) & set(listing(tmp_path))
    assert_bit_identical(load_weights(path, TINY).params, tiny_params())
