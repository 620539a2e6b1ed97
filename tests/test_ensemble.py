"""A vmapped ensemble / learning-rate sweep equals its members trained one by one, and
torch's optimisers run one member at a time.

The ensemble is the documented recipe: ``ensemble.create`` with one
``optax.inject_hyperparams`` optimiser and per-member values, trained by
``jax.jit(ensemble.train_loop(train.train_step(loss_fn)), donate_argnums=0)``, each member
on its own index batches (the same ones broadcast, or its own order).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxnet import ensemble, nn, optim, train

NET = nn.MLP(6, [16], 3, dtype=jnp.float64)


def loss_fn(params, batch):
    return jnp.mean((NET.apply(params, batch[0]) - batch[1]) ** 2)


def sweep_opt():
    """jaxnet's SGD with its learning rate injected, so each member may have its own."""
    return optax.inject_hyperparams(optim.SGD)(lr=0.1, momentum=0.9)


def ensemble_loop(loss_fn, **kwargs):
    """The compiled ``ensemble.train_loop``, every member on the shared ``index_batches``."""
    loop = jax.jit(ensemble.train_loop(train.train_step(loss_fn, **kwargs)), donate_argnums=0)

    def run(states, data, index_batches):
        members = len(states.step)
        return loop(states, data, jnp.broadcast_to(index_batches, (members, *index_batches.shape)))

    return run


def alone_loop(loss_fn, **kwargs):
    return jax.jit(train.train_loop(train.train_step(loss_fn, **kwargs)), donate_argnums=0)


def member(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def torch_mlp() -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    ).double()


def torch_losses(model, opt, x, y, index_batches) -> list[float]:
    losses = []
    for idx in index_batches:
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_members_equal_separate_runs(rng):
    data = (jnp.asarray(rng.standard_normal((64, 6))), jnp.asarray(rng.standard_normal((64, 3))))
    index_batches = jnp.asarray(rng.permutation(64).reshape(8, 8))
    keys = jax.random.split(jax.random.key(0), 3)
    lrs = jnp.array([0.01, 0.05, 0.1])
    states = ensemble.create(NET, keys, sweep_opt(), {"lr": lrs})
    states, metrics = ensemble_loop(loss_fn)(states, data, index_batches)
    assert metrics["loss"].shape == (3, 8)
    for i in range(3):
        opt = optim.SGD(float(lrs[i]), momentum=0.9)
        alone = train.TrainState.create(NET.init(keys[i]), opt, keys[i])
        alone, m = alone_loop(loss_fn)(alone, data, index_batches)
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-12)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14),
                     member(states.params, i), alone.params)  # fmt: skip
    assert not np.allclose(metrics["loss"][0], metrics["loss"][2])


def test_members_equal_torch_runs(rng):
    """Each member of a learning-rate sweep against torch.optim.SGD from the same weights."""
    data = (rng.standard_normal((32, 6)), rng.standard_normal((32, 3)))
    index_batches = rng.permutation(32).reshape(4, 8)
    keys = jax.random.split(jax.random.key(1), 2)
    lrs = jnp.array([0.02, 0.2])
    states = ensemble.create(NET, keys, sweep_opt(), {"lr": lrs})
    start = jax.tree.map(np.asarray, states.params)
    states, metrics = ensemble_loop(loss_fn)(
        states, jax.tree.map(jnp.asarray, data), jnp.asarray(index_batches)
    )
    x, y = (torch.from_numpy(a) for a in data)
    for i, lr in enumerate(lrs.tolist()):
        model = torch_mlp()
        model.load_state_dict(
            {k: torch.from_numpy(v.copy()) for k, v in NET.state_dict(member(start, i)).items()}
        )
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        losses = torch_losses(model, opt, x, y, index_batches)
        np.testing.assert_allclose(metrics["loss"][i], losses, rtol=1e-12)
        ours = NET.state_dict(member(states.params, i))
        for name, value in model.state_dict().items():
            np.testing.assert_allclose(ours[name], value.numpy(), rtol=1e-11, atol=1e-14)


def test_an_injected_optax_optimiser_sweeps_learning_rate_and_momentum(rng):
    """The mechanism with optax's own SGD (``learning_rate`` and ``momentum`` both per
    member): each member equals a separate run and torch.optim.SGD with its values."""
    data = (rng.standard_normal((32, 6)), rng.standard_normal((32, 3)))
    index_batches = rng.permutation(32).reshape(4, 8)
    keys = jax.random.split(jax.random.key(3), 3)
    lrs, momenta = jnp.array([0.02, 0.05, 0.2]), jnp.array([0.0, 0.5, 0.9])
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    states = ensemble.create(NET, keys, opt, {"learning_rate": lrs, "momentum": momenta})
    np.testing.assert_array_equal(states.opt_state.hyperparams["learning_rate"], lrs)
    np.testing.assert_array_equal(states.opt_state.hyperparams["momentum"], momenta)
    start = jax.tree.map(np.asarray, states.params)
    states, metrics = ensemble_loop(loss_fn)(
        states, jax.tree.map(jnp.asarray, data), jnp.asarray(index_batches)
    )
    # The state held copies of the values: the donated loop left the caller's arrays alone.
    assert not lrs.is_deleted() and not momenta.is_deleted()
    x, y = (torch.from_numpy(a) for a in data)
    for i, (lr, momentum) in enumerate(zip(lrs.tolist(), momenta.tolist(), strict=True)):
        alone = train.TrainState.create(
            NET.init(keys[i]), optax.sgd(lr, momentum=momentum or None), keys[i]
        )
        alone, m = alone_loop(loss_fn)(
            alone, jax.tree.map(jnp.asarray, data), jnp.asarray(index_batches)
        )
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-12)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14),
                     member(states.params, i), alone.params)  # fmt: skip

        model = torch_mlp()
        model.load_state_dict(
            {k: torch.from_numpy(v.copy()) for k, v in NET.state_dict(member(start, i)).items()}
        )
        torch_opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        losses = torch_losses(model, torch_opt, x, y, index_batches)
        np.testing.assert_allclose(metrics["loss"][i], losses, rtol=1e-12)
        ours = NET.state_dict(member(states.params, i))
        for name, value in model.state_dict().items():
            np.testing.assert_allclose(ours[name], value.numpy(), rtol=1e-11, atol=1e-14)


def test_members_without_hyperparams_differ_by_key_only():
    """No ``hyperparams``: any optimiser, and member ``i`` is ``model.init(keys[i])`` with
    ``keys[i]`` as its training key."""
    keys = jax.random.split(jax.random.key(4), 3)
    opt = optim.Adam(1e-2)
    states = ensemble.create(NET, keys, opt)
    assert states.tx is opt and states.step.shape == (3,)
    for i in range(3):
        alone = train.TrainState.create(NET.init(keys[i]), opt, keys[i])
        jax.tree.map(np.testing.assert_array_equal,
                     member((states.params, states.opt_state), i),
                     (alone.params, alone.opt_state))  # fmt: skip
        np.testing.assert_array_equal(
            jax.random.key_data(states.key[i]), jax.random.key_data(keys[i])
        )


def test_create_refuses_bad_hyperparams():
    keys = jax.random.split(jax.random.key(0), 3)
    with pytest.raises(
        ValueError,
        match=r"ensemble.create: hyperparams\['lr'\] needs one value per member, a leading "
        r"axis of 3, got shape \(2,\)",
    ):
        ensemble.create(NET, keys, sweep_opt(), {"lr": jnp.array([0.1, 0.2])})
    with pytest.raises(ValueError, match=r"hyperparams\['lr'\] .* got shape \(\)"):
        ensemble.create(NET, keys, sweep_opt(), {"lr": 0.1})
    with pytest.raises(
        TypeError,
        match=r"ensemble.create: per-member hyperparams need an optimiser built with "
        r"optax.inject_hyperparams",
    ):
        ensemble.create(NET, keys, optim.SGD(0.1, momentum=0.9), {"lr": jnp.ones(3)})
    with pytest.raises(
        ValueError,
        match=r"ensemble.create: \['learning_rate'\] are not injected hyperparameters of the "
        r"optimiser; it has \[.*'lr', 'momentum'.*\]",
    ):
        ensemble.create(NET, keys, sweep_opt(), {"learning_rate": jnp.ones(3)})


BN_NET = nn.Sequential(
    nn.Linear(6, 16, dtype=jnp.float64),
    nn.BatchNorm1d(16, dtype=jnp.float64),
    nn.ReLU(),
    nn.Linear(16, 3, dtype=jnp.float64),
)


def bn_loss_fn(params, buffers, batch, key):
    y, buffers = BN_NET.apply(params, batch[0], buffers=buffers, key=key, training=True)
    return jnp.mean((y - batch[1]) ** 2), buffers


def test_batchnorm_members_equal_separate_runs_and_torch(rng):
    """Members carry their own running statistics: each equals a separate run and torch's
    ``BatchNorm1d`` in training mode from the same weights and batches (float64)."""
    data = (rng.standard_normal((32, 6)), rng.standard_normal((32, 3)))
    index_batches = rng.permutation(32).reshape(4, 8)
    keys = jax.random.split(jax.random.key(2), 3)
    lrs = jnp.array([0.01, 0.05, 0.2])
    states = ensemble.create(BN_NET, keys, sweep_opt(), {"lr": lrs})
    initial = BN_NET.init_buffers()
    for name, value in BN_NET.named_buffers(initial):
        stacked = dict(BN_NET.named_buffers(states.buffers))[name]
        np.testing.assert_array_equal(stacked, np.stack([value] * 3))
    start = jax.tree.map(np.asarray, states.params)
    loop = ensemble_loop(bn_loss_fn, has_state=True)
    states, metrics = loop(states, jax.tree.map(jnp.asarray, data), jnp.asarray(index_batches))
    x, y = (torch.from_numpy(a) for a in data)
    for i, lr in enumerate(lrs.tolist()):
        ours_i = member((states.params, states.buffers), i)
        opt = optim.SGD(lr, momentum=0.9)
        alone = train.TrainState.create(BN_NET.init(keys[i]), opt, keys[i], initial)
        alone, m = alone_loop(bn_loss_fn, has_state=True)(
            alone, jax.tree.map(jnp.asarray, data), jnp.asarray(index_batches)
        )
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-12)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14),
            ours_i,
            (alone.params, alone.buffers),
        )

        model = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
            torch.nn.Linear(16, 3),
        ).double()  # fmt: skip
        member_start = BN_NET.state_dict(member(start, i), initial)
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in member_start.items()})
        torch_opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        losses = torch_losses(model, torch_opt, x, y, index_batches)
        np.testing.assert_allclose(metrics["loss"][i], losses, rtol=1e-12)
        ours = BN_NET.state_dict(*ours_i)
        assert list(ours) == list(model.state_dict())
        for name, value in model.state_dict().items():
            np.testing.assert_allclose(ours[name], value.numpy(), rtol=1e-11, atol=1e-14)
        assert int(ours["1.num_batches_tracked"]) == 4
    running = np.asarray(states.buffers["1"]["running_mean"])
    assert not np.allclose(running[0], running[2])  # the members' statistics differ


def test_sweep_experiment_members_equal_their_twins(tmp_path):
    from experiments import ensemble_sweep

    report = ensemble_sweep.main(["--fast", "--out", str(tmp_path)])
    assert report["members"] == 4
    assert report["max_member_diff"] < 1e-5  # float32, vmapped vs alone
    assert report["speedup"] > 0  # printed, never asserted against a target


@pytest.mark.parametrize("args", [["--chunks", "9"], ["--batch", "0"], ["--members", "0"]])
def test_sweep_experiment_refuses_bad_sizes(args, capsys):
    from experiments import ensemble_sweep

    with pytest.raises(SystemExit):
        ensemble_sweep.main(["--fast", *args])
    assert f"{args[0]} {args[1]} must be" in capsys.readouterr().err


def test_sweep_experiment_writes_its_report_and_plot(tmp_path):
    import json

    from experiments import ensemble_sweep

    report = ensemble_sweep.main(["--fast", "--no-progress", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "ensemble_sweep.json").read_text())
    assert saved["members"] == 4 and saved["steps"] == 4 and saved["examples"] == 4 * 64
    assert len(saved["member_max_diff"]) == 4  # every member checked against its twin
    assert saved["max_member_diff"] == max(saved["member_max_diff"]) < 1e-5
    assert len(saved["jaxnet_part_seconds"]) == len(saved["torch_part_seconds"]) == 4
    assert saved["part_speedups"] == pytest.approx(
        [t / j for t, j in zip(saved["torch_part_seconds"], saved["jaxnet_part_seconds"],
                               strict=True)]
    )  # fmt: skip
    assert saved["speedup"] == pytest.approx(saved["torch_seconds"] / saved["jaxnet_seconds"])
    assert saved["jaxnet_gflops"] > 0 and saved["torch_gflops"] > 0
    png = (tmp_path / "ensemble_sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert report["report"] == str(tmp_path / "ensemble_sweep.json")


def test_members_with_their_own_batch_order_equal_separate_runs(rng):
    """``ensemble.train_loop`` gathers each member's own index batches."""
    x, y = rng.standard_normal((32, 6)), rng.standard_normal((32, 3))
    data = (jnp.asarray(x), jnp.asarray(y))
    orders = np.stack([rng.permutation(32).reshape(4, 8) for _ in range(3)])
    keys = jax.random.split(jax.random.key(3), 3)
    states = ensemble.create(NET, keys, sweep_opt(), {"lr": jnp.array([0.01, 0.05, 0.1])})
    loop = jax.jit(ensemble.train_loop(train.train_step(loss_fn)), donate_argnums=0)
    states, metrics = loop(states, data, jnp.asarray(orders))
    for i, lr in enumerate((0.01, 0.05, 0.1)):
        opt = optim.SGD(lr, momentum=0.9)
        alone = train.TrainState.create(NET.init(keys[i]), opt, keys[i])
        alone, m = alone_loop(loss_fn)(alone, data, jnp.asarray(orders[i]))
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-12)
        for a, b in zip(
            jax.tree.leaves(member(states.params, i)), jax.tree.leaves(alone.params), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
