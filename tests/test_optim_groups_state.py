"""Parameter groups and torch's optimiser state, against torch."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from test_optim_common import (
    KEYS,
    TOL64,
    flat,
    jaxnet_steps,
    jaxnet_trajectory,
    to_jaxnet,
    torch_model,
    torch_steps,
)

from jaxnet import optim

F64 = torch.float64


def named(params):
    """``named_parameters(model, params)`` for the test model: torch's order."""
    return [(k, params[k[0]][k[2:]]) for k in KEYS]


def split(model):
    """torch's groups for the jaxnet patterns below: biases first, then the rest."""
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    return biases, weights


# --- parameter groups --------------------------------------------------------------------

GROUP_CASES = {
    "adamw_no_decay_on_biases": (
        lambda: optim.param_groups(
            optim.AdamW, [{"params": "*.bias", "weight_decay": 0.0}], lr=1e-2, weight_decay=0.5
        ),
        lambda b, w: torch.optim.AdamW(
            [{"params": b, "weight_decay": 0.0}, {"params": w}], lr=1e-2, weight_decay=0.5
        ),
    ),
    "sgd_own_lr_momentum_and_schedule": (
        lambda: optim.param_groups(
            optim.SGD,
            [{"params": ["0.bias", "2.bias"], "lr": lambda step: 0.2 * 0.9**step}],
            lr=0.05,
            momentum=0.9,
        ),
        lambda b, w: torch.optim.SGD(
            [{"params": b, "lr": 0.2}, {"params": w}], lr=0.05, momentum=0.9
        ),
    ),
    "adam_predicate": (
        lambda: optim.param_groups(
            optim.Adam, [{"params": lambda name, p: p.ndim == 1, "betas": (0.5, 0.9)}], lr=1e-2
        ),
        lambda b, w: torch.optim.Adam([{"params": b, "betas": (0.5, 0.9)}, {"params": w}], lr=1e-2),
    ),
}


def _bias_lr_decay(opt, i):
    """torch side of the scheduled group: its lr set before each step."""
    if opt.param_groups[0]["lr"] != 0.05:
        opt.param_groups[0]["lr"] = 0.2 * 0.9**i


@pytest.mark.parametrize("case", GROUP_CASES)
def test_param_groups_match_torch(case):
    make, make_torch = GROUP_CASES[case]
    model = torch_model(F64)
    params0 = to_jaxnet(model)
    before = _bias_lr_decay if case.startswith("sgd") else None
    expected = torch_steps(model, make_torch(*split(model)), 30, F64, before_step=before)
    got = jaxnet_trajectory(make(), params0, 30)
    np.testing.assert_allclose(got, expected, **TOL64)
    single = jaxnet_trajectory(
        {"adamw": optim.AdamW(1e-2, weight_decay=0.5), "sgd": optim.SGD(0.05, 0.9)}.get(
            case.split("_")[0], optim.Adam(1e-2)
        ),
        params0,
        30,
    )
    assert np.abs(single - got).max() > 1e-4  # the groups changed the steps


def test_a_parameter_in_two_groups_is_an_error():
    opt = optim.param_groups(optim.SGD, [{"params": "*.bias"}, {"params": "0.*"}], lr=0.1)
    with pytest.raises(ValueError, match=r"param_groups: parameter '0.bias' is chosen by groups"):
        opt.init({"0": {"weight": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}})


@pytest.mark.parametrize(
    ("groups", "error", "match"),
    [
        ({"params": "*"}, TypeError, "groups must be a list of dicts"),
        ([{"lr": 0.1}], TypeError, r"groups\[0\] must be a dict with a 'params' entry"),
        ([{"params": 3}], TypeError, r"groups\[0\]\['params'\] must be a name pattern"),
        ([{"params": "*", "lr": -1.0}], ValueError, r"SGD: lr=-1\.0 must be >= 0"),
    ],
)
def test_param_groups_errors(groups, error, match):
    with pytest.raises(error, match=match):
        optim.param_groups(optim.SGD, groups, lr=0.1)


# --- torch's optimiser state -----------------------------------------------------------------

STATE_CASES = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "dampening": 0.1},
    "Adam": {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1},
    "AdamW": {"lr": 1e-2},
    "RMSprop": {"lr": 1e-2, "centered": True, "momentum": 0.5},
    "Adagrad": {"lr": 0.1, "lr_decay": 0.1},
    "Adadelta": {"lr": 1.0},
    "Adamax": {"lr": 1e-2},
    "NAdam": {"lr": 1e-2},
    "RAdam": {"lr": 1e-2},
    "ASGD": {"lr": 0.05, "t0": 3, "lambd": 0.1},
    "Rprop": {"lr": 1e-2},
    "Adafactor": {"lr": 1e-2, "weight_decay": 0.1},
}


@pytest.mark.parametrize("name", STATE_CASES)
def test_torch_run_resumes_in_jaxnet(name):
    """5 torch steps; its state_dict loaded into jaxnet; 10 more steps in each agree."""
    kwargs = STATE_CASES[name]
    model = torch_model(F64)
    topt = getattr(torch.optim, name)(model.parameters(), **kwargs)
    torch_steps(model, topt, 5, F64)
    params = {k: {n: jnp.asarray(v) for n, v in d.items()} for k, d in to_jaxnet(model).items()}
    jopt = getattr(optim, name)(**kwargs)
    state = optim.load_torch_state_dict(
        jopt, jopt.init(params), topt.state_dict(), named(params), step=5
    )
    expected = torch_steps(model, topt, 10, F64)
    got = jaxnet_steps(jopt, params, state, 10)[0]
    np.testing.assert_allclose(got, expected, **TOL64)


@pytest.mark.parametrize("name", STATE_CASES)
def test_jaxnet_run_resumes_in_torch(name):
    """5 jaxnet steps; its state exported and loaded by torch; 10 more steps agree."""
    kwargs = STATE_CASES[name]
    jopt = getattr(optim, name)(**kwargs)
    params0 = to_jaxnet(torch_model(F64))
    params = {k: {n: jnp.asarray(v) for n, v in d.items()} for k, d in params0.items()}
    _, params, state = jaxnet_steps(jopt, params, jopt.init(params), 5)
    model = torch_model(F64)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in named(params)})
    topt = getattr(torch.optim, name)(model.parameters(), **kwargs)
    topt.load_state_dict(optim.torch_state_dict(jopt, state, named(params)))
    expected = torch_steps(model, topt, 10, F64)
    got = jaxnet_steps(jopt, params, state, 10)[0]
    # torch casts a loaded NAdam mu_product to the parameter dtype (float64) and goes on
    # in float64; an uninterrupted torch run, and jaxnet, keep it in float32.
    np.testing.assert_allclose(got, expected, **(TOL64 if name != "NAdam" else {"rtol": 1e-6}))
    assert flat(model.state_dict()).shape == got[-1].shape


def test_param_group_state_round_trips_through_torch():
    """AdamW with a no-decay group: torch -> jaxnet -> torch, 5 + 10 + 10 steps."""
    make, make_torch = GROUP_CASES["adamw_no_decay_on_biases"]
    model = torch_model(F64)
    topt = make_torch(*split(model))
    torch_steps(model, topt, 5, F64)
    params = {k: {n: jnp.asarray(v) for n, v in d.items()} for k, d in to_jaxnet(model).items()}
    jopt = make()
    state = optim.load_torch_state_dict(jopt, jopt.init(params), topt.state_dict(), named(params))
    expected = torch_steps(model, topt, 10, F64)
    got, params, state = jaxnet_steps(jopt, params, state, 10)
    np.testing.assert_allclose(got, expected, **TOL64)
    exported = optim.torch_state_dict(jopt, state, named(params))
    assert [g["weight_decay"] for g in exported["param_groups"]] == [0.0, 0.5]
    fresh = torch_model(F64)
    fresh.load_state_dict(model.state_dict())
    topt2 = make_torch(*split(fresh))
    topt2.load_state_dict(exported)
    np.testing.assert_allclose(
        torch_steps(fresh, topt2, 10, F64), torch_steps(model, topt, 10, F64), **TOL64
    )


def test_sgd_state_needs_the_step_when_it_counts():
    jopt = optim.SGD(0.05, momentum=0.9, dampening=0.1)
    model = torch_model(F64)
    topt = torch.optim.SGD(model.parameters(), 0.05, 0.9, dampening=0.1)
    torch_steps(model, topt, 2, F64)
    params = to_jaxnet(model)
    with pytest.raises(ValueError, match="torch's SGD records no step; pass step="):
        optim.load_torch_state_dict(jopt, jopt.init(params), topt.state_dict(), named(params))
