"""Resumed training is uninterrupted training: ``fit`` continues from ``state.epoch``.

* Three ``fit(epochs=1)`` calls train on three different batch orders, epoch ``e`` on
  ``datasets.batch_order(fold_in(key, e), ...)`` (the documented order): against torch
  SGD fed those batches, and bit for bit equal to one ``fit(epochs=3)``.
* ``fit(epochs=1)`` -> ``checkpoint.save_state`` -> ``load_state`` -> ``fit(epochs=1)``,
  each half in its own Python process, writes the very bytes ``fit(epochs=2)`` writes in
  a third process: for a plain MLP (Adam) and for a model with BatchNorm and Dropout,
  whose running statistics, step keys and epoch counter travel in the checkpoint.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnet import checkpoint, datasets, nn, optim, train
from jaxnet.nn import functional as F

NET64 = nn.MLP(6, [16], 3, dtype=jnp.float64)


def mse64(params, batch):
    return F.mse_loss(NET64.apply(params, batch[0]), batch[1])


def fit_quietly(state, *args, **kwargs):
    """``train.fit`` without progress output or the dropped-batch warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train.fit(state, *args, progress=False, **kwargs)


def test_three_one_epoch_fits_train_on_three_orders_as_torch_does(rng):
    x, y = rng.standard_normal((68, 6)), rng.standard_normal((68, 3))  # 4 dropped per epoch
    opt = optim.SGD(0.05, momentum=0.9)
    params, key = NET64.init(jax.random.key(0)), jax.random.key(7)
    state = train.TrainState.create(params, opt, key)
    losses = []
    for epoch in range(3):
        state, history = fit_quietly(state, mse64, (x, y), epochs=1, batch_size=8)
        assert int(state.epoch) == epoch + 1 and int(state.step) == 8 * (epoch + 1)
        losses += history["step_loss"]

    # The orders the documentation promises: one permutation per epoch, all different.
    orders = [
        np.stack(datasets.batch_order(jax.random.fold_in(key, e), 68, 8, drop_last=True))
        for e in range(3)
    ]
    for e, order in enumerate(orders):
        np.testing.assert_array_equal(train.epoch_batch_order(key, e, 68, 8), order)
    assert len({order.tobytes() for order in orders}) == 3

    twin = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    ).double()
    twin.load_state_dict(
        {k: torch.from_numpy(v.copy()) for k, v in NET64.state_dict(params).items()}
    )
    torch_opt = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    expected = []
    for idx in np.concatenate(orders):
        loss = torch.nn.functional.mse_loss(
            twin(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])
        )
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()
        expected.append(loss.item())
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    final = NET64.state_dict(state.params)
    for name, value in twin.state_dict().items():
        np.testing.assert_allclose(final[name], value.numpy(), rtol=1e-11, atol=1e-13)

    at_once, _ = fit_quietly(
        train.TrainState.create(params, opt, key), mse64, (x, y), epochs=3, batch_size=8
    )
    assert leaf_bytes(at_once) == leaf_bytes(state)


# ------------------------------------------------------------ across processes

MODELS = {
    "mlp": nn.MLP(8, [16], 3),
    "batchnorm_dropout": nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3)
    ),
}
OPT = optim.Adam(1e-2)


def _stateless_loss(params, batch):
    return F.mse_loss(MODELS["mlp"].apply(params, batch[0]), batch[1])


def _stateful_loss(params, buffers, batch, key):
    y, buffers = MODELS["batchnorm_dropout"].apply(params, batch[0], buffers=buffers, key=key)
    return F.mse_loss(y, batch[1]), buffers


def fresh(name: str) -> train.TrainState:
    net = MODELS[name]
    return train.TrainState.create(
        net.init(jax.random.key(0)), OPT, jax.random.key(1), net.init_buffers()
    )


def fit_epochs(state: train.TrainState, name: str, epochs: int) -> train.TrainState:
    """Adam on 84 shuffled examples (10 batches of 8, 4 dropped), 3 chunks per epoch."""
    x_key, y_key = jax.random.split(jax.random.key(2))
    data = (
        jax.random.normal(x_key, (84, 8), jnp.float32),
        jax.random.normal(y_key, (84, 3), jnp.float32),
    )
    has_state = name != "mlp"
    loss_fn = _stateful_loss if has_state else _stateless_loss
    state, _ = fit_quietly(
        state, loss_fn, data, epochs=epochs, batch_size=8, has_state=has_state,
        chunks_per_epoch=3,
    )  # fmt: skip
    return state


def run(task: str, folder: str, resume_from: str = "") -> None:
    """What each child process runs, for every model: ``first`` (epoch 1), ``resume``
    (epoch 2 from the first's file in ``resume_from``) or ``both`` (epochs 1 and 2 in one
    call); writes ``folder/<model>.safetensors``."""
    for name in MODELS:
        if task == "resume":
            like = fresh(name)
            state = checkpoint.load_state(Path(resume_from, f"{name}.safetensors"), like=like)
            state = fit_epochs(state, name, 1)
        else:
            state = fit_epochs(fresh(name), name, 2 if task == "both" else 1)
        checkpoint.save_state(Path(folder, f"{name}.safetensors"), state)


# The child configures JAX as tests/conftest.py does.
CHILD = textwrap.dedent(
    """
    import sys
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    sys.path.insert(0, sys.argv[1])
    from test_train_resume import run

    run(*sys.argv[2:])
    """
)


def run_children(*argument_lists: list[str]) -> None:
    """Run one child process per argument list, all at once; fail with their stderr."""
    tests_dir = str(Path(__file__).parent)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, tests_dir, *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arguments in argument_lists
    ]
    try:
        for child in children:
            _, err = child.communicate(timeout=600)
            assert child.returncode == 0, err[-4000:]
    finally:
        for child in children:
            child.kill()  # no-op for a child that has exited


def leaf_bytes(tree) -> list[bytes]:
    """The raw bytes of every leaf; a typed PRNG key's are those of its key data."""
    raw = lambda a: jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a  # noqa: E731
    return [np.asarray(raw(leaf)).tobytes() for leaf in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def child_runs(tmp_path_factory) -> dict[str, Path]:
    """The folders the three children wrote: ``first`` and ``both`` ran at once, then
    ``resume`` from ``first``'s files."""
    folders = {task: tmp_path_factory.mktemp(task) for task in ("first", "both", "resumed")}
    run_children(["first", str(folders["first"])], ["both", str(folders["both"])])
    run_children(["resume", str(folders["resumed"]), str(folders["first"])])
    return folders


@pytest.mark.parametrize("name", sorted(MODELS))
def test_resumed_in_another_process_equals_uninterrupted_bit_for_bit(child_runs, name, tmp_path):
    first, resumed, both = (child_runs[task] / f"{name}.safetensors"
                            for task in ("first", "resumed", "both"))  # fmt: skip
    assert resumed.read_bytes() == both.read_bytes()

    state = checkpoint.load_state(both, like=fresh(name))
    assert (int(state.epoch), int(state.step)) == (2, 20)
    halfway = checkpoint.load_state(first, like=fresh(name))
    assert (int(halfway.epoch), int(halfway.step)) == (1, 10)
    assert leaf_bytes(halfway.params) != leaf_bytes(state.params)
    if name == "batchnorm_dropout":
        tracked = state.buffers["1"]["num_batches_tracked"]
        assert int(tracked) == 20 and int(halfway.buffers["1"]["num_batches_tracked"]) == 10
    # And this process computes the same bytes as the children.
    here = tmp_path / "here.safetensors"
    checkpoint.save_state(here, fit_epochs(fresh(name), name, 2))
    assert here.read_bytes() == both.read_bytes()
