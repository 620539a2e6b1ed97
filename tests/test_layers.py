"""Layers against torch.nn: outputs, gradients, names, init bounds, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxnet
from jaxnet import nn
from jaxnet.nn import functional as F

F64 = {"rtol": 1e-12, "atol": 1e-12}
F32 = {"rtol": 1e-5, "atol": 1e-5}  # float32 sums of ~1000 products


def torch_twin(params_module, model):
    """jaxnet params equal to a torch module's current parameters."""
    return model.load_state_dict(params_module.state_dict()).params


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5,), (1, 5), (1, 1, 5), (4, 5), (2, 3, 5)])
def test_linear_forward_and_grads_equal_torch_float64(bias, shape, rng):
    t_layer = torch.nn.Linear(5, 3, bias=bias, dtype=torch.float64)
    layer = nn.Linear(5, 3, bias=bias, dtype=jnp.float64)
    params = torch_twin(t_layer, layer)
    x = rng.standard_normal(shape)

    tx = torch.tensor(x, requires_grad=True)
    t_out = t_layer(tx)
    (t_out**2).sum().backward()

    def loss(p, x):
        return (layer.apply(p, x) ** 2).sum()

    np.testing.assert_allclose(layer.apply(params, x), t_out.detach().numpy(), **F64)
    grads, gx = jax.grad(loss, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(grads["weight"], t_layer.weight.grad.numpy(), **F64)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **F64)
    if bias:
        np.testing.assert_allclose(grads["bias"], t_layer.bias.grad.numpy(), **F64)
    else:
        assert set(params) == {"weight"}


@pytest.mark.parametrize("batch", [2, 10])
def test_linear_vmapped_members_sharing_input_equal_torch(batch, rng):
    """Linear under vmap over members whose input is shared (not batched)."""
    t_layers = [torch.nn.Linear(20, 3, dtype=torch.float64) for _ in range(4)]
    layer = nn.Linear(20, 3, dtype=jnp.float64)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *[torch_twin(t, layer) for t in t_layers])
    x = rng.standard_normal((batch, 20))

    def loss(p, x):
        return (layer.apply(p, x) ** 2).sum()

    outs = jax.vmap(layer.apply, in_axes=(0, None))(stacked, x)
    grads = jax.vmap(jax.grad(loss), in_axes=(0, None))(stacked, x)
    for i, t_layer in enumerate(t_layers):
        t_out = t_layer(torch.from_numpy(x))
        (t_out**2).sum().backward()
        np.testing.assert_allclose(outs[i], t_out.detach().numpy(), **F64)
        np.testing.assert_allclose(grads["weight"][i], t_layer.weight.grad.numpy(), **F64)
        np.testing.assert_allclose(grads["bias"][i], t_layer.bias.grad.numpy(), **F64)


def test_linear_float32_user_path(rng):
    t_layer = torch.nn.Linear(784, 256)
    layer = nn.Linear(784, 256)
    params = torch_twin(t_layer, layer)
    x = rng.standard_normal((64, 784)).astype(np.float32)
    out = jax.jit(layer.apply)(params, x)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, t_layer(torch.from_numpy(x)).detach().numpy(), **F32)


def test_linear_layout_and_default_init_bounds():
    layer = nn.Linear(784, 256)
    params = layer.init(jax.random.key(1))
    t_layer = torch.nn.Linear(784, 256)
    assert params["weight"].shape == tuple(t_layer.weight.shape) == (256, 784)
    assert params["bias"].shape == tuple(t_layer.bias.shape) == (256,)
    bound = 1 / math.sqrt(784)  # torch: kaiming_uniform(a=sqrt(5)) and the bias rule
    for name in ("weight", "bias"):
        ours = np.asarray(params[name])
        theirs = getattr(t_layer, name).detach().numpy()
        assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound
        # uniform on [-b, b] has std b / sqrt(3); both samples agree with it
        for sample in (ours, theirs):
            np.testing.assert_allclose(sample.std(), bound / math.sqrt(3), rtol=0.1)


def test_linear_seed004_no_bias_equals_numpy(rng):
    """Seed 004: nn.Linear(2, 3, bias=False) has weight [3, 2] and computes W @ x."""
    layer = nn.Linear(2, 3, bias=False, dtype=jnp.float64)
    params = layer.init(jax.random.key(0))
    x = rng.standard_normal(2)
    assert params["weight"].shape == (3, 2)
    np.testing.assert_allclose(layer.apply(params, x), np.asarray(params["weight"]) @ x, **F64)


def test_linear_wrong_width_names_layer_and_shapes():
    layer = nn.Linear(784, 256)
    params = layer.init(jax.random.key(0))
    with pytest.raises(
        ValueError,
        match=r"Linear\(784 -> 256\) expected input \[\.\.\., 784\], "
        r"got shape \(512, 28, 28\)",
    ):
        layer.apply(params, jnp.zeros((512, 28, 28)))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        layer.apply(params, jnp.float32(1.0))


@pytest.mark.parametrize(
    ("bias", "params", "message"),
    [
        (
            True,
            {"weight": (3, 5), "bias": (3,)},
            r"'weight' \(Linear\(4 -> 3\)\) expected shape \(3, 4\), got shape \(3, 5\)",
        ),
        (
            True,
            {"weight": (4, 3), "bias": (3,)},
            r"'weight' \(Linear\(4 -> 3\)\) expected shape \(3, 4\), got shape \(4, 3\)",
        ),
        (
            True,
            {"weight": (3, 4), "bias": (4,)},
            r"'bias' \(Linear\(4 -> 3\)\) expected shape \(3,\), got shape \(4,\)",
        ),
        (True, {"weight": (3, 4)}, r"missing 'bias' \(Linear\(4 -> 3\)\)(\n|$)"),
        (False, {"weight": (3, 4), "bias": (3,)}, r"unexpected 'bias'(\n|$)"),
    ],
    ids=["weight-in", "weight-transposed", "bias", "missing-bias", "unexpected-bias"],
)
def test_linear_refuses_params_torch_cannot_load(bias, params, message):
    """Params torch's load_state_dict refuses (size mismatch, missing or unexpected key)."""
    t_layer = torch.nn.Linear(4, 3, bias=bias)
    state = {name: torch.zeros(shape) for name, shape in params.items()}
    with pytest.raises(RuntimeError, match=r"size mismatch|Missing key|Unexpected key"):
        t_layer.load_state_dict(state)
    layer = nn.Linear(4, 3, bias=bias)
    arrays = {name: jnp.zeros(shape) for name, shape in params.items()}
    for apply in (layer.apply, jax.jit(layer.apply)):
        with pytest.raises(
            ValueError, match=r"^Linear\(4 -> 3\): params do not match the model: " + message
        ):
            apply(arrays, jnp.zeros((2, 4)))


def test_linear_refuses_complex_and_integer_input_as_torch():
    layer = nn.Linear(2, 3)
    t_layer = torch.nn.Linear(2, 3)
    with pytest.raises(RuntimeError):
        t_layer(torch.zeros(1, 2, dtype=torch.complex64))
    params = layer.init(jax.random.key(0))
    for x in (jnp.zeros((1, 2), jnp.complex64), jnp.zeros((1, 2), jnp.int32)):
        with pytest.raises(TypeError, match=r"^Linear\(2 -> 3\) expected a floating input"):
            layer.apply(params, x)


@pytest.mark.parametrize(("bad", "error"), [(-1, ValueError), (2.5, TypeError), (True, TypeError)])
def test_linear_rejects_bad_sizes(bad, error):
    with pytest.raises(error, match=r"^Linear: in_features=.* must be a non-negative int$"):
        nn.Linear(bad, 3)


def test_linear_takes_numpy_integer_sizes_as_torch():
    layer = nn.Linear(np.int64(4), np.int32(3))
    t_layer = torch.nn.Linear(np.int64(4), np.int32(3))
    assert layer.init(jax.random.key(0))["weight"].shape == tuple(t_layer.weight.shape)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (nn.ReLU(), torch.nn.ReLU()),
        (nn.Sigmoid(), torch.nn.Sigmoid()),
        (nn.Tanh(), torch.nn.Tanh()),
        (nn.Identity(), torch.nn.Identity()),
        (nn.SiLU(), torch.nn.SiLU()),
        (nn.GELU(), torch.nn.GELU()),
        (nn.GELU("tanh"), torch.nn.GELU("tanh")),
        (nn.LeakyReLU(), torch.nn.LeakyReLU()),
        (nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2)),
        (nn.ELU(), torch.nn.ELU()),
        (nn.ELU(0.5), torch.nn.ELU(0.5)),
        (nn.Softmax(0), torch.nn.Softmax(0)),
        (nn.LogSoftmax(0), torch.nn.LogSoftmax(0)),
    ],
    ids=lambda layer: repr(layer),
)
def test_activation_layers_equal_torch(ours, theirs, rng):
    x = np.concatenate([rng.standard_normal(20), [0.0, -0.0]])
    tx = torch.tensor(x, requires_grad=True)
    weights = rng.standard_normal(x.shape)  # a weighted sum: softmax's plain sum is flat
    (theirs(tx) * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(ours.apply({}, x), theirs(tx).detach().numpy(), **F64)
    grad = jax.grad(lambda x: (ours.apply({}, x) * weights).sum())(x)
    np.testing.assert_allclose(grad, tx.grad.numpy(), **F64)
    assert ours.init(jax.random.key(0)) == {}
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize(("start", "end"), [(1, -1), (0, -1), (1, 2), (-2, -1), (2, 2)])
def test_flatten_equals_torch(start, end, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    expected = torch.nn.Flatten(start, end)(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(nn.Flatten(start, end).apply({}, x), expected)


def test_flatten_rejects_bad_dims():
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=3, end_dim=-1\) cannot flatten"):
        nn.Flatten(3).apply({}, jnp.zeros((2, 3)))


def test_sequential_keys_equal_torch_state_dict():
    ours = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Linear(256, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    theirs = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    params = ours.init(jax.random.key(0))
    assert list(params) == ["1", "3", "5"]  # parameter-free children take no entry
    names = [(n, tuple(p.shape)) for n, p in ours.named_parameters(params)]
    assert names == [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    assert jaxnet.count_parameters(params) == sum(p.numel() for p in theirs.parameters())


def test_mlp_equals_torch_sequential(rng):
    ours = nn.MLP(784, [256, 64], 10, dtype=jnp.float64)
    theirs = torch.nn.Sequential(
        torch.nn.Linear(784, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    ).double()
    params = torch_twin(theirs, ours)
    assert list(params) == ["0", "2", "4"]
    x = rng.standard_normal((8, 784))
    np.testing.assert_allclose(
        ours.apply(params, x), theirs(torch.tensor(x)).detach().numpy(), **F64
    )
    assert len(ours) == 5 and isinstance(ours[1], nn.ReLU)


def test_sequential_more_than_ten_children_keep_torch_order():
    ours = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    theirs = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(12)])
    params = jax.jit(ours.init)(jax.random.key(0))  # jit sorts dict keys: '10' < '2'
    assert [n for n, _ in ours.named_parameters(params)] == [
        n for n, _ in theirs.named_parameters()
    ]


def test_mlp_blames_the_layer_whose_params_are_wrong():
    """Params of MLP(4, [7], 2) in MLP(4, [8], 2): torch's load_state_dict names layer 0."""
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    other = torch.nn.Sequential(torch.nn.Linear(4, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))
    with pytest.raises(RuntimeError, match=r"size mismatch for 0\.weight"):
        theirs.load_state_dict(other.state_dict())
    params = nn.MLP(4, [7], 2).init(jax.random.key(0))
    with pytest.raises(
        ValueError,
        match=r"^MLP: params do not match the model: '0\.weight' \(Linear\(4 -> 8\)\) "
        r"expected shape \(8, 4\), got shape \(7, 4\); ",
    ):
        nn.MLP(4, [8], 2).apply(params, jnp.zeros((2, 4)))


def test_sequential_errors_name_the_position():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"^Sequential\[0\]: Linear\(4 -> 4\) expected input"):
        jax.jit(net.apply)(net.init(jax.random.key(0)), jnp.zeros((2, 5)))
    nested = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Tanh(), nn.Flatten(3)))
    with pytest.raises(ValueError, match=r"^Sequential\[1\]: Sequential\[1\]: Flatten\(start"):
        nested.apply(nested.init(jax.random.key(0)), jnp.zeros((2, 4)))


def test_missing_params_entries_are_named():
    with pytest.raises(
        ValueError,
        match=r"^MLP: params do not match the model: missing '0\.weight' "
        r"\(Linear\(4 -> 8\)\); missing '0\.bias'",
    ):
        nn.MLP(4, [8], 2).apply({}, jnp.zeros((2, 4)))
    nested = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Tanh(), nn.Linear(4, 4)))
    params = nested.init(jax.random.key(0))
    del params["1"]
    with pytest.raises(ValueError, match=r"missing '1\.1\.weight' \(Linear\(4 -> 4\)\)"):
        jax.jit(nested.apply)(params, jnp.zeros((2, 4)))


def test_mlp_refuses_a_width_for_the_hidden_list():
    with pytest.raises(
        TypeError, match=r"^MLP: hidden_features must be a sequence of widths.* got int 8$"
    ):
        nn.MLP(4, 8, 2)


def test_mlp_activation_is_a_layer_class():
    """torchvision.ops.MLP's activation_layer is also a class (``nn.ReLU``), called per layer."""
    assert isinstance(nn.MLP(4, [8], 2, activation=nn.Tanh)[1], nn.Tanh)
    with pytest.raises(
        TypeError, match=r"^MLP: activation must be a layer class such as nn.ReLU .* got ReLU\(\): "
    ):
        nn.MLP(4, [8], 2, activation=nn.ReLU())
    with pytest.raises(TypeError, match=r"^MLP: activation .*: relu\(\) missing 1 required"):
        nn.MLP(4, [8], 2, activation=F.relu)
    with pytest.raises(TypeError, match=r"^MLP: activation\(\) must return a layer, got function"):
        nn.MLP(4, [8], 2, activation=lambda: F.relu)


def test_sequential_rejects_non_layers():
    with pytest.raises(TypeError, match=r"child 1 \(int\) is not a jaxnet Module"):
        nn.Sequential(nn.ReLU(), 3)
    with pytest.raises(TypeError, match=r"child 0 is the class ReLU, not a layer: did you mean"):
        nn.Sequential(nn.ReLU)


def test_layers_are_immutable():
    layer = nn.Linear(2, 3)
    with pytest.raises(AttributeError, match="immutable"):
        layer.in_features = 4


def test_jit_equals_eager_and_does_not_recompile(rng):
    net = nn.MLP(10, [16], 3)
    params = net.init(jax.random.key(0))
    x = rng.standard_normal((4, 10)).astype(np.float32)
    apply = jax.jit(net.apply)
    np.testing.assert_allclose(apply(params, x), net.apply(params, x), **F32)
    apply(params, x + 1)
    assert apply._cache_size() == 1


def test_init_is_pure_and_keyed():
    net = nn.MLP(4, [8], 2)
    a, b = net.init(jax.random.key(3)), net.init(jax.random.key(3))
    c = net.init(jax.random.key(4))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a["0"]["weight"], c["0"]["weight"])
