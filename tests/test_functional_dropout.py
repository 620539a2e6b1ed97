"""jaxnet.nn.functional.dropout / dropout1d / dropout2d against torch.nn.functional.

torch's masks come from its global generator, so the comparisons inject them: under one
seed, ``torch_dropout(torch.ones(shape), p) != 0`` is the keep-mask that torch applies to
any input of that shape and dtype. With that mask jaxnet's value and input gradient equal
torch's bit for bit, in float32 and float64. Masks drawn from a PRNG key are checked for
their statistics, their channel structure and their determinism.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from test_functional import assert_matches_torch

import jaxnet.nn.functional as F

EXACT = {"rtol": 0, "atol": 0}
# name: (jaxnet function, torch function, input shape, keep-mask shape)
KINDS = {
    "dropout": (F.dropout, TF.dropout, (6, 5, 4), (6, 5, 4)),
    "dropout1d": (F.dropout1d, TF.dropout1d, (6, 5, 4), (6, 5, 1)),
    "dropout1d-unbatched": (F.dropout1d, TF.dropout1d, (12, 4), (12, 1)),
    "dropout2d": (F.dropout2d, TF.dropout2d, (3, 5, 4, 2), (3, 5, 1, 1)),
}


def torch_keep_mask(torch_fn, shape, dtype, p, seed):
    """The keep-mask torch applies under ``seed`` to inputs of ``shape`` and ``dtype``."""
    torch.manual_seed(seed)
    ones = torch.ones(shape, dtype=getattr(torch, np.dtype(dtype).name))
    return (torch_fn(ones, p) != 0).numpy()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_injected_torch_mask_gives_torchs_values_and_gradients_exactly(kind, p, dtype):
    jax_fn, torch_fn, shape, mask_shape = KINDS[kind]
    x = np.random.default_rng(0).normal(size=shape).astype(dtype)
    keep = torch_keep_mask(torch_fn, shape, dtype, p, seed=7)
    keep = keep[tuple(slice(0, n) for n in mask_shape)]  # one entry per element or channel
    assert keep.shape == mask_shape and 0 < keep.mean() < 1

    def torch_under_seed(xt):
        torch.manual_seed(7)
        return torch_fn(xt, p)

    case = (lambda x: jax_fn(x, p, mask=jnp.asarray(keep)), torch_under_seed, x)
    assert_matches_torch({kind: case}, EXACT)


@pytest.mark.parametrize("kind", KINDS)
def test_key_mask_has_the_torch_structure_and_scaling(kind):
    jax_fn, _, shape, mask_shape = KINDS[kind]
    p = 0.4
    x = np.random.default_rng(1).uniform(1.0, 2.0, size=shape).astype(np.float32)
    y = np.asarray(jax_fn(x, p, key=jax.random.key(0)))
    kept = y != 0
    # Whole channels are kept or dropped: the mask is constant over the broadcast dims.
    reduced_axes = tuple(i for i, n in enumerate(mask_shape) if n == 1 and shape[i] > 1)
    np.testing.assert_array_equal(kept.all(reduced_axes), kept.any(reduced_axes))
    # Kept values are x * (1 / (1 - p)) computed in float32, as torch computes them.
    scale = np.float32(1) / np.float32(1 - p)
    np.testing.assert_array_equal(y[kept], x[kept] * scale)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_fraction_is_within_a_binomial_bound(p):
    n = 200_000
    y = F.dropout(jnp.ones(n), p, key=jax.random.key(3))
    kept = float(jnp.mean(y != 0))
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 5 * sigma
    # E[dropout(x)] = x: the inverted scaling keeps the mean.
    assert abs(float(jnp.mean(y)) - 1) < 5 * sigma / (1 - p)


def test_channel_keep_fraction_is_within_a_binomial_bound():
    p, shape = 0.3, (400, 250, 2, 2)  # 100,000 channels
    y = F.dropout2d(jnp.ones(shape, jnp.float32), p, key=jax.random.key(4))
    kept = float(jnp.mean(y[:, :, 0, 0] != 0))
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / (shape[0] * shape[1]))


def test_same_key_same_mask_other_key_other_mask():
    x = jnp.ones((50, 40))
    first, again = F.dropout(x, key=jax.random.key(5)), F.dropout(x, key=jax.random.key(5))
    other = F.dropout(x, key=jax.random.key(6))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_works_under_jit_vmap_and_grad():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(8, 6)))
    key = jax.random.key(9)
    eager = F.dropout(x, 0.3, key=key)
    np.testing.assert_array_equal(jax.jit(lambda x, k: F.dropout(x, 0.3, key=k))(x, key), eager)
    # vmap over keys: one independent mask per key.
    keys = jax.random.split(key, 4)
    per_key = jax.vmap(lambda k: F.dropout(x, 0.3, key=k))(keys)
    for i in range(4):
        np.testing.assert_array_equal(per_key[i], F.dropout(x, 0.3, key=keys[i]))
    assert not np.array_equal(per_key[0] != 0, per_key[1] != 0)
    # The gradient is the mask scaled by 1 / (1 - p).
    grad = jax.grad(lambda x: jnp.sum(F.dropout(x, 0.3, key=key)))(x)
    np.testing.assert_array_equal(grad, (eager != 0) / 0.7)


@pytest.mark.parametrize("kind", KINDS)
def test_eval_p0_and_empty_inputs_are_the_identity_as_in_torch(kind):
    jax_fn, torch_fn, shape, _ = KINDS[kind]
    x = np.random.default_rng(3).normal(size=shape)
    x.flat[0] = np.nan
    for kwargs in ({"p": 0.5, "training": False}, {"p": 0.0, "training": True}):
        # No key needed: nothing is drawn.
        np.testing.assert_array_equal(jax_fn(x, **kwargs), x)
        np.testing.assert_array_equal(torch_fn(torch.tensor(x), **kwargs).numpy(), x)
    grad = jax.grad(lambda x: jnp.sum(jax_fn(x, 0.5, training=False)))(x)
    np.testing.assert_array_equal(grad, np.ones(shape))
    empty = np.zeros((0, *shape[1:]))
    assert jax_fn(empty, 0.5).shape == empty.shape


@pytest.mark.parametrize("kind", KINDS)
def test_p1_zeroes_everything_and_nan_stays_nan_as_in_torch(kind):
    jax_fn, torch_fn, shape, _ = KINDS[kind]
    x = np.random.default_rng(4).normal(size=shape)
    x.flat[:3] = [np.nan, np.inf, -np.inf]
    case = (lambda x: jax_fn(x, 1.0), lambda xt: torch_fn(xt, 1.0), x)
    assert_matches_torch({kind: case}, EXACT)  # value: input * 0; gradient: 0
    y = np.asarray(jax_fn(x, 1.0))
    assert np.isnan(y.flat[:3]).all() and (y.flat[3:] == 0).all()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_scales_as_torch_does(dtype):
    """torch computes 1 / (1 - p) in the input's dtype: bfloat16 1 / 0.75 is 1.3359375."""
    p, x = 0.25, np.random.default_rng(5).normal(size=(6, 5)).astype(np.float32)
    keep = torch_keep_mask(TF.dropout, x.shape, np.float32, p, seed=3)
    torch.manual_seed(3)
    expected = TF.dropout(torch.tensor(x).to(getattr(torch, dtype)), p).float().numpy()
    y = F.dropout(jnp.asarray(x, dtype), p, mask=jnp.asarray(keep))
    assert y.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(y, np.float32), expected)


# --------------------------------------------------------------------- bad input


@pytest.mark.parametrize("p", [-0.1, 1.5, math.nan])
@pytest.mark.parametrize("kind", KINDS)
def test_p_outside_zero_one_raises(kind, p):
    jax_fn, torch_fn, shape, _ = KINDS[kind]
    name = jax_fn.__name__
    with pytest.raises(ValueError, match=rf"{name}: p must be a probability in \[0, 1\]"):
        jax_fn(np.zeros(shape), p, key=jax.random.key(0))
    with pytest.raises((ValueError, RuntimeError), match="dropout probability has to be"):
        torch_fn(torch.zeros(shape), p)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: F.dropout(jnp.ones(3), "0.5"), TypeError, "dropout: p must be a float, got str"),
        (
            lambda: F.dropout(jnp.ones(3), 0.5, training=1, key=jax.random.key(0)),
            TypeError,
            "dropout: training must be a bool, got int",
        ),
        (
            lambda: F.dropout(jnp.ones(3), 0.5),
            ValueError,
            r"dropout: training with p=0.5 needs a PRNG key \(key=...\) or a keep-mask",
        ),
        (
            lambda: F.dropout(jnp.ones(3), key=jax.random.key(0), mask=jnp.ones(3, bool)),
            ValueError,
            "dropout: pass either key or mask, not both",
        ),
        (
            lambda: F.dropout(jnp.ones((2, 3)), mask=jnp.ones(3, bool)),
            ValueError,
            r"dropout: mask must be a bool array of shape \(2, 3\) .*got bool of shape \(3,\)",
        ),
        (
            lambda: F.dropout(jnp.ones(3), mask=jnp.ones(3)),
            ValueError,
            r"dropout: mask must be a bool array of shape \(3,\) .*got float64",
        ),
        (
            lambda: F.dropout2d(jnp.ones((2, 3, 4, 4)), mask=jnp.ones((2, 3, 4, 4), bool)),
            ValueError,
            r"dropout2d: mask must be a bool array of shape \(2, 3, 1, 1\)",
        ),
        (
            lambda: F.dropout(jnp.ones(3, jnp.int32), key=jax.random.key(0)),
            TypeError,
            "dropout: expected a floating-point input, got dtype int32",
        ),
        (
            lambda: F.dropout2d(jnp.ones((3, 4, 4)), key=jax.random.key(0)),
            ValueError,
            r"dropout2d: expected input \(N, C, H, W\), got shape \(3, 4, 4\); add a batch",
        ),
        (
            lambda: F.dropout1d(jnp.ones((2, 3, 4, 4)), key=jax.random.key(0)),
            ValueError,
            r"dropout1d: expected input \(N, C, L\) or \(C, L\), got shape \(2, 3, 4, 4\)",
        ),
        (
            lambda: jax.jit(lambda p: F.dropout(jnp.ones(3), p, key=jax.random.key(0)))(0.5),
            TypeError,
            "dropout: p must be a concrete number, got a traced value",
        ),
    ],
    ids=[
        "p-str",
        "training-int",
        "no-key",
        "key-and-mask",
        "mask-shape",
        "mask-dtype",
        "channel-mask-shape",
        "int-input",
        "dropout2d-3d",
        "dropout1d-4d",
        "traced-p",
    ],
)
def test_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_torch_reads_a_3d_dropout2d_input_as_n_c_l_which_jaxnet_refuses():
    """Why dropout2d takes 4-D input only: torch does not drop the channels of (C, H, W)."""
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"interpreted as shape \(N, C, L\)"):
        y = TF.dropout2d(torch.ones(8, 16, 16), 0.5)
    rows_dropped = (y == 0).all(dim=2)  # (C, H) rows of length W dropped one by one
    assert not (rows_dropped.all(dim=1) | ~rows_dropped.any(dim=1)).all()
