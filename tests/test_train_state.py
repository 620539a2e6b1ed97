"""Training a model with state (BatchNorm) and randomness (Dropout) against torch.

The model is ``Linear(6, 16) -> BatchNorm1d(16) -> ReLU -> Dropout(p) -> Linear(16, 3)``,
trained with SGD (momentum 0.9) on the batches :func:`jaxnet.train.epoch_batch_order`
gives, beside a torch twin loaded with the same weights and fed the same batches:

* ``train_step(has_state=True)``, jitted: after each of 20 steps the parameters and
  all three buffers (``running_mean``, ``running_var``, ``num_batches_tracked``) equal
  torch's; with ``p=0`` against ``torch.nn.BatchNorm1d``/``Dropout`` as they are, with
  ``p=0.4`` against a torch twin multiplying by the very masks jaxnet drew.
* ``fit(has_state=True)`` trains in training mode and evaluates in eval mode (running
  statistics, no dropout): per-step losses, per-epoch eval metrics and the final state
  equal torch's ``model.train()`` loop with ``model.eval()`` evaluation.
* The same state key gives the same masks, hence the same bits; another key, others.
* ``checkpoint.save_state``/``load_state`` round-trips a ``TrainState`` holding buffers
  and the epoch counter, bit for bit.

Tolerances: float64 ``rtol=1e-10, atol=1e-12`` (only the order of summation differs);
float32 ``rtol=2e-5, atol=2e-6`` over 20 steps (measured: largest absolute difference
1.4e-6, in parameters and running statistics of order 1 to 10).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnet import checkpoint, nn, optim, train
from jaxnet.nn import functional as F

TOL = {"float64": {"rtol": 1e-10, "atol": 1e-12}, "float32": {"rtol": 2e-5, "atol": 2e-6}}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
N, BATCH, LR, MOMENTUM = 80, 8, 0.05, 0.9  # 10 steps per epoch
DROPOUT_AT = "3"  # the Dropout layer's position (and path) in the model


def make_net(p: float, dtype: str) -> nn.Sequential:
    d = getattr(jnp, dtype)
    return nn.Sequential(
        nn.Linear(6, 16, dtype=d), nn.BatchNorm1d(16, dtype=d), nn.ReLU(), nn.Dropout(p),
        nn.Linear(16, 3, dtype=d),
    )  # fmt: skip


def torch_twin(p: float, dtype: str) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Dropout(p),
        torch.nn.Linear(16, 3),
    ).to(TORCH_DTYPES[dtype])  # fmt: skip


def stateful_loss(net: nn.Module):
    def loss_fn(params, buffers, batch, key):
        y, buffers = net.apply(params, batch[0], buffers=buffers, key=key, training=True)
        return F.mse_loss(y, batch[1]), buffers

    return loss_fn


def eval_metric(net: nn.Module):
    def metric_fn(params, buffers, batch):
        y, _ = net.apply(params, batch[0], buffers=buffers, training=False)
        return {"mse": jnp.mean((y - batch[1]) ** 2, axis=1)}

    return metric_fn


def dataset(dtype: str):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (N, 6)).astype(dtype)  # off-centre: the statistics matter
    y = rng.standard_normal((N, 3)).astype(dtype)
    return x, y


def start(p: float, dtype: str):
    """The jaxnet model and its torch twin holding torch's initial weights (seed 0) and
    buffers."""
    torch.manual_seed(0)
    twin = torch_twin(p, dtype)
    net = make_net(p, dtype)
    loaded = net.load_state_dict(twin.state_dict())
    return net, twin, loaded.params, loaded.buffers


def assert_equals_torch(net, params, buffers, twin, dtype, what):
    ours = net.state_dict(params, buffers)
    theirs = twin.state_dict()
    assert list(ours) == list(theirs)
    for name, value in theirs.items():
        expected = value.numpy()
        if name.endswith("num_batches_tracked"):
            assert int(ours[name]) == int(expected), f"{name} {what}"
        else:
            assert ours[name].dtype == expected.dtype, f"{name} {what}"
            np.testing.assert_allclose(ours[name], expected, err_msg=f"{name} {what}", **TOL[dtype])


def dropout_scale(p: float, key: jax.Array, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The mask times ``1 / (1 - p)`` that a model's Dropout at position 3 applies under
    ``key``: a Dropout at the same path of a probe model, run on ones."""
    probe = nn.Sequential(nn.Identity(), nn.Identity(), nn.Identity(), nn.Dropout(p))
    return np.asarray(probe.apply({}, jnp.ones(shape, dtype), key=key, training=True))


def torch_step(twin, opt, x, y, scale=None) -> float:
    """One torch SGD step in training mode; ``scale`` replaces Dropout's own mask."""
    twin.train()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    if scale is None:
        out = twin(x)
    else:
        hidden = twin[2](twin[1](twin[0](x)))
        out = twin[4](hidden * torch.from_numpy(scale.copy()))
    loss = torch.nn.functional.mse_loss(out, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("p", [0.0, 0.4])
def test_train_step_with_state_equals_torch_at_every_step(p, dtype):
    net, twin, params, buffers = start(p, dtype)
    x, y = dataset(dtype)
    opt = optim.SGD(LR, momentum=MOMENTUM)
    torch_opt = torch.optim.SGD(twin.parameters(), lr=LR, momentum=MOMENTUM)
    state = train.TrainState.create(params, opt, jax.random.key(5), buffers)
    step = jax.jit(train.train_step(stateful_loss(net), has_state=True), donate_argnums=0)
    order = np.concatenate([train.epoch_batch_order(state.key, e, N, BATCH) for e in range(2)])
    assert order.shape == (20, BATCH)
    for i, idx in enumerate(order):
        scale = None
        if p > 0:  # torch multiplies by the masks this step draws
            scale = dropout_scale(p, train.step_key(state.key, state.step), (BATCH, 16), dtype)
            assert 0 < np.count_nonzero(scale) < scale.size
        state, metrics = step(state, (x[idx], y[idx]))
        loss = torch_step(twin, torch_opt, x[idx], y[idx], scale)
        np.testing.assert_allclose(float(metrics["loss"]), loss, **TOL[dtype])
        assert_equals_torch(net, state.params, state.buffers, twin, dtype, f"after step {i}")
    assert int(state.step) == 20


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fit_trains_in_training_mode_and_evaluates_in_eval_mode(dtype):
    """Dropout with p=0 (the masks' agreement is the step test's); eval mode uses the
    running statistics, and turns a Dropout with p=0.4 off."""
    net, twin, params, buffers = start(0.0, dtype)
    x, y = dataset(dtype)
    ex, ey = x[:30] * 0.5 - 1.0, y[:30]  # eval data with other statistics than a batch's
    opt = optim.SGD(LR, momentum=MOMENTUM)
    state = train.TrainState.create(params, opt, jax.random.key(6), buffers)
    state, history = train.fit(
        state, stateful_loss(net), (x, y), epochs=2, batch_size=BATCH, has_state=True,
        metric_fn=eval_metric(net), eval_data=(ex, ey), progress=False, chunks_per_epoch=3,
    )  # fmt: skip

    torch_opt = torch.optim.SGD(twin.parameters(), lr=LR, momentum=MOMENTUM)
    losses, evals = [], []
    for epoch in range(2):
        for idx in train.epoch_batch_order(jax.random.key(6), epoch, N, BATCH):
            losses.append(torch_step(twin, torch_opt, x[idx], y[idx]))
        twin.eval()
        with torch.no_grad():
            out = twin(torch.from_numpy(ex)).numpy()
        evals.append(float(np.mean((out - ey) ** 2)))
    np.testing.assert_allclose(history["step_loss"], losses, **TOL[dtype])
    np.testing.assert_allclose([e["mse"] for e in history["eval"]], evals, **TOL[dtype])
    assert_equals_torch(net, state.params, state.buffers, twin, dtype, "after fit")
    # Evaluation read the buffers and left them alone; so does evaluate.
    assert int(state.buffers["1"]["num_batches_tracked"]) == 20
    result = train.evaluate(eval_metric(net), state.params, (ex, ey), batch_size=7,
                            buffers=state.buffers)  # fmt: skip
    np.testing.assert_allclose(result["mse"], evals[-1], **TOL[dtype])
    with_dropout = eval_metric(make_net(0.4, dtype))
    result = train.evaluate(with_dropout, state.params, (ex, ey), buffers=state.buffers)
    np.testing.assert_allclose(result["mse"], evals[-1], **TOL[dtype])


def fit_dropout(key: jax.Array, epochs: int = 1) -> train.TrainState:
    net, _, params, buffers = start(0.4, "float32")
    opt = optim.SGD(LR, momentum=MOMENTUM)
    state = train.TrainState.create(params, opt, key, buffers)
    state, _ = train.fit(state, stateful_loss(net), dataset("float32"), epochs=epochs,
                         batch_size=BATCH, has_state=True, progress=False)  # fmt: skip
    return state


def leaf_bytes(tree) -> list[bytes]:
    raw = lambda a: jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a  # noqa: E731
    return [np.asarray(raw(leaf)).tobytes() for leaf in jax.tree.leaves(tree)]


def test_dropout_training_is_determined_by_the_state_key():
    first, second = fit_dropout(jax.random.key(3)), fit_dropout(jax.random.key(3))
    assert leaf_bytes(first) == leaf_bytes(second)
    other = fit_dropout(jax.random.key(4))
    assert leaf_bytes(other.params) != leaf_bytes(first.params)
    assert leaf_bytes(other.buffers) != leaf_bytes(first.buffers)


def test_save_state_round_trips_buffers_and_epoch(tmp_path):
    state = fit_dropout(jax.random.key(3), epochs=2)
    assert int(state.epoch) == 2 and int(state.buffers["1"]["num_batches_tracked"]) == 20
    path = tmp_path / "state.safetensors"
    checkpoint.save_state(path, state)
    _, _, params, buffers = start(0.4, "float32")
    like = train.TrainState.create(params, optim.SGD(LR, momentum=MOMENTUM), jax.random.key(0),
                                   buffers)  # fmt: skip
    restored = checkpoint.load_state(path, like=like)
    assert leaf_bytes(restored) == leaf_bytes(state)
    assert int(restored.epoch) == 2
    assert restored.buffers["1"]["num_batches_tracked"].dtype == jnp.int64
    # The file holds the buffers under their own names, beside the params.
    from safetensors.numpy import load_file

    names = set(load_file(path))
    assert {".buffers['1']['running_mean']", ".buffers['1']['running_var']",
            ".buffers['1']['num_batches_tracked']", ".epoch"} <= names  # fmt: skip
