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
