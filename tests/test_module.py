"""Registration at construction: names, order, ties, containers and the Scope, against torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnet import checkpoint, nn
from jaxnet.nn import functional as F

F64 = {"rtol": 1e-12, "atol": 1e-12}


def block_pair(out_first: bool):
    """Seed 003's MLP block with its two layers assigned in either order, in both styles."""

    class Block(nn.Module):
        def __init__(self):
            if out_first:
                self.out = nn.Linear(256, 10, dtype=jnp.float64)
            self.hidden = nn.Linear(20, 256, dtype=jnp.float64)
            if not out_first:
                self.out = nn.Linear(256, 10, dtype=jnp.float64)

        def forward(self, scope, x):
            return self.out(scope, F.relu(self.hidden(scope, x)))

    class TorchBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            if out_first:
                self.out = torch.nn.Linear(256, 10, dtype=torch.float64)
            self.hidden = torch.nn.Linear(20, 256, dtype=torch.float64)
            if not out_first:
                self.out = torch.nn.Linear(256, 10, dtype=torch.float64)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x)))

    return Block(), TorchBlock()


@pytest.mark.parametrize("out_first", [False, True])
def test_assignment_order_is_torch_registration_order(out_first, rng):
    ours, theirs = block_pair(out_first)
    params = ours.init(jax.random.key(0))
    names = [n for n, _ in ours.named_parameters(params)]
    assert names == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict(params)) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    params = ours.load_state_dict(theirs.state_dict()).params
    x = rng.standard_normal((3, 20))
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours.apply(params, x), expected, **F64)


def test_parameters_declared_in_a_block_keep_torch_order():
    """torch.nn.MultiheadAttention registers in_proj_weight, in_proj_bias, then out_proj."""

    class Attention(nn.Module):
        def __init__(self, d):
            self.in_proj_weight = nn.Parameter((3 * d, d), nn.init.xavier_uniform)
            self.in_proj_bias = nn.Parameter((3 * d,), nn.init.zeros)
            self.out_proj = nn.Linear(d, d)

    theirs = torch.nn.MultiheadAttention(8, 2)
    ours = Attention(8)
    params = ours.init(jax.random.key(0))
    assert [(n, p.shape) for n, p in ours.named_parameters(params)] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()
    ]
    loaded = ours.load_state_dict(theirs.state_dict()).params
    np.testing.assert_array_equal(loaded["in_proj_weight"], theirs.in_proj_weight.detach())


class Tower(nn.Module):
    """Nested blocks, a ModuleList, a ModuleDict and a layer tied across two sub-blocks."""

    def __init__(self):
        shared = nn.Linear(4, 4, dtype=jnp.float64)
        self.stem = nn.Sequential(nn.Linear(3, 4, dtype=jnp.float64), nn.Tanh())
        self.blocks = nn.ModuleList([nn.Sequential(shared, nn.ReLU()), nn.Sequential(shared)])
        self.heads = nn.ModuleDict(
            {"a": nn.Linear(4, 2, dtype=jnp.float64), "b": nn.Linear(4, 1, dtype=jnp.float64)}
        )

    def forward(self, scope, x):
        x = self.stem(scope, x)
        for block in self.blocks:
            x = block(scope, x)
        return jnp.concatenate([self.heads[k](scope, x) for k in self.heads], axis=-1)


class TorchTower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        shared = torch.nn.Linear(4, 4)
        self.stem = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh())
        self.blocks = torch.nn.ModuleList(
            [torch.nn.Sequential(shared, torch.nn.ReLU()), torch.nn.Sequential(shared)]
        )
        self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 2), "b": torch.nn.Linear(4, 1)})

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return torch.cat([self.heads[k](x) for k in self.heads], -1)


def test_nested_blocks_containers_and_ties_equal_torch(rng):
    ours, theirs = Tower(), TorchTower().double()
    sd = theirs.state_dict()
    assert list(ours.state_dict(ours.init(jax.random.key(0)))) == list(sd)  # '1.0.*' repeated
    params = ours.load_state_dict(sd).params
    assert "1" not in params["blocks"]  # the tied layer is stored once, at blocks.0.0
    assert [n for n, _ in ours.named_parameters(params)] == [
        n for n, _ in theirs.named_parameters()
    ]
    x = rng.standard_normal((5, 3))
    tx = torch.from_numpy(x)
    theirs(tx).square().sum().backward()
    np.testing.assert_allclose(ours.apply(params, x), theirs(tx).detach().numpy(), **F64)
    grads = jax.grad(lambda p: jnp.square(ours.apply(p, x)).sum())(params)
    named = dict(ours.named_parameters(grads))
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(named[name], p.grad.numpy(), **F64)
    back = ours.state_dict(params)
    for key, value in sd.items():
        np.testing.assert_array_equal(back[key], value.numpy())


def test_custom_block_without_hand_written_init_works_with_reinit_and_checkpoints(tmp_path):
    ours, theirs = block_pair(out_first=True)
    params = ours.init(jax.random.key(0))
    zero = lambda key, layer, p: jax.tree.map(jnp.zeros_like, p)  # noqa: E731
    zeroed = nn.init.reinit(params, ours, zero, jax.random.key(1), kind=nn.Linear)
    assert all(not np.any(leaf) for leaf in jax.tree.leaves(zeroed))
    path = tmp_path / "block.safetensors"
    checkpoint.save_weights(path, ours, params)
    loaded = checkpoint.load_weights(path, ours)
    jax.tree.map(np.testing.assert_array_equal, loaded.params, params)
    import safetensors.torch

    theirs.load_state_dict(safetensors.torch.load_file(path), strict=True)
    np.testing.assert_array_equal(theirs.out.weight.detach().numpy(), params["out"]["weight"])


def test_init_keys_follow_registration_order():
    """One key per entry, split from the layer's key: a block's children get keys 0 and 1."""
    ours, _ = block_pair(out_first=False)
    key = jax.random.key(3)
    params = ours.init(key)
    k_hidden, k_out = jax.random.split(key)
    jax.tree.map(np.testing.assert_array_equal, params["hidden"], ours.hidden.init(k_hidden))
    jax.tree.map(np.testing.assert_array_equal, params["out"], ours.out.init(k_out))


def test_plain_list_of_layers_is_refused():
    class Bad(nn.Module):
        def __init__(self):
            self.layers = [nn.Linear(2, 2), nn.ReLU()]

    with pytest.raises(TypeError, match=r"Bad\.layers: a plain list of layers is not registered"):
        Bad()


def test_calling_an_unregistered_layer_is_refused():
    stray = nn.Linear(2, 2)

    class Block(nn.Module):
        def __init__(self):
            self.inner = nn.Linear(2, 2)

        def forward(self, scope, x):
            return stray(scope, self.inner(scope, x))

    net = Block()
    with pytest.raises(
        ValueError, match=r"Linear\(2 -> 2\) is not a registered sub-layer of Block"
    ):
        net.apply(net.init(jax.random.key(0)), jnp.zeros((1, 2)))
    with pytest.raises(TypeError, match=r"run a layer on its own with \.apply\(params, x\)"):
        stray(stray.init(jax.random.key(0)), jnp.zeros((1, 2)))


def test_scope_names_a_missing_parameter():
    class Block(nn.Module):
        def __init__(self):
            self.w = nn.Parameter((2,), nn.init.ones)

        def forward(self, scope, x):
            return x * scope.v

    net = Block()
    with pytest.raises(AttributeError, match=r"Block has no parameter or buffer 'v'"):
        net.apply(net.init(jax.random.key(0)), jnp.ones(2))


def test_training_flag_must_be_static():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    params = net.init(jax.random.key(0))
    with pytest.raises(TypeError, match=r"training must be a Python bool"):
        jax.jit(net.apply)(params, jnp.ones((1, 2)), training=False)
    apply = jax.jit(net.apply, static_argnames="training")
    np.testing.assert_array_equal(
        apply(params, jnp.ones((1, 2)), training=False),
        net.apply(params, jnp.ones((1, 2)), training=False),
    )


def test_layers_are_frozen_and_repr_like_torch():
    ours, theirs = block_pair(out_first=False)
    with pytest.raises(AttributeError, match="immutable"):
        ours.hidden = nn.Linear(1, 1)
    assert repr(ours).replace("Block", "X") == repr(theirs).replace("TorchBlock", "X")
