"""Reproducible training and predictable non-finite steps.

* The same seed gives bit-identical parameters after 10 Adam steps of ``fit``: twice in
  this process and once in each of two fresh Python processes (the saved safetensors
  files are compared byte for byte); another seed gives other parameters.
* Non-finite steps, beyond test_train.py's NaN-loss cases: an inf loss, a NaN gradient
  behind a finite loss, a ``train_step(nan_policy="skip")`` called step by step against
  the compiled loop of the same step, and checkpointing the state a stopped run returns
  (the state before the failing call).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnet import nn, optim, train
from jaxnet.checkpoint import load_state, save_state, save_weights

NET = nn.MLP(8, [16, 16], 3)  # float32: the user's path
BATCH, STEPS = 8, 10


def loss_fn(params, batch):
    x, y = batch
    return jnp.mean((NET.apply(params, x) - y) ** 2)


def trained(seed: int) -> train.TrainState:
    """``fit`` for 10 shuffled Adam steps; the data, init and order all come from ``seed``."""
    init_key, data_key, state_key = jax.random.split(jax.random.key(seed), 3)
    x_key, y_key = jax.random.split(data_key)
    data = (
        jax.random.normal(x_key, (BATCH * STEPS, 8), jnp.float32),
        jax.random.normal(y_key, (BATCH * STEPS, 3), jnp.float32),
    )
    opt = optim.Adam(1e-2)
    state = train.TrainState.create(NET.init(init_key), opt, state_key)
    state, _ = train.fit(state, loss_fn, data, epochs=1, batch_size=BATCH, progress=False)
    assert int(state.step) == STEPS
    return state


def train_and_save(path: str, seed: int) -> None:
    """What each child process runs: train, then write the weights."""
    save_weights(path, NET, trained(seed).params)


# The child configures JAX as tests/conftest.py does, so all three runs compute alike.
CHILD = textwrap.dedent(
    """
    import sys
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    sys.path.insert(0, sys.argv[1])
    from test_determinism import train_and_save

    train_and_save(sys.argv[2], int(sys.argv[3]))
    """
)


def leaf_bytes(tree) -> list[bytes]:
    """The raw bytes of every leaf; a typed PRNG key's are those of its key data."""
    raw = lambda a: jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a  # noqa: E731
    return [np.asarray(raw(leaf)).tobytes() for leaf in jax.tree.leaves(tree)]


def test_same_seed_same_bits_in_one_process():
    first, second = trained(0), trained(0)
    assert leaf_bytes(first.params) == leaf_bytes(second.params)
    assert leaf_bytes(first.opt_state) == leaf_bytes(second.opt_state)
    assert leaf_bytes(trained(1).params) != leaf_bytes(first.params)


def test_same_seed_same_bits_across_processes(tmp_path):
    tests_dir = str(Path(__file__).parent)
    paths = [tmp_path / f"run{i}.safetensors" for i in range(2)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, tests_dir, str(path), "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in paths
    ]
    try:
        for child in children:
            _, err = child.communicate(timeout=600)
            assert child.returncode == 0, err
    finally:
        for child in children:
            child.kill()  # no-op for a child that has exited
    here = tmp_path / "here.safetensors"
    save_weights(here, NET, trained(0).params)
    assert paths[0].read_bytes() == paths[1].read_bytes() == here.read_bytes()


# ------------------------------------------------------------------ non-finite steps

NET64 = nn.MLP(4, [8], 2, dtype=jnp.float64)


def data64(rng, n=32):
    return rng.standard_normal((n, 4)), rng.standard_normal((n, 2))


def mse64(params, batch):
    x, y = batch[:2]
    return jnp.mean((NET64.apply(params, x) - y) ** 2)


def fresh(opt, seed=0):
    return train.TrainState.create(NET64.init(jax.random.key(seed)), opt, jax.random.key(0))


def all_finite(tree) -> bool:
    return all(bool(np.isfinite(leaf).all()) for leaf in jax.tree.leaves(tree))


def test_inf_loss_stops_naming_the_step(rng):
    x, y = data64(rng)
    y[2 * BATCH + 3] = np.inf  # batch 2's loss is inf
    opt = optim.Adam(1e-2)
    match = r"the first non-finite loss, inf, is at step 2 \(batch 2 of epoch 1\)"
    with pytest.raises(train.NonFiniteLossError, match=match) as info:
        train.fit(
            fresh(opt),
            mse64,
            (x, y),
            epochs=1,
            batch_size=BATCH,
            shuffle=False,
            progress=False,
        )
    assert int(info.value.state.step) == 2
    assert all_finite(info.value.state.params)
    found = train.find_nonfinite_step(train.train_step(mse64), info.value.state, (x, y),
                                      info.value.index_batches)  # fmt: skip
    assert found.index == 0 and np.isposinf(found.loss) and int(found.state.step) == 2


def test_skipped_inf_step_equals_training_without_that_batch(rng):
    x, y = data64(rng)
    clean_x, clean_y = np.delete(x, np.s_[8:16], 0), np.delete(y, np.s_[8:16], 0)
    y[BATCH + 1] = -np.inf  # batch 1's loss is inf
    opt = optim.Adam(1e-2)
    skipped, history = train.fit(
        fresh(opt),
        mse64,
        (x, y),
        epochs=1,
        batch_size=BATCH,
        nan_policy="skip",
        shuffle=False,
        progress=False,
    )
    assert np.isposinf(history["step_loss"][1]) and int(skipped.step) == 3
    loop = jax.jit(train.train_loop(train.train_step(mse64)), donate_argnums=0)
    clean, _ = loop(
        fresh(opt), (jnp.asarray(clean_x), jnp.asarray(clean_y)), np.arange(24).reshape(3, 8)
    )
    # Adam's moments and count skip the dropped step too, so the states agree throughout.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15),
        (skipped.params, skipped.opt_state, skipped.step),
        (clean.params, clean.opt_state, clean.step),
    )


def gated_loss(params, batch):
    """MSE plus ``sqrt(|b * gate|)``: at ``gate = 0`` the loss is finite, its gradient NaN."""
    x, y, gate = batch
    penalty = jnp.sqrt(jnp.abs(params["0"]["bias"][0] * jnp.min(gate)))
    return mse64(params, (x, y)) + penalty


@pytest.mark.parametrize("nan_policy", ["stop", "skip"])
def test_nan_gradient_behind_a_finite_loss_never_reaches_the_params(rng, nan_policy):
    """``fit`` promises that a stopped run's state holds the last finite parameters."""
    x, y = data64(rng)
    gate = np.ones(len(x))
    gate[BATCH : 2 * BATCH] = 0.0  # batch 1: finite loss, NaN gradient
    opt = optim.SGD(0.01)
    state = fresh(opt)
    grads = jax.grad(gated_loss)(state.params, (x[8:16], y[8:16], gate[8:16]))
    assert np.isfinite(gated_loss(state.params, (x[8:16], y[8:16], gate[8:16])))
    assert not all_finite(grads)
    try:
        state, _ = train.fit(
            state,
            gated_loss,
            (x, y, gate),
            epochs=1,
            batch_size=BATCH,
            nan_policy=nan_policy,
            shuffle=False,
            progress=False,
        )
    except train.NonFiniteLossError as error:
        assert nan_policy == "stop"
        state = error.state
    assert all_finite(state.params), "a NaN gradient reached the parameters"


def test_step_function_drops_a_non_finite_step_whole(rng):
    """``train_step(nan_policy="skip")``: a non-finite step changes nothing, the next runs.

    The default ``"stop"`` step is unguarded: the caller sees the NaN loss."""
    x, y = data64(rng)
    opt = optim.Adam(1e-2)
    bad_y = y[8:16].copy()
    bad_y[0] = np.nan
    _, metrics = jax.jit(train.train_step(mse64))(fresh(opt), (x[8:16], bad_y))
    assert np.isnan(metrics["loss"]) and "finite" not in metrics
    step = jax.jit(train.train_step(mse64, nan_policy="skip"), donate_argnums=0)
    state, _ = step(fresh(opt), (x[:8], y[:8]))
    before = leaf_bytes(state)
    state, metrics = step(state, (x[8:16], bad_y))
    assert np.isnan(metrics["loss"])
    assert leaf_bytes(state) == before  # params, Adam's moments and count, step, key
    state, _ = step(state, (x[16:24], y[16:24]))

    skip_loop = train.train_loop(train.train_step(mse64, nan_policy="skip"))
    expected, _ = jax.jit(skip_loop, donate_argnums=0)(
        fresh(opt),
        (jnp.asarray(x), jnp.asarray(np.where(np.arange(32)[:, None] == 8, np.nan, y))),
        np.arange(24).reshape(3, 8),
    )
    assert int(state.step) == int(expected.step) == 2
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15),
        state.params,
        expected.params,
    )


def test_a_stopped_runs_state_can_be_checkpointed(rng, tmp_path):
    x, y = data64(rng)
    x[3 * BATCH] = np.nan
    opt = optim.Adam(1e-2)
    with pytest.raises(train.NonFiniteLossError) as info:
        train.fit(
            fresh(opt),
            mse64,
            (x, y),
            epochs=1,
            batch_size=BATCH,
            shuffle=False,
            progress=False,
        )
    path = tmp_path / "last-good.safetensors"
    save_state(path, info.value.state)
    restored = load_state(path, like=fresh(opt))
    assert leaf_bytes(restored.params) == leaf_bytes(info.value.state.params)
    assert int(restored.step) == 3
