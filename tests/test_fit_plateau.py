"""fit drives ReduceLROnPlateau from the evaluation metric, as torch's scheduler.step(metric)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxnet import nn, optim, train
from jaxnet.nn import functional as F
from jaxnet.optim import lr_scheduler


def test_fit_steps_the_plateau_each_epoch_like_torch(rng):
    x = rng.standard_normal((64, 3))
    y = x @ rng.standard_normal((3, 1)) + 0.5 * rng.standard_normal((64, 1))
    theirs = torch.nn.Linear(3, 1).double()
    ours = nn.Linear(3, 1, dtype=jnp.float64)
    params = ours.load_state_dict(theirs.state_dict()).params
    settings = {"factor": 0.5, "patience": 0, "threshold": 0.05}

    t_opt = torch.optim.SGD(theirs.parameters(), lr=0.3, momentum=0.5)
    t_plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(t_opt, **settings)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    t_lrs = []
    for _ in range(8):
        t_opt.zero_grad()
        torch.mean((theirs(tx) - ty) ** 2).backward()
        t_opt.step()
        with torch.no_grad():
            t_plateau.step(torch.mean((theirs(tx) - ty) ** 2).item())
        t_lrs.append(t_opt.param_groups[0]["lr"])
    assert len(set(t_lrs)) > 2  # the plateau cut the lr several times

    plateau = lr_scheduler.ReduceLROnPlateau(0.3, **settings)
    opt = optax.chain(optim.SGD(0.3, momentum=0.5), lr_scheduler.scale_by_plateau(plateau))
    state = train.TrainState.create(params, opt, jax.random.key(0))

    def metric_fn(p, batch):
        return {"mse": jnp.mean((ours.apply(p, batch[0]) - batch[1]) ** 2, axis=1)}

    state, _ = train.fit(
        state, lambda p, b: F.mse_loss(ours.apply(p, b[0]), b[1]), (x, y), epochs=8,
        batch_size=64, shuffle=False, metric_fn=metric_fn, eval_data=(x, y),
        plateau_metric="mse", progress=False,
    )  # fmt: skip
    np.testing.assert_allclose(state.params["weight"], theirs.weight.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(state.params["bias"], theirs.bias.detach().numpy(), rtol=1e-10)


def test_plateau_metric_errors():
    net = nn.Linear(2, 1)
    opt = optim.SGD(0.1)
    state = train.TrainState.create(net.init(jax.random.key(0)), opt, jax.random.key(0))
    data = (jnp.ones((8, 2)), jnp.ones((8, 1)))

    def metric_fn(p, b):
        return {"mse": jnp.mean((net.apply(p, b[0]) - b[1]) ** 2, axis=1)}

    def loss_fn(p, b):
        return F.mse_loss(net.apply(p, b[0]), b[1])

    with pytest.raises(ValueError, match=r"plateau_metric 'loss' is not a metric of metric_fn"):
        train.fit(state, loss_fn, data, epochs=1, batch_size=8, metric_fn=metric_fn,
                  eval_data=data, plateau_metric="loss")  # fmt: skip
    with pytest.raises(ValueError, match=r"needs an optimiser with a ReduceLROnPlateau"):
        train.fit(state, loss_fn, data, epochs=1, batch_size=8, metric_fn=metric_fn,
                  eval_data=data, plateau_metric="mse")  # fmt: skip
