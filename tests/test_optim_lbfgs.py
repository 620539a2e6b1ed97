"""LBFGS against torch.optim.LBFGS: convex problems and a small MLP, both line searches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from test_optim_common import torch_configs

from jaxnet import optim

_r = np.random.default_rng(3)
A = _r.normal(size=(40, 10))
B = _r.normal(size=(40,))
X = _r.normal(size=(64, 20))
LABELS = _r.integers(0, 4, size=64)


def quadratic(lib, w, b):
    """Least squares: convex."""
    return lib.mean((A_(lib) @ w + b - B_(lib)) ** 2) + 0.1 * lib.sum(w**2)


def A_(lib):
    return torch.from_numpy(A) if lib is torch else jnp.asarray(A)


def B_(lib):
    return torch.from_numpy(B) if lib is torch else jnp.asarray(B)


def mlp_loss(lib, p):
    """20 -> 16 -> 8 -> 4 MLP (the seed MLP's shape, smaller), cross-entropy plus a small
    L2 penalty: without it L-BFGS at lr=1 drives the weights of this over-parameterised
    net up without bound, where the float64 rounding of any two implementations grows
    to 1e-7 within three steps."""
    x = torch.from_numpy(X) if lib is torch else jnp.asarray(X)
    h = lib.tanh(x @ p["0.weight"].T + p["0.bias"][None, :])
    h = lib.tanh(h @ p["2.weight"].T + p["2.bias"][None, :])
    logits = h @ p["4.weight"].T + p["4.bias"][None, :]
    penalty = 0.01 * sum(lib.sum(v**2) for v in p.values())
    if lib is torch:
        return torch.nn.functional.cross_entropy(logits, torch.from_numpy(LABELS)) + penalty
    logp = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(logp, jnp.asarray(LABELS)[:, None], axis=1)) + penalty


def problem(kind):
    """(initial params as numpy dict, torch loss of a dict of tensors, jax loss)."""
    if kind == "convex":
        p0 = {"w": np.linspace(-1, 1, 10), "b": np.asarray(0.5)}
        return (
            p0,
            lambda p: quadratic(torch, p["w"], p["b"]),
            lambda p: quadratic(jnp, p["w"], p["b"]),
        )
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(20, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 4),
    ).double()
    p0 = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    return p0, lambda p: mlp_loss(torch, p), lambda p: mlp_loss(jnp, p)


def run_both(kind, kwargs, steps):
    p0, torch_loss, jax_loss = problem(kind)
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in p0.items()}
    topt = torch.optim.LBFGS(list(tparams.values()), **kwargs)

    def closure():
        topt.zero_grad()
        loss = torch_loss(tparams)
        loss.backward()
        return loss

    opt = optim.LBFGS(**kwargs)
    params = {k: jnp.asarray(v) for k, v in p0.items()}
    state = opt.init(params)
    for _ in range(steps):
        expected_loss = float(topt.step(closure).detach())
        params, state, loss = opt.step(jax_loss, params, state)
        np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-9)
        for k in p0:
            np.testing.assert_allclose(
                np.asarray(params[k]), tparams[k].detach().numpy(), rtol=1e-8, atol=1e-10
            )
    tstate = topt.state[tparams[next(iter(p0))]]
    assert (state.func_evals, state.n_iter) == (tstate["func_evals"], tstate["n_iter"])
    return p0, params


CONFIGS = [pytest.param(kw, id=desc) for desc, kw in torch_configs("lbfgs")]


@pytest.mark.parametrize("kwargs", CONFIGS)
@pytest.mark.parametrize("kind", ["convex", "mlp"])
def test_lbfgs_torch_configurations(kind, kwargs):
    """torch's own LBFGS configurations, 3 steps of up to 20 iterations each."""
    p0, params = run_both(kind, kwargs, 3)
    assert max(np.abs(np.asarray(params[k]) - p0[k]).max() for k in p0) > 1e-3


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_short_history(line_search_fn):
    """history_size below the iterations: the oldest pairs are dropped as in torch."""
    run_both("mlp", {"history_size": 3, "max_iter": 10, "line_search_fn": line_search_fn}, 3)


def test_lbfgs_complex_parameters_as_real_view():
    """torch flattens a complex parameter as its real view; so does jaxnet."""
    z0 = np.array([1.0 + 2.0j, -0.5 + 0.3j])
    tz = torch.tensor(z0, requires_grad=True)
    topt = torch.optim.LBFGS([tz], line_search_fn="strong_wolfe")
    target = np.array([0.3 - 1.0j, 2.0 + 0.1j])

    def closure():
        topt.zero_grad()
        loss = (torch.abs(tz - torch.tensor(target)) ** 4).sum()
        loss.backward()
        return loss

    topt.step(closure)
    opt = optim.LBFGS(line_search_fn="strong_wolfe")
    params, _, _ = opt.step(
        lambda p: jnp.sum(jnp.abs(p["z"] - target) ** 4), {"z": jnp.asarray(z0)}, opt.init(None)
    )
    np.testing.assert_allclose(np.asarray(params["z"]), tz.detach().numpy(), rtol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lr": -1.0}, ValueError, r"LBFGS: lr=-1\.0 must be >= 0"),
        ({"max_iter": 0}, ValueError, r"LBFGS: max_iter=0 must be a positive int"),
        ({"history_size": 2.5}, TypeError, r"LBFGS: history_size=2\.5 must be a positive int"),
        ({"line_search_fn": "armijo"}, ValueError, r"LBFGS: line_search_fn must be None or"),
        ({"tolerance_grad": -1e-7}, ValueError, r"LBFGS: tolerance_grad=-1e-07 must be >= 0"),
    ],
)
def test_lbfgs_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        optim.LBFGS(**kwargs)
