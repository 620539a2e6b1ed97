"""Train step, compiled loop, NaN policy, evaluate and fit against a hand-written torch loop.

``train.train_step`` and ``train.train_loop`` return functions to compile; the tests
compile them as the documentation does, ``jax.jit(..., donate_argnums=0)``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnet import nn, optim, train

NET = nn.MLP(6, [16], 3, dtype=jnp.float64)


def mse_loss(params, batch):
    x, y = batch
    return jnp.mean((NET.apply(params, x) - y) ** 2)


def torch_net():
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    ).double()


@pytest.fixture
def data(rng):
    return rng.standard_normal((64, 6)), rng.standard_normal((64, 3))


def compiled_step(loss_fn, **kwargs):
    """The documented one-step recipe: the pure step, jitted with its state donated."""
    return jax.jit(train.train_step(loss_fn, **kwargs), donate_argnums=0)


def compiled_loop(loss_fn, **kwargs):
    """The documented many-steps recipe: the loop over the pure step, jitted, donated."""
    return jax.jit(train.train_loop(train.train_step(loss_fn, **kwargs)), donate_argnums=0)


def leaf_bytes(tree) -> list[bytes]:
    """The raw bytes of every leaf; a typed PRNG key's are those of its key data."""
    raw = lambda a: jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a  # noqa: E731
    return [np.asarray(raw(leaf)).tobytes() for leaf in jax.tree.leaves(tree)]


def torch_sgd_losses(t_net, x, y, index_batches, lr=0.05, momentum=0.9):
    opt = torch.optim.SGD(t_net.parameters(), lr=lr, momentum=momentum)
    losses = []
    for idx in index_batches:
        loss = torch.nn.functional.mse_loss(t_net(torch.tensor(x[idx])), torch.tensor(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_step_and_loop_equal_torch_sgd_momentum(data):
    x, y = data
    t_net = torch_net()
    params = NET.load_state_dict(t_net.state_dict()).params
    order = np.arange(64).reshape(8, 8)[::-1]
    opt = optim.SGD(0.05, momentum=0.9)

    step = compiled_step(mse_loss)
    state = train.TrainState.create(params, opt, jax.random.key(0))
    step_losses = []
    for idx in order:
        state, metrics = step(state, (x[idx], y[idx]))
        step_losses.append(float(metrics["loss"]))

    loop = compiled_loop(mse_loss)
    state2 = train.TrainState.create(params, opt, jax.random.key(0))
    state2, metrics = loop(state2, (jnp.asarray(x), jnp.asarray(y)), jnp.asarray(order))

    expected = torch_sgd_losses(t_net, x, y, order)
    np.testing.assert_allclose(step_losses, expected, rtol=1e-12)
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-12)
    final = NET.state_dict(state2.params)
    for name, value in t_net.state_dict().items():
        np.testing.assert_allclose(final[name], value.numpy(), rtol=1e-11, atol=1e-13)
    assert int(state.step) == int(state2.step) == 8


def test_jitted_step_equals_eager(data):
    x, y = data
    opt = optim.Adam(1e-2)
    params = NET.init(jax.random.key(1))
    state = train.TrainState.create(params, opt, jax.random.key(0))
    jitted, _ = jax.jit(train.train_step(mse_loss))(state, (x[:8], y[:8]))
    state = train.TrainState.create(params, opt, jax.random.key(0))
    with jax.disable_jit():
        eager, _ = train.train_step(mse_loss)(state, (x[:8], y[:8]))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15),
        jitted.params,
        eager.params,
    )


def test_step_donates_its_state(data):
    x, y = data
    opt = optim.SGD(0.1)
    state = train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0))
    old_weight = state.params["0"]["weight"]
    compiled_step(mse_loss)(state, (x[:8], y[:8]))
    assert old_weight.is_deleted()


def poisoned(x, y, bad_batch, batch_size=8):
    x = x.copy()
    x[bad_batch * batch_size] = np.nan
    return jnp.asarray(x), jnp.asarray(y)


def test_nan_stop_keeps_the_state_before_the_failing_call_and_names_the_step(data):
    """Calls of 3 steps (0-2, 3-5, 6-7); batch 4 is poisoned, so the call of steps 3-5
    fails. The error holds the state before that call, bit for bit a clean run of 3
    steps, and that call's batches; ``find_nonfinite_step`` replays them to step 4 and
    returns the state before it, bit for bit a clean run of 4 steps."""
    x, y = data
    opt = optim.SGD(0.05, momentum=0.9)
    params = NET.init(jax.random.key(0))
    state = train.TrainState.create(params, opt, jax.random.key(0))
    bad = poisoned(x, y, 4)
    message = (
        r"fit: a non-finite value in steps 3-5: the first non-finite loss, nan, is at step 4 "
        r"\(batch 4 of epoch 1\)"
    )
    with pytest.raises(train.NonFiniteLossError, match=message) as info:
        train.fit(state, mse_loss, bad, epochs=1, batch_size=8, steps_per_call=3,
                  progress=False, shuffle=False)  # fmt: skip
    error = info.value
    order = np.arange(64).reshape(8, 8)
    np.testing.assert_array_equal(error.index_batches, order[3:6])
    assert int(error.state.step) == 3 and int(error.state.epoch) == 0
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(error.state.params))

    def clean_run(steps):
        clean = train.TrainState.create(params, opt, jax.random.key(0))
        clean, _ = compiled_loop(mse_loss)(
            clean, (jnp.asarray(x), jnp.asarray(y)), jnp.asarray(order[:steps])
        )
        return clean

    assert leaf_bytes(error.state) == leaf_bytes(clean_run(3))

    found = train.find_nonfinite_step(train.train_step(mse_loss), error.state, bad,
                                      error.index_batches)  # fmt: skip
    assert isinstance(found, train.NonFiniteStep)
    assert found.index == 1 and np.isnan(found.loss)  # step 3 + 1
    assert int(found.state.step) == 4
    assert leaf_bytes(found.state) == leaf_bytes(clean_run(4))
    # The replay donated nothing: the error's state is still readable.
    assert leaf_bytes(error.state) == leaf_bytes(clean_run(3))


def test_find_nonfinite_step_returns_none_on_a_clean_replay(data):
    x, y = data
    opt = optim.SGD(0.05, momentum=0.9)
    state = train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0))
    order = np.arange(64).reshape(8, 8)[::-1]
    step = train.train_step(mse_loss)
    assert train.find_nonfinite_step(step, state, (jnp.asarray(x), jnp.asarray(y)), order) is None
    assert int(state.step) == 0  # read after the replay: nothing was donated


def test_find_nonfinite_step_finds_parameters_made_non_finite_by_a_finite_loss(data):
    """A loss whose gradient is NaN where the loss is finite: the replay stops at the first
    step whose updated parameters are not finite, and reports its finite loss."""
    x, y = data
    opt = optim.SGD(0.05)
    state = train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0))

    def gated(params, batch):
        x, y, gate = batch
        return mse_loss(params, (x, y)) + jnp.sqrt(jnp.abs(params["0"]["bias"][0] * jnp.min(gate)))

    gate = np.ones(64)
    gate[5 * 8 : 6 * 8] = 0.0  # batch 5: finite loss, NaN gradient
    order = np.arange(64).reshape(8, 8)
    found = train.find_nonfinite_step(
        train.train_step(gated), state, (jnp.asarray(x), jnp.asarray(y), gate), order[2:]
    )
    assert found.index == 3 and np.isfinite(found.loss)  # batch 2 + 3
    assert int(found.state.step) == 3  # replayed from step 0, starting at batch 2
    replayed, _ = compiled_loop(gated)(
        train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0)),
        (jnp.asarray(x), jnp.asarray(y), gate), order[2:5],
    )  # fmt: skip
    assert leaf_bytes(found.state) == leaf_bytes(replayed)


def test_nan_skip_drops_only_that_update(data, capsys):
    x, y = data
    opt = optim.SGD(0.05)
    state = train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0))
    state, history = train.fit(
        state,
        mse_loss,
        poisoned(x, y, 2),
        epochs=1,
        batch_size=8,
        nan_policy="skip",
        progress=False,
        shuffle=False,
    )
    assert int(state.step) == 7
    assert np.isnan(history["step_loss"][2]) and np.isfinite(history["step_loss"][3:]).all()
    assert "loss is nan at step 2" in capsys.readouterr().err
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))


def test_fit_learns_and_reports(data):
    x, y = data
    x, y = jnp.asarray(x), jnp.asarray(x[:, :3] * 2.0)  # a learnable target
    opt = optim.Adam(1e-2)
    state = train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0))

    def metric_fn(params, batch):
        return {"mse": jnp.mean((NET.apply(params, batch[0]) - batch[1]) ** 2, axis=1)}

    state, history = train.fit(
        state,
        mse_loss,
        (x, y),
        epochs=30,
        batch_size=16,
        metric_fn=metric_fn,
        eval_data=(x, y),
        progress=False,
    )
    assert len(history["step_loss"]) == 30 * 4 and int(state.step) == 120
    assert history["epoch_loss"][-1] < 0.2 * history["epoch_loss"][0]
    full = float(jnp.mean((NET.apply(state.params, x) - y) ** 2))
    np.testing.assert_allclose(history["eval"][-1]["mse"], full, rtol=1e-10)
    assert history["compile_seconds"] > 0 and history["train_seconds"] > 0


def test_evaluate_counts_every_example_once(rng):
    x = rng.standard_normal(10)
    result = train.evaluate(lambda p, b: {"v": b * p}, 2.0, x, batch_size=3)
    np.testing.assert_allclose(result["v"], np.mean(2.0 * x), rtol=1e-12)


def test_evaluate_takes_any_mapping_of_metrics(rng):
    from flax.core import FrozenDict

    x = rng.standard_normal(10)
    result = train.evaluate(lambda p, b: FrozenDict({"v": b * p}), 2.0, x, batch_size=4)
    np.testing.assert_allclose(result["v"], np.mean(2.0 * x), rtol=1e-12)


def test_bad_arguments_raise(data):
    opt = optim.SGD(0.1)
    state = train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0))
    with pytest.raises(ValueError, match="nan_policy='ignore' is not one of"):
        train.train_step(mse_loss, nan_policy="ignore")
    with pytest.raises(ValueError, match="nan_policy='ignore' is not one of"):
        train.fit(state, mse_loss, data, epochs=1, batch_size=8, nan_policy="ignore")
    with pytest.raises(ValueError, match="batch_size=100 is larger than the data set"):
        train.fit(state, mse_loss, data, epochs=1, batch_size=100, progress=False)


def full_batch_loop(loss_fn, unroll=1, **kwargs):
    """The documented full-batch recipe: ``steps`` is static."""
    loop = train.train_loop(train.train_step(loss_fn, **kwargs), unroll=unroll)
    return jax.jit(loop, donate_argnums=0, static_argnames="steps")


@pytest.mark.parametrize("unroll", [1, 7, True])
@pytest.mark.parametrize("steps", [50, 301], ids=["one-block", "blocks-and-tail"])
def test_full_batch_loop_equals_torch_gradient_descent(steps, unroll, rng):
    """Seed 001's regression: full-batch GD on w, b, the same trajectory as torch's
    (301 steps run as two blocks of 101 and a tail of 99)."""
    x = rng.uniform(-1, 1, (100, 1))
    y = 2.0 * x + 1.0 + 0.1 * rng.standard_normal((100, 1))
    layer = nn.Linear(1, 1, dtype=jnp.float64)
    zeros = {"weight": jnp.zeros((1, 1)), "bias": jnp.zeros(1)}
    opt = optim.SGD(0.1)
    loop = full_batch_loop(lambda p, b: jnp.mean((layer.apply(p, b[0]) - b[1]) ** 2), unroll)
    state, metrics = loop(train.TrainState.create(zeros, opt, jax.random.key(0)), (x, y),
                          steps=steps)  # fmt: skip

    w, b = (torch.zeros(1, dtype=torch.float64, requires_grad=True) for _ in range(2))
    tx, ty, losses = torch.tensor(x), torch.tensor(y), []
    for _ in range(steps):
        loss = ((w * tx + b - ty) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= 0.1 * w.grad
            b -= 0.1 * b.grad
        w.grad.zero_()
        b.grad.zero_()
        losses.append(loss.item())
    assert metrics["loss"].shape == (steps,) and int(state.step) == steps
    np.testing.assert_allclose(metrics["loss"], losses, rtol=1e-12)
    np.testing.assert_allclose(state.params["weight"][0, 0], w.item(), rtol=1e-12)
    np.testing.assert_allclose(state.params["bias"][0], b.item(), rtol=1e-12)


@pytest.mark.parametrize("steps", [1, 131], ids=["one-step", "block-and-tail"])
def test_full_batch_loop_equals_separate_steps(data, steps):
    """``loop(state, data, steps=n)`` is n compiled steps on all of ``data``: the same
    state and the same per-step metrics (aux included) as calling the step n times
    (131 steps run as one block of 66 and a tail of 65)."""
    x, y = (jnp.asarray(a) for a in data)
    opt = optim.Adam(1e-2)
    params = NET.init(jax.random.key(2))

    def loss_with_aux(params, batch):
        out = NET.apply(params, batch[0])
        return jnp.mean((out - batch[1]) ** 2), {"mean_out": jnp.mean(out)}

    state, metrics = full_batch_loop(loss_with_aux, has_aux=True)(
        train.TrainState.create(params, opt, jax.random.key(0)), (x, y), steps=steps
    )
    step = compiled_step(loss_with_aux, has_aux=True)
    alone = train.TrainState.create(params, opt, jax.random.key(0))
    expected = {"loss": [], "mean_out": []}
    for _ in range(steps):
        alone, step_metrics = step(alone, (x, y))
        for name, value in step_metrics.items():
            expected[name].append(float(value))
    assert int(state.step) == int(alone.step) == steps
    for name, values in expected.items():
        assert metrics[name].shape == (steps,)
        np.testing.assert_allclose(metrics[name], values, rtol=1e-12)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15),
        (state.params, state.opt_state),
        (alone.params, alone.opt_state),
    )


def test_train_loop_takes_index_batches_or_steps(data):
    x, y = (jnp.asarray(a) for a in data)
    opt = optim.SGD(0.1)
    state = train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0))
    loop = train.train_loop(train.train_step(mse_loss))
    message = r"train_loop: give either index_batches or steps \(full batch\)"
    with pytest.raises(TypeError, match=message):
        loop(state, (x, y))
    with pytest.raises(TypeError, match=message):
        loop(state, (x, y), jnp.arange(16).reshape(2, 8), steps=2)
    with pytest.raises(TypeError, match=message):
        jax.jit(loop, static_argnames="steps")(state, (x, y))
    for steps, error in ((0, ValueError), (-3, ValueError), (2.5, TypeError), ("2", TypeError)):
        with pytest.raises(error, match=f"train_loop: steps={steps!r} must be a positive int"):
            loop(state, (x, y), steps=steps)
    with pytest.raises(ValueError, match=r"train_loop: steps=0 must be a positive int"):
        full_batch_loop(mse_loss)(state, (x, y), steps=0)
    assert int(state.step) == 0  # nothing ran, nothing was donated
    for unroll, error in ((0, ValueError), (2.5, TypeError), (False, TypeError)):
        with pytest.raises(error, match=f"train_loop: unroll={unroll!r} must be a positive int"):
            train.train_loop(train.train_step(mse_loss), unroll=unroll)


def test_the_optimiser_is_a_static_field_of_the_state():
    """``tx`` travels with the state but is no leaf: transforms and checkpoints see only
    arrays, and a mapped state keeps the very same optimiser."""
    opt = optim.SGD(0.1, momentum=0.9)
    state = train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0))
    assert state.tx is opt
    leaves = jax.tree.leaves(state)
    assert not any(callable(leaf) for leaf in leaves)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    expected = len(jax.tree.leaves((state.params, state.opt_state))) + 3  # step, key, epoch
    assert len(leaves) == expected
    mapped = jax.tree.map(lambda a: a, state)
    assert mapped.tx is state.tx
    # A new optimiser is a new static value: jit compiles the state's update anew.
    other = state.replace(tx=optim.SGD(0.5))
    assert jax.tree.structure(other) != jax.tree.structure(state)


def test_data_arrays_of_different_lengths_are_refused(data):
    x, y = data
    opt = optim.SGD(0.1)
    state = train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0))
    with pytest.raises(ValueError, match=r"fit: train_data: every data array needs the same "
                       r"number of examples on axis 0, got shapes \{'\[0\]': \(64, 6\), "
                       r"'\[1\]': \(60, 3\)\}"):  # fmt: skip
        train.fit(state, mse_loss, (x, y[:60]), epochs=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match=r"fit: eval_data: every data array .*\(60, 3\)"):
        train.fit(state, mse_loss, (x, y), epochs=1, batch_size=8, progress=False,
                  metric_fn=lambda p, b: {"v": b[0][:, 0]}, eval_data=(x, y[:60]))  # fmt: skip
    with pytest.raises(ValueError, match="evaluate: every data array"):
        train.evaluate(lambda p, b: {"v": b[0][:, 0]}, None, (x, y[:60]))


def untraceable_loss(params, batch):
    raise AssertionError("the loss was traced: the check came after compiling")


def per_example_mse(params, batch):
    return {"mse": jnp.mean((NET.apply(params, batch[0]) - batch[1]) ** 2, axis=1)}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 1.5}, TypeError, r"fit: epochs=1\.5 must be a positive int"),
        ({"epochs": "2"}, TypeError, r"fit: epochs='2' must be a positive int"),
        ({"epochs": 0}, ValueError, r"fit: epochs=0 must be a positive int"),
        ({"batch_size": 2.0}, TypeError, r"fit: batch_size=2\.0 must be a positive int"),
        ({"batch_size": -8}, ValueError, r"fit: batch_size=-8 must be a positive int"),
        (
            {"metric_fn": per_example_mse},
            ValueError,
            r"fit: metric_fn was given without eval_data; evaluation needs both",
        ),
        (
            {"eval_data": "data"},
            ValueError,
            r"fit: eval_data was given without metric_fn; evaluation needs both",
        ),
        (
            {
                "metric_fn": lambda p, b: {"mse": per_example_mse(p, b)["mse"].mean()},
                "eval_data": "data",
            },
            ValueError,
            r"fit: metric 'mse' must hold one value per example, shape \(64,\) for a batch of "
            r"64, got shape \(\)",
        ),
    ],
)
def test_fit_checks_arguments_before_compiling(data, kwargs, error, match):
    """Each bad argument raises before the loss is traced, and the state is left intact.
    ``"data"`` stands for the data fixture."""
    opt = optim.SGD(0.1)
    state = train.TrainState.create(NET.init(jax.random.key(0)), opt, jax.random.key(0))
    kwargs = {name: data if value == "data" else value for name, value in kwargs.items()}
    kwargs = {"epochs": 1, "batch_size": 8, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        train.fit(state, untraceable_loss, data, **kwargs)
    assert all(not leaf.is_deleted() for leaf in jax.tree.leaves(state.params))  # not donated


@pytest.mark.parametrize(
    ("metric_fn", "batch_size", "error", "match"),
    [
        (per_example_mse, 0, ValueError, r"evaluate: batch_size=0 must be a positive int"),
        (per_example_mse, -1, ValueError, r"evaluate: batch_size=-1 must be a positive int"),
        (per_example_mse, 2.0, TypeError, r"evaluate: batch_size=2\.0 must be a positive int"),
        (
            lambda p, b: {"mse": per_example_mse(p, b)["mse"].mean()},
            10,
            ValueError,
            r"evaluate: metric 'mse' must hold one value per example, shape \(10,\) for a "
            r"batch of 10, got shape \(\)",
        ),
        (
            lambda p, b: {"out": NET.apply(p, b[0])},
            10,
            ValueError,
            r"evaluate: metric 'out' .* got shape \(10, 3\)",
        ),
        (
            lambda p, b: per_example_mse(p, b)["mse"],
            10,
            TypeError,
            r"evaluate: metric_fn must return a dict \{name: \(B,\) per-example values\}, "
            r"got an array",
        ),
    ],
)
def test_evaluate_checks_batch_size_and_metric_shapes(data, metric_fn, batch_size, error, match):
    params = NET.init(jax.random.key(0))
    with pytest.raises(error, match=match):
        train.evaluate(metric_fn, params, data, batch_size=batch_size)


def test_an_unrolled_loop_compiles_without_a_while_loop(data):
    """``train_loop(step, unroll=True)`` is straight-line steps: lax.scan(unroll=True)
    would leave a one-trip while loop, and XLA's CPU backend runs convolutions in a loop
    body about 12x slower. The metrics are still stacked over the steps."""
    x, y = (jnp.asarray(a) for a in data)
    state = train.TrainState.create(NET.init(jax.random.key(0)), optim.SGD(0.1), jax.random.key(0))
    index_batches = jnp.arange(16).reshape(2, 8)
    unrolled = jax.jit(train.train_loop(train.train_step(mse_loss), unroll=True))
    looped = jax.jit(train.train_loop(train.train_step(mse_loss)))

    def has_while(fn) -> bool:  # an HLO while instruction, not a name that contains it
        return " while(" in fn.lower(state, (x, y), index_batches).compile().as_text()

    assert not has_while(unrolled) and has_while(looped)
    (a, ma), (b, mb) = unrolled(state, (x, y), index_batches), looped(state, (x, y), index_batches)
    assert ma["loss"].shape == (2,)
    np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-12)
    jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-12), a.params, b.params)
