"""clip_grad_norm / clip_grad_value against torch.nn.utils."""

import math

import jax
import numpy as np
import pytest
import torch

from jaxnet.nn.utils import clip_grad_norm, clip_grad_value


def grads_pair(rng, scale):
    shapes = {"0": {"weight": (4, 3), "bias": (4,)}, "2": {"weight": (2, 4)}}
    grads = jax.tree.map(
        lambda s: rng.standard_normal(s) * scale, shapes, is_leaf=lambda s: isinstance(s, tuple)
    )
    tensors = [
        torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64))
        for g in jax.tree.leaves(grads)
    ]
    for t, g in zip(tensors, jax.tree.leaves(grads), strict=True):
        t.grad = torch.tensor(g)
    return grads, tensors


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize(("scale", "max_norm"), [(10.0, 1.0), (0.01, 1.0), (1.0, 0.0)])
def test_clip_grad_norm_equals_torch(norm_type, scale, max_norm, rng):
    grads, tensors = grads_pair(rng, scale)
    t_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type)
    clipped, norm = clip_grad_norm(grads, max_norm, norm_type)
    np.testing.assert_allclose(norm, t_norm.item(), rtol=1e-12)
    for ours, t in zip(jax.tree.leaves(clipped), tensors, strict=True):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_clip_grad_norm_jits_and_nonfinite(rng):
    grads, _ = grads_pair(rng, 1.0)
    clipped, norm = jax.jit(clip_grad_norm, static_argnums=(1, 2))(grads, 1.0, 2.0)
    np.testing.assert_allclose(norm, clip_grad_norm(grads, 1.0)[1], rtol=1e-12)
    grads["0"]["bias"][0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        clip_grad_norm(grads, 1.0, error_if_nonfinite=True)
    _, t = grads_pair(rng, 1.0)
    t[0].grad[0] = float("nan")
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(t, 1.0, error_if_nonfinite=True)
    clipped, norm = clip_grad_norm(grads, 1.0)
    assert np.isnan(norm) and np.isnan(clipped["0"]["weight"]).all()


def test_clip_grad_value_equals_torch(rng):
    grads, tensors = grads_pair(rng, 3.0)
    torch.nn.utils.clip_grad_value_(tensors, 0.5)
    for ours, t in zip(jax.tree.leaves(clip_grad_value(grads, 0.5)), tensors, strict=True):
        np.testing.assert_array_equal(ours, t.grad.numpy())


def test_clip_rejects_negative_limits():
    with pytest.raises(ValueError, match="max_norm=-1"):
        clip_grad_norm({"w": np.ones(2)}, -1)
    with pytest.raises(ValueError, match="clip_value=-1"):
        clip_grad_value({"w": np.ones(2)}, -1)


@pytest.mark.parametrize("limit", [math.nan, np.float64("nan")])
def test_clip_rejects_a_nan_limit(limit):
    """A NaN limit would turn every gradient into NaN; torch returns NaN gradients too."""
    grads = {"w": np.ones(2)}
    with pytest.raises(ValueError, match=r"clip_grad_norm: max_norm=.*nan\)? must be >= 0"):
        clip_grad_norm(grads, limit)
    with pytest.raises(ValueError, match=r"clip_grad_value: clip_value=.*nan\)? must be >= 0"):
        clip_grad_value(grads, limit)
    with pytest.raises(ValueError, match="clip_grad_norm: norm_type must be a number, not NaN"):
        clip_grad_norm(grads, 1.0, norm_type=limit)
    t = torch.nn.Parameter(torch.zeros(2))
    t.grad = torch.ones(2)
    torch.nn.utils.clip_grad_norm_([t], limit)
    assert torch.isnan(t.grad).all()


@pytest.mark.parametrize("limit", ["1.0", None, True, [1.0]])
def test_clip_rejects_a_limit_that_is_not_a_number(limit):
    grads = {"w": np.ones(2)}
    with pytest.raises(TypeError, match="clip_grad_norm: max_norm must be a float, got"):
        clip_grad_norm(grads, limit)
    with pytest.raises(TypeError, match="clip_grad_value: clip_value must be a float, got"):
        clip_grad_value(grads, limit)


def test_clip_takes_0d_arrays_and_infinite_limits_as_torch():
    grads, tensors = grads_pair(np.random.default_rng(1), 10.0)
    clipped, _ = clip_grad_norm(grads, np.float32(1.0))
    np.testing.assert_allclose(clip_grad_norm(grads, 1.0)[0]["2"]["weight"], clipped["2"]["weight"])
    unclipped, _ = clip_grad_norm(grads, math.inf)
    torch.nn.utils.clip_grad_norm_(tensors, math.inf)
    for ours, t in zip(jax.tree.leaves(unclipped), tensors, strict=True):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-12)
