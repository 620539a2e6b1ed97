"""BatchNorm1d/2d, LayerNorm and Dropout layers against torch: steps, buffers, modes, errors."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxnet import nn, optim
from jaxnet.nn import functional as F

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 2e-5, "atol": 2e-6}  # float32: 20 steps of sums over the batch

BN_CASES = {
    "1d-(N,C)": (nn.BatchNorm1d, torch.nn.BatchNorm1d, (16, 5), {}),
    "1d-(N,C,L)": (nn.BatchNorm1d, torch.nn.BatchNorm1d, (8, 5, 7), {}),
    "2d": (nn.BatchNorm2d, torch.nn.BatchNorm2d, (4, 5, 3, 6), {}),
    "momentum-None": (nn.BatchNorm1d, torch.nn.BatchNorm1d, (16, 5), {"momentum": None}),
    "affine-False": (nn.BatchNorm2d, torch.nn.BatchNorm2d, (4, 5, 3, 3), {"affine": False}),
    "no-running-stats": (
        nn.BatchNorm1d,
        torch.nn.BatchNorm1d,
        (16, 5),
        {"track_running_stats": False},
    ),
}


def bn_nets(ours_cls, theirs_cls, shape, kwargs, dtype):
    """A Linear over the last axis in front (parameters even when BatchNorm has none)."""
    channels, width = shape[1], shape[-1]
    ours = nn.Sequential(
        nn.Linear(width, width, dtype=dtype), ours_cls(channels, **kwargs, dtype=dtype), nn.Tanh()
    )
    theirs = torch.nn.Sequential(
        torch.nn.Linear(width, width), theirs_cls(channels, **kwargs), torch.nn.Tanh()
    )
    return ours, theirs.to({jnp.float64: torch.float64, jnp.float32: torch.float32}[dtype])


@pytest.mark.parametrize("case", BN_CASES)
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
def test_batchnorm_20_sgd_steps_equal_torch(case, dtype, rng):
    ours_cls, theirs_cls, shape, kwargs = BN_CASES[case]
    ours, theirs = bn_nets(ours_cls, theirs_cls, shape, kwargs, dtype)
    tol = F64 if dtype == jnp.float64 else F32
    with torch.no_grad():  # non-trivial affine parameters
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(p.shape)))
    loaded = ours.load_state_dict(theirs.state_dict())
    params, buffers = loaded.params, loaded.buffers
    opt = optim.SGD(0.1)
    opt_state = opt.init(params)
    t_opt = torch.optim.SGD(theirs.parameters(), lr=0.1)
    np_dtype = np.float64 if dtype == jnp.float64 else np.float32
    targets = rng.standard_normal(shape).astype(np_dtype)

    def loss_fn(params, buffers, x):
        y, buffers = ours.apply(params, x, buffers=buffers)
        return jnp.mean((y - targets) ** 2), (y, buffers)

    step = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 2), has_aux=True))
    for _ in range(20):
        x = (rng.standard_normal(shape) * 2 + 1).astype(np_dtype)
        tx = torch.from_numpy(x).requires_grad_()
        t_y = theirs(tx)
        t_loss = torch.mean((t_y - torch.from_numpy(targets)) ** 2)
        t_opt.zero_grad()
        t_loss.backward()
        (_, (y, buffers)), (grads, gx) = step(params, buffers, x)
        np.testing.assert_allclose(y, t_y.detach().numpy(), **tol)
        np.testing.assert_allclose(gx, tx.grad.numpy(), **tol)
        for name, p in theirs.named_parameters():
            np.testing.assert_allclose(dict(ours.named_parameters(grads))[name], p.grad, **tol)
        t_opt.step()
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        sd = ours.state_dict(params, buffers)
        assert list(sd) == list(theirs.state_dict())
        for key, value in theirs.state_dict().items():
            np.testing.assert_allclose(sd[key], value.numpy(), **tol)
    theirs.eval()
    x = rng.standard_normal(shape).astype(np_dtype)
    y, same = ours.apply(params, x, buffers=buffers, training=False)
    np.testing.assert_allclose(y, theirs(torch.from_numpy(x)).detach().numpy(), **tol)
    jax.tree.map(np.testing.assert_array_equal, same, buffers)  # eval changes nothing


def test_batchnorm_buffers_names_order_and_dtype_as_torch():
    ours, theirs = nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    sd = ours.state_dict(ours.init(jax.random.key(0)), ours.init_buffers())
    assert list(sd) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_buffers(ours.init_buffers())] == [
        n for n, _ in theirs.named_buffers()
    ]
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(sd[key], value.numpy())  # int64 0 == int 0


def test_batchnorm_training_batch_of_one_raises_as_torch():
    theirs = torch.nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        theirs(torch.zeros(1, 3))
    ours = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        ours.apply(ours.init(jax.random.key(0)), jnp.zeros((1, 3)), buffers=ours.init_buffers())


def test_batchnorm_channel_mismatch_names_layer_and_shapes():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(6))
    params, buffers = net.init(jax.random.key(0)), net.init_buffers()
    with pytest.raises(
        ValueError,
        match=r"^Sequential\[1\]: BatchNorm1d\(6\) expected input \(N, C\) or \(N, C, L\) with "
        r"C = 6, got shape \(2, 8\)",
    ):
        net.apply(params, jnp.zeros((2, 4)), buffers=buffers)
    bn2 = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\) expected input \(N, C, H, W\)"):
        bn2.apply(bn2.init(jax.random.key(0)), jnp.zeros((2, 5, 5, 3)), buffers=bn2.init_buffers())


def test_buffers_and_params_swapped_or_missing_get_clear_errors():
    bn = nn.BatchNorm1d(3)
    params, buffers = bn.init(jax.random.key(0)), bn.init_buffers()
    with pytest.raises(ValueError, match=r"these are the model's buffers: pass them as buffers="):
        bn.apply(buffers, jnp.zeros((4, 3)), buffers=params)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\) has buffers .*pass buffers="):
        bn.apply(params, jnp.zeros((4, 3)))


def test_state_dict_round_trip_with_batchnorm_and_dropout_both_directions(rng):
    theirs = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Dropout(0.3),
        torch.nn.Linear(8, 3),
    )  # fmt: skip
    ours = nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3)
    )
    theirs.train()
    theirs(torch.randn(10, 6))  # running statistics that are not the initial ones
    loaded = ours.load_state_dict(theirs.state_dict())
    sd = ours.state_dict(loaded.params, loaded.buffers)
    assert list(sd) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(sd[key], value.numpy())
    fresh = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Dropout(0.3),
        torch.nn.Linear(8, 3),
    )  # fmt: skip
    fresh.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
    fresh.eval()
    x = rng.standard_normal((4, 6)).astype(np.float32)
    y, _ = ours.apply(loaded.params, x, buffers=loaded.buffers, training=False)
    np.testing.assert_allclose(y, fresh(torch.from_numpy(x)).detach().numpy(), **F32)


@pytest.mark.parametrize("normalized_shape", [5, (5,), (3, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_forward_and_grads_equal_torch(normalized_shape, bias, rng):
    theirs = torch.nn.LayerNorm(normalized_shape, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(p.shape)))
    ours = nn.LayerNorm(normalized_shape, bias=bias, dtype=jnp.float64)
    params = ours.load_state_dict(theirs.state_dict()).params
    x = rng.standard_normal((4, 2, 3, 5))
    w = rng.standard_normal(x.shape)
    tx = torch.from_numpy(x).requires_grad_()
    (theirs(tx) * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(ours.apply(params, x), theirs(tx).detach().numpy(), **F64)
    gp, gx = jax.grad(lambda p, x: (ours.apply(p, x) * w).sum(), argnums=(0, 1))(params, x)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **F64)
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(dict(ours.named_parameters(gp))[name], p.grad.numpy(), **F64)


def test_layernorm_without_affine_has_no_parameters():
    assert nn.LayerNorm(4, elementwise_affine=False).init(jax.random.key(0)) == {}
    assert list(torch.nn.LayerNorm(4, elementwise_affine=False).state_dict()) == []


# --- Dropout --------------------------------------------------------------------------


def dropout_net():
    return nn.Sequential(nn.Dropout(0.25), nn.Identity(), nn.Dropout(0.25))


def test_dropout_mask_rate_and_exact_scaling():
    layer = nn.Dropout(0.25)
    x = jnp.ones((200_000,), jnp.float32)
    y = layer.apply({}, x, key=jax.random.key(0))
    kept = np.asarray(y != 0)
    n, p_keep = kept.size, 0.75
    bound = 5 * np.sqrt(n * p_keep * (1 - p_keep))  # five binomial standard deviations
    assert abs(kept.sum() - n * p_keep) < bound
    scaled = torch.nn.functional.dropout(torch.ones(4), 0.25)  # torch's 1 / (1 - p) in float32
    assert set(np.unique(np.asarray(y))) == {0.0, scaled[scaled != 0][0].item()}


def test_dropout_eval_is_identity_and_training_needs_a_key(rng):
    net = dropout_net()
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(net.apply({}, x, training=False), x)
    with pytest.raises(
        ValueError, match=r"Dropout at '0' is random in training mode and apply got no key"
    ):
        net.apply({}, x)


def test_dropout_keys_same_key_same_mask_paths_differ():
    net = dropout_net()
    x = jnp.ones((1000,))
    key = jax.random.key(7)

    def masks(key):
        first = net[0].apply({}, x, key=jax.random.fold_in(key, zlib.crc32(b"0")))
        return first, net.apply({}, x, key=key)

    a = net.apply({}, x, key=key)
    np.testing.assert_array_equal(a, net.apply({}, x, key=key))
    assert not np.array_equal(a, net.apply({}, x, key=jax.random.key(8)))
    # Each layer's key is the call's key folded with its path: the two layers differ.
    only_first = nn.Sequential(nn.Dropout(0.25), nn.Identity(), nn.Identity())
    only_last = nn.Sequential(nn.Identity(), nn.Identity(), nn.Dropout(0.25))
    m0 = only_first.apply({}, x, key=key) != 0
    m2 = only_last.apply({}, x, key=key) != 0
    assert not np.array_equal(m0, m2)
    np.testing.assert_array_equal(a != 0, m0 & m2)
    expected = F.dropout(
        x, 0.25, key=jax.random.fold_in(jax.random.fold_in(key, zlib.crc32(b"2")), 0)
    )
    np.testing.assert_array_equal(only_last.apply({}, x, key=key), expected)
    del masks


def test_dropout_same_layer_twice_draws_two_masks():
    drop = nn.Dropout(0.5)
    net = nn.Sequential(drop, drop)
    x = jnp.ones((1000,))
    once = nn.Sequential(drop)
    assert not np.array_equal(
        net.apply({}, x, key=jax.random.key(0)) != 0, once.apply({}, x, key=jax.random.key(0)) != 0
    )


def test_dropout_under_jit_vmap_and_grad(rng):
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    params = net.init(jax.random.key(0))
    x = rng.standard_normal((8, 4)).astype(np.float32)
    key = jax.random.key(1)
    eager = net.apply(params, x, key=key)
    np.testing.assert_allclose(jax.jit(net.apply)(params, x, key=key), eager, rtol=1e-6)
    keys = jax.random.split(key, 3)
    batched = jax.vmap(lambda k: net.apply(params, x, key=k))(keys)
    for i in range(3):
        np.testing.assert_allclose(batched[i], net.apply(params, x, key=keys[i]), rtol=1e-6)
    grads = jax.grad(lambda p: net.apply(p, x, key=key).sum())(params)
    dropped = np.asarray(eager == 0).all(axis=0)  # output units dropped for every example
    np.testing.assert_array_equal(np.asarray(grads["0"]["bias"])[dropped], 0.0)


def test_dropout_with_torch_mask_injected_equals_torch(rng):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    torch.manual_seed(3)
    t_y = torch.nn.functional.dropout(torch.from_numpy(x), 0.4)
    mask = t_y.numpy() != 0
    np.testing.assert_array_equal(F.dropout(x, 0.4, mask=mask), t_y.numpy())
