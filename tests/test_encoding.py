"""PositionalEncoding against seed 000's closure-list embedder written in torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch_reference import closure_embedder

from jaxnet import nn


@pytest.mark.parametrize("include_input", [True, False])
@pytest.mark.parametrize("log_sampling", [True, False])
@pytest.mark.parametrize("shape", [(3,), (7, 3), (2, 5, 3)])
def test_equals_closure_list_float64(include_input, log_sampling, shape, rng):
    x = rng.uniform(-1, 1, shape)
    layer = nn.PositionalEncoding(
        3, num_freqs=6, include_input=include_input, log_sampling=log_sampling, dtype=jnp.float64
    )
    expected = closure_embedder(6, 5, include_input, log_sampling)(torch.tensor(x)).numpy()
    out = layer.apply({}, x)
    assert out.shape == expected.shape == (*shape[:-1], layer.out_features)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_float32_nerf_defaults_under_jit(rng):
    x = rng.uniform(-1, 1, (1024, 3)).astype(np.float32)
    layer = nn.PositionalEncoding(3, num_freqs=10)  # NeRF positions: multires 10 -> 63 features
    assert layer.out_features == 63
    out = jax.jit(layer.apply)({}, x)
    expected = closure_embedder(10, 9, dtype=torch.float32)(torch.from_numpy(x)).numpy()
    assert out.dtype == jnp.float32
    # sin/cos of arguments up to 512 rad: float32 rounding of x * 2**9 dominates
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-5)


def test_frequencies_are_the_bands():
    np.testing.assert_array_equal(
        nn.PositionalEncoding(2, 4, dtype=jnp.float64).frequencies(), [1.0, 2.0, 4.0, 8.0]
    )
    np.testing.assert_allclose(
        nn.PositionalEncoding(2, 4, log_sampling=False, dtype=jnp.float64).frequencies(),
        [1.0, 10 / 3, 17 / 3, 8.0],
        rtol=1e-12,
    )


def test_late_binding_trap_differs():
    """Without default arguments every closure sees the last p_fn and freq."""
    fns = []
    for freq in (1.0, 2.0):
        for p_fn in (torch.sin, torch.cos):
            fns.append(lambda x: p_fn(x * freq))  # noqa: B023 - the trap under test
    x = torch.tensor([0.3], dtype=torch.float64)
    trapped = torch.cat([fn(x) for fn in fns])
    np.testing.assert_allclose(trapped.numpy(), np.cos(2 * 0.3) * np.ones(4), rtol=1e-12)
    correct = nn.PositionalEncoding(1, 2, include_input=False, dtype=jnp.float64).apply(
        {}, x.numpy()
    )
    assert not np.allclose(trapped.numpy(), correct)


def test_rejects_wrong_width_and_bad_args():
    layer = nn.PositionalEncoding(3, 4)
    with pytest.raises(
        ValueError,
        match=r"PositionalEncoding\(3, num_freqs=4\) expected input "
        r"\[\.\.\., 3\], got shape \(5, 2\)",
    ):
        layer.apply({}, jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="num_freqs"):
        nn.PositionalEncoding(3, -1)


class EncodedLinear(nn.Module):
    """A NeRF-style head: the encoding as a sub-layer, then a Linear."""

    def __init__(self):
        self.encode = nn.PositionalEncoding(3, 4, dtype=jnp.float64)
        self.out = nn.Linear(self.encode.out_features, 2, dtype=jnp.float64)

    def forward(self, scope, x):
        return self.out(scope, self.encode(scope, x))


def test_encoding_inside_a_block_equals_torch(rng):
    """The parameter-free encoding takes no params entry; the block's names are torch's."""
    torch_out = torch.nn.Linear(27, 2).double()
    net = EncodedLinear()
    params = net.load_state_dict({f"out.{k}": v for k, v in torch_out.state_dict().items()}).params
    assert list(params) == ["out"] and [n for n, _ in net.named_parameters(params)] == [
        "out.weight",
        "out.bias",
    ]
    x = rng.uniform(-1, 1, (5, 3))
    y, grads = jax.value_and_grad(lambda p: jnp.sum(net.apply(p, x) ** 2))(params)
    tx = torch.tensor(x)
    expected = (torch_out(closure_embedder(4, 3)(tx)) ** 2).sum()
    expected.backward()
    np.testing.assert_allclose(y, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grads["out"]["weight"], torch_out.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads["out"]["bias"], torch_out.bias.grad.numpy(), rtol=1e-12)
