"""jaxnet.optim under ``optax.inject_hyperparams``: hyperparameters as traced arrays.

``optax.inject_hyperparams(optim.SGD)(lr=0.1, momentum=0.9)`` keeps the numeric
hyperparameters in ``opt_state.hyperparams`` and calls the jaxnet factory inside
``update`` with them, traced under ``jax.jit``/``jax.vmap``. Each optimiser (LBFGS aside)
runs a jitted trajectory that way and must step as ``torch.optim.<Name>`` with the same
values (float64); a sweep of two members vmapped over one jitted update must step as two
torch runs; and the construction checks still refuse what they refused, at ``init``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from test_optim_common import (
    KEYS,
    TOL64,
    flat,
    jaxnet_loss,
    jaxnet_trajectory,
    to_jaxnet,
    torch_model,
    torch_steps,
    torch_trajectory,
)

from jaxnet import optim

STEPS = 8
BETAS = (0.8, 0.99)

# (optimiser, hyperparameters): every number is injected (a pair such as betas is given
# to jaxnet as a 1-d array, to torch as a tuple); bools stay static, as optax makes them.
CASES = [
    ("SGD", {"lr": 0.05}),  # momentum=0 and weight_decay=0 injected as traced zeros
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "maximize": True}),
    ("Adam", {"lr": 0.01, "betas": BETAS, "eps": 1e-6, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01, "betas": BETAS, "weight_decay": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "betas": BETAS, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 0.01, "betas": BETAS, "eps": 1e-6, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("Adamax", {"lr": 0.01, "betas": BETAS, "eps": 1e-6, "weight_decay": 0.01}),
    ("NAdam", {"lr": 0.01, "betas": BETAS, "weight_decay": 0.01, "momentum_decay": 0.01}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.01, "betas": BETAS, "eps": 1e-6, "weight_decay": 0.01}),
    ("RAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.01, "momentum": 0.5}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True}),
    (
        "Adagrad",
        {
            "lr": 0.1,
            "lr_decay": 0.01,
            "weight_decay": 0.01,
            "initial_accumulator_value": 0.1,
            "eps": 1e-8,
        },
    ),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.01}),
    ("ASGD", {"lr": 0.01, "lambd": 1e-3, "alpha": 0.7, "t0": 2.0, "weight_decay": 0.01}),
    ("Rprop", {"lr": 0.01, "etas": (0.4, 1.3), "step_sizes": (1e-5, 1.0)}),
    ("Adafactor", {"lr": 0.01, "beta2_decay": -0.7, "d": 1.5, "weight_decay": 0.01}),
]


def injected(name, hyperparameters):
    """``optax.inject_hyperparams`` of the jaxnet optimiser, pairs given as arrays."""
    numeric = {k: jnp.asarray(v) if isinstance(v, tuple) else v for k, v in hyperparameters.items()}
    return optax.inject_hyperparams(getattr(optim, name))(**numeric)


def params_of(params0):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params0)


def _case_id(case):
    name, hyperparameters = case
    return "-".join([name, *(k for k in hyperparameters if k != "lr")])


@pytest.mark.parametrize(("name", "hyperparameters"), CASES, ids=map(_case_id, CASES))
def test_jitted_injected_optimiser_steps_as_torch(name, hyperparameters):
    params0, expected = torch_trajectory(
        lambda p: getattr(torch.optim, name)(p, **hyperparameters), STEPS
    )
    opt = injected(name, hyperparameters)
    numeric = {k for k, v in hyperparameters.items() if not isinstance(v, bool)}
    assert numeric <= set(opt.init(params_of(params0)).hyperparams)  # all of them traced
    np.testing.assert_allclose(jaxnet_trajectory(opt, params0, STEPS), expected, **TOL64)


# Two members of a sweep: lr and one more hyperparameter differ.
MEMBERS = [
    ("SGD", [{"lr": 0.1, "momentum": 0.9}, {"lr": 0.03, "momentum": 0.5}]),
    ("Adam", [{"lr": 0.01, "betas": (0.9, 0.999)}, {"lr": 0.003, "betas": (0.5, 0.9)}]),
]


@pytest.mark.parametrize(("name", "members"), MEMBERS, ids=[m[0] for m in MEMBERS])
def test_vmapped_sweep_members_step_as_their_own_torch_runs(name, members):
    """One jitted update vmapped over two members whose hyperparameters are set per member
    in ``opt_state.hyperparams``; each member steps as torch with its own values."""
    model = torch_model()
    params0 = to_jaxnet(model)
    opt = injected(name, members[0])
    state = opt.init(params_of(params0))
    stacked = lambda *xs: jnp.stack(xs)  # noqa: E731
    params = jax.tree.map(stacked, params_of(params0), params_of(params0))
    state = jax.tree.map(stacked, state, state)
    for key in members[0]:
        state.hyperparams[key] = jnp.stack([jnp.asarray(m[key]) for m in members])

    @jax.jit
    def step(params, state):
        grads = jax.vmap(jax.grad(functools.partial(jaxnet_loss, dtype=jnp.float64)))(params)
        updates, state = jax.vmap(opt.update)(grads, state, params)
        return optax.apply_updates(params, updates), state

    got = []
    for _ in range(STEPS):
        params, state = step(params, state)
        got.append([flat(jax.tree.map(lambda x, i=i: x[i], params)) for i in range(2)])
    got = np.asarray(got)  # (step, member, parameter)
    for i, hyperparameters in enumerate(members):
        member = torch_model()
        torch_opt = getattr(torch.optim, name)(member.parameters(), **hyperparameters)
        expected = torch_steps(member, torch_opt, STEPS, torch.float64)
        np.testing.assert_allclose(got[:, i], expected, **TOL64)
    assert np.abs(got[:, 0] - got[:, 1]).max() > 1e-3  # the members did differ


# Out-of-range values: the same ValueError at construction (floats) and at the injected
# optimiser's init (the values as float64 arrays, concrete outside jit).
OUT_OF_RANGE = [
    ("SGD", {"lr": -0.1}, r"SGD: lr=-0\.1 must be >= 0"),
    ("SGD", {"momentum": -0.9}, r"SGD: momentum=-0\.9 must be >= 0"),
    (
        "SGD",
        {"lr": 0.1, "momentum": 0.0, "nesterov": True},
        r"SGD: nesterov=True needs momentum > 0 and dampening = 0, got momentum=0\.0, "
        r"dampening=0\.0",
    ),
    ("SGD", {"dampening": float("nan")}, r"SGD: dampening=nan must be a number, not NaN"),
    ("Adam", {"betas": (0.9, 1.0)}, r"Adam: betas\[1\]=1\.0 must be in \[0, 1\)"),
    ("AdamW", {"eps": -1e-8}, r"AdamW: eps=-1e-08 must be >= 0"),
    ("RMSprop", {"alpha": 1.5}, r"RMSprop: alpha=1\.5 must be in \[0, 1\]"),
    ("Rprop", {"etas": (1.5, 1.2)}, r"Rprop: etas=\(1\.5, 1\.2\) must satisfy 0 < etaminus"),
    ("Adafactor", {"d": 0.5}, r"Adafactor: clipping threshold d=0\.5 must be >= 1"),
    ("Adafactor", {"beta2_decay": 0.5}, r"Adafactor: beta2_decay=0\.5 must be <= 0"),
]


@pytest.mark.parametrize(("name", "hyperparameters", "match"), OUT_OF_RANGE)
def test_out_of_range_value_raises_at_construction_and_at_injected_init(
    name, hyperparameters, match
):
    with pytest.raises(ValueError, match=match) as constructed:
        getattr(optim, name)(**hyperparameters)
    opt = injected(name, hyperparameters)  # inject_hyperparams only records the values
    with pytest.raises(ValueError, match=match) as initialised:
        opt.init({"w": jnp.zeros(3, jnp.float64)})
    assert str(initialised.value) == str(constructed.value)


WRONG_KIND = [
    ("momentum", jnp.asarray(True), "SGD: momentum must be a float, got a traced bool array"),
    (
        "lr",
        jnp.ones(3),
        r"SGD: lr must be a float or a schedule \(step -> lr\), got a traced float64 array of "
        r"shape \(3,\)",
    ),
    ("dampening", jnp.asarray(1j), "SGD: dampening must be a float, got a traced complex128"),
]


@pytest.mark.parametrize(("key", "value", "match"), WRONG_KIND, ids=[w[0] for w in WRONG_KIND])
def test_traced_value_of_the_wrong_kind_raises_a_type_error(key, value, match):
    params = {"w": jnp.zeros(3, jnp.float64)}
    opt = injected("SGD", {"lr": 0.1, "momentum": 0.9})
    state = opt.init(params)
    state.hyperparams[key] = value
    with pytest.raises(TypeError, match=match):
        jax.jit(opt.update)(params, state, params)


def test_a_traced_value_is_not_range_checked():
    """The range of a traced value is unknown: a negative lr set in the state is taken as
    it is (the checks run where values are concrete, at construction and init)."""
    params = {"w": jnp.ones(3, jnp.float64)}
    opt = injected("SGD", {"lr": 0.1})
    state = opt.init(params)
    state.hyperparams["lr"] = jnp.asarray(-0.5)
    updates, _ = jax.jit(opt.update)(params, state, params)
    np.testing.assert_array_equal(updates["w"], np.full(3, 0.5))


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_torch_state_dict_of_the_inner_state(name):
    """``state.inner_state`` exports to torch's ``state_dict`` with the plain optimiser built
    from the same numbers, as the plain optimiser's own state after the same steps (whose
    export is tested against torch), and loads back."""
    hyperparameters = {"lr": 0.05, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}
    model = torch_model()
    params = params_of(to_jaxnet(model))
    named = [(key, params[key[0]][key[2:]]) for key in KEYS]
    plain = getattr(optim, name)(**hyperparameters)
    opt = injected(name, hyperparameters)
    grads = jax.grad(functools.partial(jaxnet_loss, dtype=jnp.float64))(params)
    state, plain_state = opt.init(params), plain.init(params)
    for _ in range(3):
        _, state = jax.jit(opt.update)(grads, state, params)
        _, plain_state = plain.update(grads, plain_state, params)
    exported = optim.torch_state_dict(plain, state.inner_state, named)
    expected = optim.torch_state_dict(plain, plain_state, named)
    assert exported["param_groups"] == expected["param_groups"]
    for index, tensors in expected["state"].items():
        assert exported["state"][index].keys() == tensors.keys()
        for key, tensor in tensors.items():
            np.testing.assert_allclose(exported["state"][index][key], tensor, **TOL64)
    step = 3 if name == "SGD" else None  # torch's SGD keeps no step; the state counts one
    loaded = optim.load_torch_state_dict(plain, opt.init(params).inner_state, exported, named, step)
    for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(state.inner_state), strict=True):
        np.testing.assert_allclose(got, want, **TOL64)
