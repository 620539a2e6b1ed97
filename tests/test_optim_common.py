"""Shared by the optimiser tests: a small torch model, its jaxnet twin, and trajectories.

The model is ``Linear(4, 6) -> Tanh -> Linear(6, 3)`` trained with MSE on fixed random
data (written out in jnp here, so the optimiser tests depend on nothing but
``jaxnet.optim``). Torch's parameters after every step are compared with jaxnet's, from
the same initial weights. Also: torch's optimiser configurations from
``torch/testing/_internal/common_optimizers.py``.
"""

import sys
import types
import unittest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

KEYS = ("0.weight", "0.bias", "2.weight", "2.bias")  # torch's state_dict order
_data = np.random.default_rng(0)
X = _data.normal(size=(16, 4))
Y = _data.normal(size=(16, 3))
TOL64 = {"rtol": 1e-10, "atol": 1e-12}
# float32 through 50 steps: rounding differences between the two libraries accumulate
# to a few 1e-6; a difference of rule moves the parameters by 1e-3 or more.
TOL32 = {"rtol": 1e-4, "atol": 1e-5}


# torch.testing._internal.common_optimizers' lowercase names -> the optimiser classes.
OPTIMIZER_NAMES = {
    "adadelta": "Adadelta",
    "adafactor": "Adafactor",
    "adagrad": "Adagrad",
    "adam": "Adam",
    "adamax": "Adamax",
    "adamw": "AdamW",
    "asgd": "ASGD",
    "nadam": "NAdam",
    "radam": "RAdam",
    "rmsprop": "RMSprop",
    "rprop": "Rprop",
    "sgd": "SGD",
}


def torch_model(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    return model.to(dtype)


def to_jaxnet(model):
    """torch module -> jaxnet nested params (numpy copies)."""
    params = {}
    for key, value in model.state_dict().items():
        layer, name = key.split(".")
        params.setdefault(layer, {})[name] = value.detach().numpy().copy()
    return params


def flat(state_dict_or_params):
    get = state_dict_or_params
    if isinstance(get, dict) and "0" in get:
        return np.concatenate([np.asarray(get[k[0]][k[2:]]).ravel() for k in KEYS])
    return np.concatenate([get[k].detach().numpy().ravel() for k in KEYS])


def torch_loss(model, dtype):
    x, y = torch.from_numpy(X).to(dtype), torch.from_numpy(Y).to(dtype)
    return torch.nn.functional.mse_loss(model(x), y)


def torch_steps(model, opt, steps, dtype, scheduler=None, before_step=None):
    """The flat params after each of ``steps`` torch steps."""
    out = []
    for i in range(steps):
        if before_step is not None:
            before_step(opt, i)
        opt.zero_grad()
        torch_loss(model, dtype).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        out.append(flat(model.state_dict()))
    return np.stack(out)


def torch_trajectory(make_opt, steps, dtype=torch.float64, **kwargs):
    """Initial params as a jaxnet dict, and the flat params after each torch step."""
    model = torch_model(dtype)
    params0 = to_jaxnet(model)
    return params0, torch_steps(model, make_opt(model.parameters()), steps, dtype, **kwargs)


def jaxnet_loss(params, dtype):
    x, y = jnp.asarray(X, dtype), jnp.asarray(Y, dtype)
    hidden = jnp.tanh(x @ params["0"]["weight"].T + params["0"]["bias"][None, :])
    out = hidden @ params["2"]["weight"].T + params["2"]["bias"][None, :]
    return jnp.mean((out - y) ** 2)


def jaxnet_steps(opt, params, state, steps, dtype=jnp.float64):
    """(flat params after each step, final params, final state), in one compiled scan."""

    def step(carry, _):
        params, state = carry
        grads = jax.grad(jaxnet_loss)(params, dtype)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), jnp.concatenate([params[k[0]][k[2:]].ravel() for k in KEYS])

    (params, state), trajectory = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), length=steps))(
        params, state
    )
    return np.asarray(trajectory), params, state


def jaxnet_trajectory(opt, params0, steps, dtype=jnp.float64):
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params0)
    return jaxnet_steps(opt, params, opt.init(params), steps, dtype)[0]


def common_optimizers():
    """torch's ``common_optimizers`` module. It imports ``expecttest`` (torch's own test
    dependency) for its TestCase only; a stand-in is installed when it is missing."""
    try:
        import expecttest  # noqa: F401
    except ModuleNotFoundError:
        stand_in = types.ModuleType("expecttest")
        stand_in.TestCase = unittest.TestCase
        sys.modules["expecttest"] = stand_in
    from torch.testing._internal import common_optimizers

    return common_optimizers


# Options of torch's that select a kernel only; jaxnet accepts them without effect.
KERNEL_ONLY = ("foreach", "fused", "capturable", "differentiable")


def torch_configs(name):
    """``(description, kwargs)`` for every configuration ``optim_inputs_func_<name>``
    gives on the CPU, with tensor values as floats."""
    inputs = getattr(common_optimizers(), f"optim_inputs_func_{name}")("cpu")
    configs = []
    for optim_input in inputs:
        kwargs = {
            k: float(v) if isinstance(v, torch.Tensor) else v
            for k, v in optim_input.kwargs.items()
            if k not in KERNEL_ONLY
        }
        configs.append((optim_input.desc, kwargs))
    return configs
