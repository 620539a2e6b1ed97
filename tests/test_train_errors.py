"""What ``fit`` and ``evaluate`` do when something goes wrong, or would go silently wrong.

* A metric may be called ``"loss"``: metric names belong to the user.
* Any exception raised once training has started (in ``metric_fn``, or from the progress
  bar, as a Ctrl-C would) carries ``.state``, the last good state, and training goes on
  from it.
* ``evaluate`` and ``fit``'s ``eval_data`` refuse zero examples (a mean over none).
* ``fit`` warns once per call with the number of examples each epoch drops.
* A float16 update that overflows is reported as what it is, not as non-finite gradients.

Expected values come from NumPy (the MLP's forward pass written out) and from
``jax.grad`` on the loss, never from ``fit``'s own output.
"""

from __future__ import annotations

import importlib
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tqdm.auto import tqdm

from jaxnet import nn, optim, train
from jaxnet.nn import functional as F

NET = nn.MLP(6, [16], 3, dtype=jnp.float64)
BATCH = 8


def mse(params, batch):
    return F.mse_loss(NET.apply(params, batch[0]), batch[1])


def per_example_loss(params, batch):
    """The metric named like fit's own loss."""
    return {"loss": jnp.mean((NET.apply(params, batch[0]) - batch[1]) ** 2, axis=1)}


def numpy_mse(params, x, y) -> float:
    """The MLP's forward pass in NumPy: relu(x W0^T + b0) W2^T + b2, then the mean error."""
    p = jax.tree.map(np.asarray, params)
    hidden = np.maximum(x @ p["0"]["weight"].T + p["0"]["bias"], 0.0)
    return float(np.mean((hidden @ p["2"]["weight"].T + p["2"]["bias"] - y) ** 2))


@pytest.fixture
def data(rng):
    return rng.standard_normal((64, 6)), rng.standard_normal((64, 3))


def fresh(opt, seed=0) -> train.TrainState:
    return train.TrainState.create(NET.init(jax.random.key(seed)), opt, jax.random.key(1))


def leaf_bytes(tree) -> list[bytes]:
    raw = lambda a: jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a  # noqa: E731
    return [np.asarray(raw(leaf)).tobytes() for leaf in jax.tree.leaves(tree)]


# ------------------------------------------------------------ metric names


@pytest.mark.parametrize("progress", [False, True])
def test_a_metric_named_loss_is_the_users(data, progress):
    x, y = data
    opt = optim.SGD(0.05)
    state, history = train.fit(
        fresh(opt), mse, (x, y), epochs=2, batch_size=BATCH, metric_fn=per_example_loss,
        eval_data=(x[:40], y[:40]), progress=progress,
    )  # fmt: skip
    assert int(state.epoch) == 2 and len(history["eval"]) == 2
    assert list(history["eval"][-1]) == ["loss"]
    expected = numpy_mse(state.params, x[:40], y[:40])
    np.testing.assert_allclose(history["eval"][-1]["loss"], expected, rtol=1e-12)
    assert len(history["epoch_loss"]) == 2  # fit's own training loss, apart


# ------------------------------------------------------------ exceptions carry the state


def failing_on_second_evaluation(calls: list[int]):
    """A metric whose host-side part raises the second time it runs."""

    def host(values):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("metric failed on the second evaluation")
        return values

    def metric_fn(params, batch):
        values = per_example_loss(params, batch)["loss"]
        return {"mse": jax.pure_callback(host, jax.ShapeDtypeStruct(values.shape, values.dtype),
                                         values)}  # fmt: skip

    return metric_fn


def test_an_error_in_metric_fn_after_epoch_two_leaves_epoch_twos_state(data):
    x, y = data
    opt = optim.SGD(0.05, momentum=0.9)
    with pytest.raises(Exception, match="metric failed on the second evaluation") as info:
        train.fit(
            fresh(opt), mse, (x, y), epochs=3, batch_size=BATCH,
            metric_fn=failing_on_second_evaluation([]), eval_data=(x, y), progress=False,
        )  # fmt: skip
    state = info.value.state
    assert (int(state.epoch), int(state.step)) == (2, 16)  # both epochs trained
    # Training goes on from it exactly as if nothing had happened.
    state, _ = train.fit(state, mse, (x, y), epochs=1, batch_size=BATCH, progress=False)
    uninterrupted, _ = train.fit(
        fresh(opt), mse, (x, y), epochs=3, batch_size=BATCH, progress=False
    )
    assert leaf_bytes(state) == leaf_bytes(uninterrupted)


class InterruptingBar(tqdm):
    """A progress bar whose third update raises ``KeyboardInterrupt`` (a Ctrl-C)."""

    updates = 0

    def update(self, n=1):
        InterruptingBar.updates += 1
        if InterruptingBar.updates == 3:
            raise KeyboardInterrupt
        return super().update(n)


@pytest.mark.parametrize(("nan_policy", "expected_steps"), [("stop", 8), ("skip", 16)])
def test_an_interrupt_from_the_progress_bar_leaves_the_last_good_state(
    data, monkeypatch, nan_policy, expected_steps
):
    """Each epoch runs as 2 calls of 4 steps; the interrupt comes in epoch 2's first check.
    ``"stop"`` checks each call as it returns, so the last good state is epoch 1's end
    (step 8); ``"skip"`` has dispatched both of epoch 2's calls by then and their input
    states were donated, so the last state is after both (step 16, epoch not yet
    counted)."""
    x, y = data
    opt = optim.SGD(0.05, momentum=0.9)
    fit_module = importlib.import_module("jaxnet.train.fit")  # train.fit is the function
    monkeypatch.setattr(fit_module, "tqdm", InterruptingBar)
    monkeypatch.setattr(InterruptingBar, "updates", 0)
    with pytest.raises(KeyboardInterrupt) as info:
        train.fit(
            fresh(opt), mse, (x, y), epochs=2, batch_size=BATCH, chunks_per_epoch=2,
            nan_policy=nan_policy, progress=False,
        )  # fmt: skip
    state = info.value.state
    steps = int(state.step)
    assert int(state.epoch) == 1 and steps == expected_steps
    # The state is the one training reached: the same steps from the start, in fit's order.
    key = jax.random.key(1)
    order = np.concatenate([train.epoch_batch_order(key, e, 64, BATCH) for e in range(2)])
    replayed, _ = jax.jit(train.train_loop(train.train_step(mse)))(
        fresh(opt), (jnp.asarray(x), jnp.asarray(y)), jnp.asarray(order[:steps])
    )
    assert leaf_bytes(state.params) == leaf_bytes(replayed.params)
    monkeypatch.setattr(fit_module, "tqdm", tqdm)
    state, history = train.fit(state, mse, (x, y), epochs=1, batch_size=BATCH,
                               progress=False)  # fmt: skip
    assert int(state.epoch) == 2 and np.isfinite(history["step_loss"]).all()


# ------------------------------------------------------------ zero examples


def test_evaluate_refuses_zero_examples(data):
    x, y = data
    params = NET.init(jax.random.key(0))
    with pytest.raises(ValueError, match="evaluate: data has no examples"):
        train.evaluate(per_example_loss, params, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="evaluate: data has no examples"):
        train.evaluate(lambda p, b, batch: per_example_loss(p, batch), params, (x[:0], y[:0]),
                       buffers={})  # fmt: skip
    opt = optim.SGD(0.1)
    with pytest.raises(ValueError, match="fit: eval_data has no examples"):
        train.fit(fresh(opt), mse, (x, y), epochs=1, batch_size=BATCH,
                  metric_fn=per_example_loss, eval_data=(x[:0], y[:0]), progress=False)  # fmt: skip


# ------------------------------------------------------------ dropped examples


@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_warns_once_with_the_number_of_dropped_examples(data, shuffle):
    x, y = data
    x, y = x[:60], y[:60]  # 7 batches of 8, 4 examples dropped per epoch
    opt = optim.SGD(0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state, history = train.fit(fresh(opt), mse, (x, y), epochs=3, batch_size=BATCH,
                                   shuffle=shuffle, progress=False)  # fmt: skip
    dropped = [w for w in caught if issubclass(w.category, UserWarning)]
    messages = [str(w.message) for w in dropped]
    assert len(messages) == 1, messages
    assert "drops the last partial batch: 4 of 60 examples" in messages[0]
    assert ("never trained on" in messages[0]) == (not shuffle)
    assert dropped[0].filename == __file__  # points at the caller's line
    assert int(state.step) == 21 and len(history["step_loss"]) == 21


def test_fit_does_not_warn_when_the_batches_fill_the_epoch(data):
    opt = optim.SGD(0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train.fit(fresh(opt), mse, data, epochs=1, batch_size=BATCH, progress=False)


# ------------------------------------------------------------ float16 overflow

HALF = nn.MLP(4, [8], 2, dtype=jnp.float16)


def half_loss(params, batch):
    x, y = batch
    return jnp.mean((HALF.apply(params, x).astype(jnp.float32) - y) ** 2)


def half_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(np.float16)
    return x, rng.standard_normal((32, 2)).astype(np.float32)


def half_run(nan_policy: str):
    """Adam with lr 1e5 on float16 parameters: the first update (about lr * sign(g)) is
    beyond float16's largest value, 65504, though the loss and gradients are finite."""
    x, y = half_data()
    params = HALF.init(jax.random.key(0))
    loss, grads = jax.value_and_grad(half_loss)(params, (x[:8], y[:8]))
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    opt = optim.Adam(1e5)
    state = train.TrainState.create(params, opt, jax.random.key(0))
    return train.fit(state, half_loss, (x, y), epochs=1, batch_size=8, shuffle=False,
                     nan_policy=nan_policy, progress=False)  # fmt: skip


def test_float16_overflow_is_not_blamed_on_the_gradients():
    with pytest.raises(train.NonFiniteLossError) as info:
        half_run("stop")
    message = str(info.value)
    assert "in step 0: " in message and "the losses were finite" in message
    assert "overflow" in message
    assert not re.search(r"gradients (are|were) (not finite|non-finite)", message), message
    assert int(info.value.state.step) == 0
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(info.value.state.params))
    # The replay names the step: finite loss, non-finite parameters after it.
    x, y = half_data()
    found = train.find_nonfinite_step(
        train.train_step(half_loss), info.value.state, (x, y), info.value.index_batches
    )
    assert found.index == 0 and np.isfinite(found.loss) and int(found.state.step) == 0


def test_skip_policy_drops_an_overflowing_update():
    state, _ = half_run("skip")
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))
