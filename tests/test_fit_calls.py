"""fit's steps_per_call changes how the epoch is cut into compiled calls, not what it trains."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnet import nn, optim, train
from jaxnet.nn import functional as F


@pytest.mark.parametrize("steps_per_call", [1, 3, 100])
def test_steps_per_call_trains_the_same_steps(steps_per_call, rng):
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, dtype=jnp.float64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(18, 3, dtype=jnp.float64),
    )  # fmt: skip
    x = rng.standard_normal((40, 1, 8, 8))
    y = rng.integers(0, 3, 40)
    opt = optim.SGD(0.1, momentum=0.9)

    def loss_fn(p, b):
        return F.cross_entropy(net.apply(p, b[0]), b[1])

    def run(**kwargs):
        state = train.TrainState.create(net.init(jax.random.key(0)), opt, jax.random.key(1))
        return train.fit(state, loss_fn, (x, y), epochs=2, batch_size=8, progress=False,
                         **kwargs)  # fmt: skip

    reference, ref_history = run()
    state, history = run(steps_per_call=steps_per_call)
    np.testing.assert_allclose(history["step_loss"], ref_history["step_loss"], rtol=1e-12)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), state.params, reference.params
    )


def test_steps_per_call_must_be_a_positive_int():
    net = nn.Linear(2, 1)
    opt = optim.SGD(0.1)
    state = train.TrainState.create(net.init(jax.random.key(0)), opt, jax.random.key(0))
    with pytest.raises(ValueError, match=r"fit: steps_per_call=0 must be a positive int"):
        train.fit(state, lambda p, b: jnp.sum(net.apply(p, b)), jnp.ones((4, 2)),
                  epochs=1, batch_size=2, steps_per_call=0)  # fmt: skip


def test_a_convolving_model_on_cpu_trains_one_step_per_call(monkeypatch, rng):
    """XLA's CPU backend runs convolutions in a loop body about 12x slower, so fit gives a
    model that convolves one compiled step per call (no loop); an MLP keeps its chunks."""
    fit_module = importlib.import_module("jaxnet.train.fit")
    unrolls = []
    real_train_loop = fit_module.train_loop

    def recording_train_loop(step, *, unroll=1):
        unrolls.append(unroll)
        return real_train_loop(step, unroll=unroll)

    monkeypatch.setattr(fit_module, "train_loop", recording_train_loop)
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, dtype=jnp.float64), nn.Flatten(),
                         nn.Linear(2 * 6 * 6, 3, dtype=jnp.float64))  # fmt: skip
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 3, dtype=jnp.float64))
    x, y = rng.standard_normal((32, 1, 8, 8)), rng.integers(0, 3, 32)
    for net in (conv, mlp):
        state = train.TrainState.create(net.init(jax.random.key(0)), optim.SGD(0.1),
                                        jax.random.key(1))  # fmt: skip
        train.fit(state, lambda p, b, net=net: F.cross_entropy(net.apply(p, b[0]), b[1]),
                  (x, y), epochs=1, batch_size=8, chunks_per_epoch=2, progress=False)  # fmt: skip
    assert unrolls == [True, 1]  # the conv model: one step per call; the MLP: 2-step calls
