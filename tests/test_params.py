"""Parameter names, state_dict round trips with torch, tying and custom layers (seed 003)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnet import nn

F64 = {"rtol": 1e-12, "atol": 1e-12}


class MLPBlock(nn.Module):
    """Seed 003's custom block: hidden Linear(20, 256), ReLU, out Linear(256, 10)."""

    def __init__(self):
        self.hidden = nn.Linear(20, 256, dtype=jnp.float64)
        self.out = nn.Linear(256, 10, dtype=jnp.float64)

    def forward(self, scope, x):
        return self.out(scope, jax.nn.relu(self.hidden(scope, x)))


class TorchMLPBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(20, 256, dtype=torch.float64)
        self.out = torch.nn.Linear(256, 10, dtype=torch.float64)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def tied_pair():
    """Seed 003's tied network, in both styles."""
    shared = nn.Linear(8, 8, dtype=jnp.float64)
    ours = nn.Sequential(
        nn.Linear(4, 8, dtype=jnp.float64),
        nn.ReLU(),
        shared,
        nn.ReLU(),
        shared,
        nn.ReLU(),
        nn.Linear(8, 1, dtype=jnp.float64),
    )
    t_shared = torch.nn.Linear(8, 8, dtype=torch.float64)
    theirs = torch.nn.Sequential(
        torch.nn.Linear(4, 8, dtype=torch.float64),
        torch.nn.ReLU(),
        t_shared,
        torch.nn.ReLU(),
        t_shared,
        torch.nn.ReLU(),
        torch.nn.Linear(8, 1, dtype=torch.float64),
    )
    return ours, theirs


ARCHITECTURES = {
    "seed003_block": lambda: (MLPBlock(), TorchMLPBlock()),
    "seed001_mlp": lambda: (
        nn.MLP(784, [256, 64], 10, dtype=jnp.float64),
        torch.nn.Sequential(
            torch.nn.Linear(784, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 10),
        ).double(),
    ),
    "nested": lambda: (
        nn.Sequential(
            nn.Sequential(nn.Linear(3, 4, dtype=jnp.float64), nn.Tanh()),
            nn.Linear(4, 2, bias=False, dtype=jnp.float64),
        ),
        torch.nn.Sequential(
            torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()),
            torch.nn.Linear(4, 2, bias=False),
        ).double(),
    ),
    "tied": tied_pair,
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_torch_state_dict_loads_bit_exact_and_computes_the_same(arch, rng):
    ours, theirs = ARCHITECTURES[arch]()
    params = ours.load_state_dict(theirs.state_dict()).params
    for name, value in theirs.state_dict().items():
        if name in dict(ours.named_parameters(params)):
            np.testing.assert_array_equal(dict(ours.named_parameters(params))[name], value.numpy())
    assert [n for n, _ in ours.named_parameters(params)] == [
        n for n, _ in theirs.named_parameters()
    ]
    in_features = next(theirs.parameters()).shape[1]
    x = rng.standard_normal((5, in_features))
    np.testing.assert_allclose(
        ours.apply(params, x), theirs(torch.tensor(x)).detach().numpy(), **F64
    )


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_jaxnet_params_load_into_torch_bit_exact(arch):
    ours, theirs = ARCHITECTURES[arch]()
    params = ours.init(jax.random.key(7))
    sd = ours.state_dict(params)
    assert list(sd) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
    for name, value in theirs.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), sd[name])
    back = ours.load_state_dict(theirs.state_dict()).params
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_tied_parameters_stored_once_and_gradients_add(rng):
    ours, theirs = tied_pair()
    params = ours.load_state_dict(theirs.state_dict()).params
    assert list(params) == ["0", "2", "6"]  # torch's named_parameters lists the same
    x = rng.standard_normal((3, 4))
    theirs(torch.tensor(x)).sum().backward()
    grads = jax.grad(lambda p: ours.apply(p, x).sum())(params)
    np.testing.assert_allclose(grads["2"]["weight"], theirs[2].weight.grad.numpy(), **F64)
    np.testing.assert_allclose(grads["2"]["bias"], theirs[2].bias.grad.numpy(), **F64)

    # The tied gradient is the sum of the two uses: untie the layer and add its gradients.
    untied = nn.Sequential(*ours.layers[:4], nn.Linear(8, 8, dtype=jnp.float64), *ours.layers[5:])
    untied_params = {**params, "4": params["2"]}
    g = jax.grad(lambda p: untied.apply(p, x).sum())(untied_params)
    np.testing.assert_allclose(grads["2"]["weight"], g["2"]["weight"] + g["4"]["weight"], **F64)
    assert not np.allclose(g["2"]["weight"], g["4"]["weight"])


def test_tied_change_at_one_position_shows_at_the_other(rng):
    ours, theirs = tied_pair()
    params = ours.load_state_dict(theirs.state_dict()).params
    with torch.no_grad():
        theirs[2].weight[0, 0] = 100.0  # torch: changes net[4] too
    assert theirs[4].weight[0, 0].item() == 100.0
    params["2"]["weight"] = params["2"]["weight"].at[0, 0].set(100.0)
    assert ours.state_dict(params)["4.weight"][0, 0] == 100.0
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(
        ours.apply(params, x), theirs(torch.tensor(x)).detach().numpy(), **F64
    )


def test_tied_alias_holding_another_value_is_refused():
    ours, theirs = tied_pair()
    sd = {k: v.clone() for k, v in theirs.state_dict().items()}
    sd["4.weight"] += 1
    with pytest.raises(ValueError, match=r"'4.weight' is tied to '2.weight'"):
        ours.load_state_dict(sd).params


def small_tied_pair():
    """The reviewer's case: one Linear object at positions 0 and 2."""
    shared, t_shared = nn.Linear(4, 4), torch.nn.Linear(4, 4)
    return (
        nn.Sequential(shared, nn.ReLU(), shared),
        torch.nn.Sequential(t_shared, torch.nn.ReLU(), t_shared),
    )


def test_tied_key_missing_is_refused_under_strict_as_in_torch():
    ours, theirs = small_tied_pair()
    sd = theirs.state_dict()
    del sd["2.weight"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "2\.weight"'):
        theirs.load_state_dict(sd)
    with pytest.raises(ValueError, match=r"^Sequential.load_state_dict: missing key '2\.weight'$"):
        ours.load_state_dict(sd).params


def test_tied_key_of_another_shape_names_both_shapes_as_torch_does():
    ours, theirs = small_tied_pair()
    sd = theirs.state_dict()
    sd["2.weight"] = torch.zeros(3, 4)
    with pytest.raises(RuntimeError, match=r"size mismatch for 2\.weight: .*\[3, 4\].*\[4, 4\]"):
        theirs.load_state_dict(sd)
    with pytest.raises(
        ValueError,
        match=r"^Sequential.load_state_dict: '2\.weight': expected float32\[4, 4\], "
        r"got float32\[3, 4\]$",
    ):
        ours.load_state_dict(sd).params


def test_tied_parameter_loads_from_a_later_position_when_not_strict_as_in_torch():
    ours, theirs = small_tied_pair()
    sd = theirs.state_dict()
    del sd["0.weight"]
    assert theirs.load_state_dict(sd, strict=False).missing_keys == ["0.weight"]
    with pytest.raises(ValueError, match=r"^Sequential.load_state_dict: missing key '0\.weight'$"):
        ours.load_state_dict(sd).params
    params = ours.load_state_dict(sd, strict=False, params=ours.init(jax.random.key(0))).params
    np.testing.assert_array_equal(params["0"]["weight"], theirs[0].weight.detach().numpy())
    np.testing.assert_array_equal(params["0"]["weight"], sd["2.weight"].numpy())


def test_tied_parameter_holding_nan_loads():
    ours, theirs = small_tied_pair()
    with torch.no_grad():
        theirs[0].weight[0, 0] = float("nan")
    params = ours.load_state_dict(theirs.state_dict()).params
    assert np.isnan(params["0"]["weight"][0, 0])


def test_seed003_parameter_access():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    params = net.init(jax.random.key(0))
    assert [(n, p.shape) for n, p in net[0].named_parameters(params["0"])] == [
        ("weight", (8, 4)),
        ("bias", (8,)),
    ]
    assert net.state_dict(params)["2.bias"].shape == (1,)
    assert np.array_equal(net.state_dict(params)["2.bias"], params["2"]["bias"])


def test_load_state_dict_lists_every_problem_and_loads_nothing():
    net = nn.MLP(3, [4], 2)
    params = net.init(jax.random.key(0))
    sd = net.state_dict(params)
    bad = dict(sd)
    del bad["0.bias"]
    bad["2.weight"] = np.zeros((3, 4), np.float32)
    bad["2.bias"] = sd["2.bias"].astype(np.float64)
    bad["9.weight"] = np.zeros(1)
    with pytest.raises(ValueError) as info:
        net.load_state_dict(bad)
    message = str(info.value)
    assert message.startswith("MLP.load_state_dict: ")
    for fragment in (
        "missing key '0.bias'",
        "'2.weight': expected float32[2, 4], got float32[3, 4]",
        "'2.bias': expected float32[2], got float64[2]",
        "unexpected key '9.weight'",
    ):
        assert fragment in message


def test_load_state_dict_non_strict_returns_missing_and_unexpected_keys_as_torch():
    net = nn.MLP(3, [4], 2)
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    params = net.init(jax.random.key(0))
    other = net.init(jax.random.key(1))
    sd = {"0.weight": net.state_dict(other)["0.weight"], "extra": np.zeros(2, np.float32)}
    expected = theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, False)
    loaded = net.load_state_dict(sd, strict=False, params=params)
    assert loaded.missing_keys == expected.missing_keys == ["0.bias", "2.weight", "2.bias"]
    assert loaded.unexpected_keys == expected.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(loaded.params["0"]["weight"], other["0"]["weight"])
    np.testing.assert_array_equal(loaded.params["2"]["bias"], params["2"]["bias"])
    with pytest.raises(ValueError, match=r"'0\.bias' is missing and no params template"):
        net.load_state_dict(sd, strict=False)


def test_load_state_dict_matching_no_key_is_refused_even_when_not_strict():
    net = nn.MLP(3, [4], 2)
    params = net.init(jax.random.key(0))
    sd = {f"module.{k}": v for k, v in net.state_dict(params).items()}  # DataParallel's prefix
    with pytest.raises(ValueError, match=r"no key matches the model"):
        net.load_state_dict(sd, strict=False, params=params)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_reduced_precision_torch_state_dict_loads_bit_exact_and_exports_back(dtype):
    jdtype = {torch.bfloat16: jnp.bfloat16, torch.float16: jnp.float16}.get(
        dtype, {torch.float32: jnp.float32, torch.float64: jnp.float64}.get(dtype)
    )
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    theirs = theirs.to(dtype)
    ours = nn.MLP(3, [4], 2, dtype=jdtype)
    loaded = ours.load_state_dict(theirs.state_dict())
    assert loaded.params["0"]["weight"].dtype == jdtype
    back = ours.state_dict(loaded.params)
    for key, value in theirs.state_dict().items():
        bits = {torch.bfloat16: torch.int16, torch.float16: torch.int16}.get(dtype)
        if bits is None:
            np.testing.assert_array_equal(back[key], value.numpy())
        else:  # compare the bit patterns
            np.testing.assert_array_equal(back[key].view(np.int16), value.view(bits).numpy())
    theirs.load_state_dict(
        {k: torch.from_numpy(v.astype(np.float32)).to(dtype) for k, v in back.items()}
    )


def test_custom_layers_centered_and_mylinear(rng):
    """Seed 003's CenteredLayer and MyLinear; the original's `.data` blocks its gradient."""
    centered = nn.Lambda(lambda x: x - x.mean(), name="centered")
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(centered.apply({}, x), [-2.0, -1.0, 0.0, 1.0, 2.0], **F64)

    class MyLinear(nn.Module):
        def __init__(self, in_units, units, detach=True):
            self.weight = nn.Parameter((in_units, units), nn.init.normal, jnp.float64)
            self.bias = nn.Parameter((units,), nn.init.normal, jnp.float64)
            self.detach = detach

        def forward(self, scope, x):
            w, b = scope.weight, scope.bias
            if self.detach:  # torch's `.data`
                w, b = jax.lax.stop_gradient(w), jax.lax.stop_gradient(b)
            return jax.nn.relu(x @ w + b[None, :])  # (B, units)

    class TorchMyLinear(torch.nn.Module):
        def __init__(self, in_units, units):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(in_units, units, dtype=torch.float64))
            self.bias = torch.nn.Parameter(torch.randn(units, dtype=torch.float64))

        def forward(self, x):
            return torch.relu(torch.matmul(x, self.weight.data) + self.bias.data)

    theirs = TorchMyLinear(5, 3)
    ours = MyLinear(5, 3)
    params = ours.load_state_dict(theirs.state_dict()).params
    xs = rng.standard_normal((4, 5))
    t_out = theirs(torch.tensor(xs))
    np.testing.assert_allclose(ours.apply(params, xs), t_out.detach().numpy(), **F64)
    assert not t_out.requires_grad and theirs.weight.grad is None
    grads = jax.grad(lambda p: ours.apply(p, xs).sum())(params)
    assert not np.any(grads["weight"]) and not np.any(grads["bias"])
    live = jax.grad(lambda p: MyLinear(5, 3, detach=False).apply(p, xs).sum())(params)
    assert np.any(live["weight"])

    net = nn.Sequential(MyLinear(64, 8), MyLinear(8, 1))
    assert [n for n, _ in net.named_parameters(net.init(jax.random.key(0)))] == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
    ]
    assert net.apply(net.init(jax.random.key(0)), rng.standard_normal((2, 64))).shape == (2, 1)


def test_nested_tying_lists_every_key_torch_lists(rng):
    """A tied block that holds a tied layer: torch's state_dict repeats every position."""
    lin, t_lin = nn.Linear(3, 3, dtype=jnp.float64), torch.nn.Linear(3, 3).double()
    inner, t_inner = nn.Sequential(lin, lin), torch.nn.Sequential(t_lin, t_lin)
    ours, theirs = nn.Sequential(inner, inner), torch.nn.Sequential(t_inner, t_inner)
    params = ours.load_state_dict(theirs.state_dict()).params
    assert list(params) == ["0"] and list(params["0"]) == ["0"]  # stored once
    ours_sd = ours.state_dict(params)
    assert list(ours_sd) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours_sd[key], value.numpy())
    x = rng.standard_normal((2, 3))
    np.testing.assert_allclose(
        ours.apply(params, x), theirs(torch.tensor(x)).detach().numpy(), **F64
    )


def test_load_state_dict_names_a_prefix_left_by_dataparallel():
    net = nn.MLP(3, [4], 2)
    theirs = torch.nn.DataParallel(
        torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    )
    sd = theirs.state_dict()
    assert next(iter(sd)).startswith("module.")
    with pytest.raises(ValueError, match=r"missing key '0\.weight'.*prefix 'module\.'.*strip it"):
        net.load_state_dict(sd)
    fixed = {k.removeprefix("module."): v for k, v in sd.items()}
    np.testing.assert_array_equal(
        net.load_state_dict(fixed).params["0"]["weight"], sd["module.0.weight"]
    )
