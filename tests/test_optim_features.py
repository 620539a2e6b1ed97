"""Optimiser features beyond the plain trajectory: complex and float16 parameters, momentum
and beta1 schedules (traced ones too), and torch's construction errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from test_optim_common import (
    KERNEL_ONLY,
    OPTIMIZER_NAMES,
    TOL64,
    common_optimizers,
    jaxnet_trajectory,
    torch_trajectory,
)

from jaxnet import optim

# --- complex parameters: torch steps them as their real view ---------------------------

_c = np.random.default_rng(1)
CX = _c.normal(size=(8, 3)) + 1j * _c.normal(size=(8, 3))
CY = _c.normal(size=(8, 2)) + 1j * _c.normal(size=(8, 2))
CW = _c.normal(size=(2, 3)) + 1j * _c.normal(size=(2, 3))
CB = _c.normal(size=(2,)) + 1j * _c.normal(size=(2,))
COMPLEX_CASES = {
    "SGD": {"lr": 0.02, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.1},
    "Adam": {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True},
    "AdamW": {"lr": 0.05},
    "RMSprop": {"lr": 0.01, "centered": True, "momentum": 0.5},
    "Adagrad": {"lr": 0.1, "lr_decay": 0.1},
    "Adadelta": {"lr": 1.0},
    "Adamax": {"lr": 0.05},
    "NAdam": {"lr": 0.05},
    "RAdam": {"lr": 0.05},
    "ASGD": {"lr": 0.02, "lambd": 0.1},
    "Rprop": {"lr": 0.01},
}


def complex_loss(w, b, x, y, lib):
    return lib.mean(lib.abs(x @ w.T + b - y) ** 2)


def torch_complex_trajectory(name, kwargs, steps=20):
    w, b = (torch.tensor(v, requires_grad=True) for v in (CW, CB))
    opt = getattr(torch.optim, name)([w, b], **kwargs)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        complex_loss(w, b[None, :], torch.tensor(CX), torch.tensor(CY), torch).backward()
        opt.step()
        out.append(np.concatenate([w.detach().numpy().ravel(), b.detach().numpy()]))
    return np.asarray(out)


def jaxnet_complex_trajectory(opt, steps=20, conj=False):
    params = {"weight": jnp.asarray(CW), "bias": jnp.asarray(CB)}
    grad = jax.grad(lambda p: complex_loss(p["weight"], p["bias"][None, :], CX, CY, jnp))
    state, out = opt.init(params), []
    for _ in range(steps):
        grads = optax.tree.conj(grad(params)) if conj else grad(params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.concatenate([params["weight"].ravel(), params["bias"]]))
    return np.asarray(out)


@pytest.mark.parametrize("name", COMPLEX_CASES)
def test_complex_parameters_step_as_in_torch(name):
    """torch: ``loss.backward()`` on complex parameters; jaxnet: ``jax.grad`` of the same
    loss (the conjugate of torch's ``p.grad``). 20 steps agree in complex128."""
    expected = torch_complex_trajectory(name, COMPLEX_CASES[name])
    got = jaxnet_complex_trajectory(getattr(optim, name)(**COMPLEX_CASES[name]))
    assert got.dtype == np.complex128
    np.testing.assert_allclose(got, expected, **TOL64)


def test_optax_adam_on_complex_parameters_differs_from_torch():
    """optax's Adam (given torch's gradient) keeps ``|g|²`` of the complex gradient, torch
    the squares of its real and imaginary parts: what jaxnet's Adam did before."""
    expected = torch_complex_trajectory("Adam", {"lr": 0.05})
    got = jaxnet_complex_trajectory(optax.adam(0.05), conj=True)
    assert np.abs(got - expected).max() > 1e-3


def test_adafactor_refuses_complex_parameters_like_torch():
    w = torch.zeros(2, 2, dtype=torch.complex64, requires_grad=True)
    w.grad = torch.ones_like(w)
    with pytest.raises(RuntimeError, match="complex"):
        torch.optim.Adafactor([w]).step()
    with pytest.raises(TypeError, match="Adafactor: complex parameters are not supported"):
        optim.Adafactor().init({"w": jnp.zeros((2, 2), jnp.complex64)})


# --- float16: computed in float32 as torch's fused kernel does ---------------------------


def _float16_run(opt_torch, jopt, grads):
    p = torch.ones(len(grads[0]), dtype=torch.float16, requires_grad=True)
    topt = opt_torch([p])
    params = {"p": jnp.ones(len(grads[0]), jnp.float16)}
    state = jopt.init(params)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float16)
        topt.step()
        updates, state = jopt.update({"p": jnp.asarray(g, jnp.float16)}, state, params)
        params = optax.apply_updates(params, updates)
    return p.detach().numpy(), np.asarray(params["p"])


GRADS16 = [[0.0, 1.0, 1e-5, -3e-3]] * 5


def test_adam_float16_zero_gradient_steps_finite_like_torch_fused():
    """eps=1e-8 is 0 in float16: computed there, a zero gradient gives 0/0. torch's
    default kernel does so (NaN, -inf); its fused kernel computes in float32, and so does
    jaxnet, to the same float16 parameters."""
    default, _ = _float16_run(lambda p: torch.optim.Adam(p, 1e-3), optim.Adam(1e-3), GRADS16)
    assert not np.isfinite(default).all()  # torch's for-loop kernel
    fused, got = _float16_run(
        lambda p: torch.optim.Adam(p, 1e-3, fused=True), optim.Adam(1e-3), GRADS16
    )
    assert got.dtype == np.float16 and np.isfinite(got).all()
    np.testing.assert_allclose(got, fused, rtol=0, atol=1e-3)  # one float16 ulp near 1


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "AdamW"])
def test_float16_matches_torch_fused(name):
    make = getattr(torch.optim, name)
    fused, got = _float16_run(
        lambda p: make(p, 1e-2, fused=True), getattr(optim, name)(1e-2), GRADS16
    )
    np.testing.assert_allclose(got, fused, rtol=0, atol=1e-3)


def test_float16_state_keeps_the_parameter_dtype():
    params = {"p": jnp.ones(3, jnp.float16)}
    opt = optim.Adam(amsgrad=True)
    _, state = jax.jit(opt.update)({"p": jnp.ones(3, jnp.float16)}, opt.init(params), params)
    for leaf in jax.tree.leaves(state):
        assert leaf.dtype in (jnp.float16, jnp.int32)


# --- momentum and beta1 as schedules -------------------------------------------------------


def beta1_schedule(step):
    """A hand-written cycle between 0.85 and 0.95 (what OneCycleLR feeds)."""
    return 0.9 + 0.05 * np.cos(np.pi * step / 7)


SCHEDULED = {
    "SGD": ({"lr": 0.05, "dampening": 0.2}, "momentum"),
    "SGD-nesterov": ({"lr": 0.05, "nesterov": True}, "momentum"),
    "RMSprop": ({"lr": 0.01}, "momentum"),
    "Adam": ({"lr": 0.01}, "betas"),
    "Adam-amsgrad": ({"lr": 0.01, "amsgrad": True}, "betas"),
    "AdamW": ({"lr": 0.01}, "betas"),
    "Adamax": ({"lr": 0.01}, "betas"),
    "NAdam": ({"lr": 0.01}, "betas"),
    "RAdam": ({"lr": 0.01}, "betas"),
}


@pytest.mark.parametrize("case", SCHEDULED)
def test_momentum_schedule_matches_torch_param_group_changes(case):
    """torch: ``param_group['momentum']`` / ``['betas']`` set before every step."""
    name = case.split("-")[0]
    kwargs, key = SCHEDULED[case]

    def set_group(opt, i):
        for group in opt.param_groups:
            value = float(beta1_schedule(i))
            group[key] = value if key == "momentum" else (value, group["betas"][1])

    first = float(beta1_schedule(0))
    torch_kwargs = {**kwargs, key: first if key == "momentum" else (first, 0.999)}
    params0, expected = torch_trajectory(
        lambda p: getattr(torch.optim, name)(p, **torch_kwargs), 30, before_step=set_group
    )
    schedule = lambda step: 0.9 + 0.05 * jnp.cos(jnp.pi * step / 7)  # noqa: E731
    jkwargs = {**kwargs, key: schedule if key == "momentum" else (schedule, 0.999)}
    got = jaxnet_trajectory(getattr(optim, name)(**jkwargs), params0, 30)
    np.testing.assert_allclose(got, expected, **TOL64)
    constant = jaxnet_trajectory(
        getattr(optim, name)(**{**jkwargs, key: 0.9 if key == "momentum" else (0.9, 0.999)}),
        params0,
        30,
    )
    assert np.abs(constant - got).max() > 1e-4  # the schedule changed the steps


@pytest.mark.parametrize("name", ["SGD", "Adam", "NAdam"])
def test_traced_momentum_schedule_under_vmap(name):
    """Per-member momentum as a schedule closing over a traced value (jaxnet.ensemble)."""
    params = {"w": jnp.arange(3.0)}
    grads = {"w": jnp.asarray([1.0, -2.0, 0.5])}

    def run(m):
        hyper = {"momentum": lambda step: m} if name == "SGD" else {"betas": (lambda s: m, 0.99)}
        opt = getattr(optim, name)(0.1, **hyper)
        state = opt.init(params)
        for i in range(3):  # gradients that change, so that beta1 matters
            step_grads = jax.tree.map(lambda g, i=i: g * (i + 1) * (-1) ** i, grads)
            updates, state = opt.update(step_grads, state, params)
        return updates["w"]

    members = jnp.asarray([0.5, 0.8])
    vmapped = jax.vmap(run)(members)
    for i, m in enumerate([0.5, 0.8]):
        np.testing.assert_allclose(vmapped[i], run(m), rtol=1e-12)
    assert not np.allclose(vmapped[0], vmapped[1])


# --- construction errors: torch's own error inputs ------------------------------------------


def _torch_error_cases():
    """torch's construction errors about hyperparameters (not about the params list, a
    tensor ``lr``/``betas`` or a kernel flag, which jaxnet has no counterpart for)."""
    cases = []
    for key, name in OPTIMIZER_NAMES.items():
        for error_input in getattr(common_optimizers(), f"optim_error_inputs_func_{key}")(
            "cpu", None
        ):
            kwargs = error_input.optimizer_error_input.kwargs
            if (
                error_input.error_type is ValueError
                and kwargs
                and error_input.optimizer_error_input.params is None
                and not any(isinstance(v, torch.Tensor) for v in jax.tree.leaves(kwargs))
                and not set(kwargs) & set(KERNEL_ONLY)
            ):
                cases.append(pytest.param(name, kwargs, id=f"{name}-{kwargs}"))
    return cases


@pytest.mark.parametrize(("name", "kwargs"), _torch_error_cases())
def test_torch_construction_errors(name, kwargs):
    with pytest.raises(ValueError):
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match=f"^{name}: "):
        getattr(optim, name)(**kwargs)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: optim.NAdam(momentum_decay=-0.1), ValueError, r"NAdam: momentum_decay=-0\.1"),
        (lambda: optim.RAdam(eps=-1.0), ValueError, r"RAdam: eps=-1\.0 must be >= 0"),
        (lambda: optim.Adamax(betas=(0.9, 1.0)), ValueError, r"Adamax: betas\[1\]=1\.0"),
        (lambda: optim.Adadelta(rho=1.5), ValueError, r"Adadelta: rho=1\.5 must be in \[0, 1\]"),
        (lambda: optim.ASGD(weight_decay=-1), ValueError, r"ASGD: weight_decay=-1 must be"),
        (lambda: optim.Rprop(etas=(1.5, 2.0)), ValueError, r"Rprop: etas=\(1\.5, 2\.0\)"),
        (lambda: optim.Rprop(etas=0.5), TypeError, r"Rprop: etas must be a pair"),
        (lambda: optim.Rprop(lambda s: 0.1), TypeError, r"Rprop: lr must be a float, got"),
        (lambda: optim.Adafactor(d=0.5), ValueError, r"Adafactor: clipping threshold d=0\.5"),
        (lambda: optim.Adafactor(eps=(-1.0, 1e-3)), ValueError, r"Adafactor: eps\[0\]=-1\.0"),
        (lambda: optim.Adam(foreach="yes"), TypeError, r"Adam: foreach must be a bool or None"),
        (lambda: optim.Adam(betas=(0.9, lambda s: 0.9)), TypeError, r"only betas\[0\] takes"),
        (lambda: optim.SGD(0.1, momentum=-0.5), ValueError, r"SGD: momentum=-0\.5 must"),
    ],
)
def test_invalid_new_hyperparameters_raise(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_kernel_flags_have_no_effect():
    params0, expected = torch_trajectory(lambda p: torch.optim.Adam(p, 1e-2), 10)
    flags = {"foreach": True, "fused": False, "capturable": True, "differentiable": True}
    got = jaxnet_trajectory(optim.Adam(1e-2, **flags), params0, 10)
    np.testing.assert_allclose(got, expected, **TOL64)
