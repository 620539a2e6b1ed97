"""A vmapped ensemble / learning-rate sweep equals its members trained one by one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnet import ensemble, nn, optim, train

NET = nn.MLP(6, [16], 3, dtype=jnp.float64)


def loss_fn(params, batch):
    return jnp.mean((NET.apply(params, batch[0]) - batch[1]) ** 2)


def make_opt(lr):
    return optim.SGD(lambda step: lr, momentum=0.9)


def test_members_equal_separate_runs(rng):
    data = (jnp.asarray(rng.standard_normal((64, 6))), jnp.asarray(rng.standard_normal((64, 3))))
    index_batches = jnp.asarray(rng.permutation(64).reshape(8, 8))
    keys = jax.random.split(jax.random.key(0), 3)
    lrs = jnp.array([0.01, 0.05, 0.1])
    states = ensemble.create(NET, keys, make_opt, lrs)
    states, metrics = ensemble.make_ensemble_loop(loss_fn, make_opt)(states, data, index_batches,
                                                                      lrs)  # fmt: skip
    assert metrics["loss"].shape == (3, 8)
    for i in range(3):
        opt = optim.SGD(float(lrs[i]), momentum=0.9)
        alone = train.TrainState.create(NET.init(keys[i]), opt, keys[i])
        alone, m = train.make_train_loop(loss_fn, opt)(alone, data, index_batches)
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-12)
        member = jax.tree.map(lambda a, i=i: a[i], states.params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14),
                     member, alone.params)  # fmt: skip
    assert not np.allclose(metrics["loss"][0], metrics["loss"][2])


def test_members_equal_torch_runs(rng):
    """Each member of a learning-rate sweep against torch.optim.SGD from the same weights."""
    import torch

    data = (rng.standard_normal((32, 6)), rng.standard_normal((32, 3)))
    index_batches = rng.permutation(32).reshape(4, 8)
    keys = jax.random.split(jax.random.key(1), 2)
    lrs = jnp.array([0.02, 0.2])
    states = ensemble.create(NET, keys, make_opt, lrs)
    start = jax.tree.map(np.asarray, states.params)
    states, metrics = ensemble.make_ensemble_loop(loss_fn, make_opt)(
        states, jax.tree.map(jnp.asarray, data), jnp.asarray(index_batches), lrs
    )
    x, y = (torch.from_numpy(a) for a in data)
    for i, lr in enumerate(lrs.tolist()):
        model = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
        ).double()
        member_start = jax.tree.map(lambda a, i=i: a[i], start)
        model.load_state_dict(
            {k: torch.from_numpy(v.copy()) for k, v in NET.state_dict(member_start).items()}
        )
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        losses = []
        for idx in index_batches:
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        np.testing.assert_allclose(metrics["loss"][i], losses, rtol=1e-12)
        member = NET.state_dict(jax.tree.map(lambda a, i=i: a[i], states.params))
        for name, value in model.state_dict().items():
            np.testing.assert_allclose(member[name], value.numpy(), rtol=1e-11, atol=1e-14)


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
    import torch

    data = (rng.standard_normal((32, 6)), rng.standard_normal((32, 3)))
    index_batches = rng.permutation(32).reshape(4, 8)
    keys = jax.random.split(jax.random.key(2), 3)
    lrs = jnp.array([0.01, 0.05, 0.2])
    states = ensemble.create(BN_NET, keys, make_opt, lrs)
    initial = BN_NET.init_buffers()
    for name, value in BN_NET.named_buffers(initial):
        stacked = dict(BN_NET.named_buffers(states.buffers))[name]
        np.testing.assert_array_equal(stacked, np.stack([value] * 3))
    start = jax.tree.map(np.asarray, states.params)
    loop = ensemble.make_ensemble_loop(bn_loss_fn, make_opt, has_state=True)
    states, metrics = loop(states, jax.tree.map(jnp.asarray, data), jnp.asarray(index_batches), lrs)
    x, y = (torch.from_numpy(a) for a in data)
    for i, lr in enumerate(lrs.tolist()):
        member = jax.tree.map(lambda a, i=i: a[i], (states.params, states.buffers))
        opt = optim.SGD(lr, momentum=0.9)
        alone = train.TrainState.create(BN_NET.init(keys[i]), opt, keys[i], initial)
        alone, m = train.make_train_loop(bn_loss_fn, opt, has_state=True)(
            alone, jax.tree.map(jnp.asarray, data), jnp.asarray(index_batches)
        )
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-12)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14),
            member,
            (alone.params, alone.buffers),
        )

        model = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
            torch.nn.Linear(16, 3),
        ).double()  # fmt: skip
        member_start = BN_NET.state_dict(jax.tree.map(lambda a, i=i: a[i], start), initial)
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in member_start.items()})
        torch_opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        losses = []
        for idx in index_batches:
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            torch_opt.zero_grad()
            loss.backward()
            torch_opt.step()
            losses.append(loss.item())
        np.testing.assert_allclose(metrics["loss"][i], losses, rtol=1e-12)
        ours = BN_NET.state_dict(*member)
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
