"""jaxnet.optim against torch.optim: 100-step parameter trajectories on a small MLP.

The torch model ``Linear(8, 16) -> Tanh -> Linear(16, 4)`` is trained with MSE on fixed
random data; its initial weights are copied into jaxnet params and the jaxnet side runs
the same 100 steps in one jitted ``lax.scan``. Every step's parameters must agree.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxnet import optim
from jaxnet.optim import lr_scheduler as sched

STEPS = 100
KEYS = ("0.weight", "0.bias", "2.weight", "2.bias")  # torch's state_dict order


def forward(params, x):
    """torch's ``Linear(8, 16) -> Tanh -> Linear(16, 4)`` on jaxnet params."""
    hidden = jnp.tanh(x @ params["0"]["weight"].T + params["0"]["bias"][None, :])
    return hidden @ params["2"]["weight"].T + params["2"]["bias"][None, :]


_data = np.random.default_rng(0)
X = _data.normal(size=(32, 8))
Y = _data.normal(size=(32, 4))
TOL64 = {"rtol": 1e-10, "atol": 1e-12}
# float32 through 100 steps: rounding differences between the two libraries accumulate
# to about 3e-6 absolute (the size of torch's own float32-vs-float64 gap here); a
# difference of rule moves the parameters by 1e-2 or more (see test_optax_alias_...).
TOL32 = {"rtol": 1e-4, "atol": 1e-5}


def torch_trajectory(make_opt, make_scheduler=None, dtype=torch.float64):
    """Initial params as a jaxnet dict, and the flat params after each of STEPS steps."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    model = model.to(dtype)
    params0 = {
        layer: {
            name: model.state_dict()[f"{layer}.{name}"].numpy().copy()
            for name in ("weight", "bias")
        }
        for layer in ("0", "2")
    }
    opt = make_opt(model.parameters())
    scheduler = make_scheduler(opt) if make_scheduler else None
    x, y = torch.from_numpy(X).to(dtype), torch.from_numpy(Y).to(dtype)
    trajectory = []
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        state = model.state_dict()
        trajectory.append(np.concatenate([state[k].numpy().ravel() for k in KEYS]))
    return params0, np.stack(trajectory)


def jaxnet_trajectory(opt, params0, dtype=jnp.float64):
    """The flat params after each of STEPS updates of ``opt``, in one compiled scan."""
    x, y = jnp.asarray(X, dtype), jnp.asarray(Y, dtype)

    def loss(params):
        return jnp.mean((forward(params, x) - y) ** 2)

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        flat = jnp.concatenate([params[k[0]][k[2:]].ravel() for k in KEYS])
        return (params, state), flat

    @jax.jit
    def run(params):
        return jax.lax.scan(step, (params, opt.init(params)), length=STEPS)[1]

    return np.asarray(run(jax.tree.map(lambda a: jnp.asarray(a, dtype), params0)))


T = torch.optim
TS = torch.optim.lr_scheduler
# (jaxnet optimiser, torch optimiser factory, torch scheduler factory or None)
CASES = {
    "sgd": (optim.SGD(0.1), lambda p: T.SGD(p, 0.1), None),
    "sgd_momentum": (optim.SGD(0.05, momentum=0.9), lambda p: T.SGD(p, 0.05, 0.9), None),
    "sgd_dampening": (
        optim.SGD(0.05, momentum=0.9, dampening=0.3),
        lambda p: T.SGD(p, 0.05, 0.9, dampening=0.3),
        None,
    ),
    "sgd_nesterov_weight_decay": (
        optim.SGD(0.05, momentum=0.9, weight_decay=0.01, nesterov=True),
        lambda p: T.SGD(p, 0.05, 0.9, weight_decay=0.01, nesterov=True),
        None,
    ),
    "sgd_maximize": (
        optim.SGD(0.01, momentum=0.5, dampening=0.1, weight_decay=0.01, maximize=True),
        lambda p: T.SGD(p, 0.01, 0.5, dampening=0.1, weight_decay=0.01, maximize=True),
        None,
    ),
    "adam": (optim.Adam(1e-2), lambda p: T.Adam(p, 1e-2), None),
    "adam_weight_decay_amsgrad": (
        optim.Adam(1e-2, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True),
        lambda p: T.Adam(p, 1e-2, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True),
        None,
    ),
    "adam_maximize": (
        optim.Adam(1e-3, eps=1e-6, maximize=True),
        lambda p: T.Adam(p, 1e-3, eps=1e-6, maximize=True),
        None,
    ),
    "adamw": (optim.AdamW(1e-2), lambda p: T.AdamW(p, 1e-2), None),
    "adamw_amsgrad_maximize": (
        optim.AdamW(1e-2, weight_decay=0.1, amsgrad=True, maximize=True),
        lambda p: T.AdamW(p, 1e-2, weight_decay=0.1, amsgrad=True, maximize=True),
        None,
    ),
    "rmsprop": (optim.RMSprop(1e-2), lambda p: T.RMSprop(p, 1e-2), None),
    "rmsprop_momentum_weight_decay": (
        optim.RMSprop(1e-3, alpha=0.9, weight_decay=0.01, momentum=0.8),
        lambda p: T.RMSprop(p, 1e-3, alpha=0.9, weight_decay=0.01, momentum=0.8),
        None,
    ),
    "rmsprop_centered_momentum_maximize": (
        optim.RMSprop(1e-3, eps=1e-6, momentum=0.5, centered=True, maximize=True),
        lambda p: T.RMSprop(p, 1e-3, eps=1e-6, momentum=0.5, centered=True, maximize=True),
        None,
    ),
    "adagrad": (optim.Adagrad(0.1), lambda p: T.Adagrad(p, 0.1), None),
    "adagrad_lr_decay_initial_accumulator": (
        optim.Adagrad(0.1, lr_decay=0.05, initial_accumulator_value=0.1),
        lambda p: T.Adagrad(p, 0.1, lr_decay=0.05, initial_accumulator_value=0.1),
        None,
    ),
    "adagrad_weight_decay_maximize": (
        optim.Adagrad(0.01, weight_decay=0.01, eps=1e-6, maximize=True),
        lambda p: T.Adagrad(p, 0.01, weight_decay=0.01, eps=1e-6, maximize=True),
        None,
    ),
    # A schedule as lr: torch's scheduler stepped once after every optimizer.step().
    "sgd_steplr": (
        optim.SGD(sched.StepLR(0.1, 10, 0.5), momentum=0.9),
        lambda p: T.SGD(p, 0.1, 0.9),
        lambda o: TS.StepLR(o, 10, 0.5),
    ),
    "sgd_sequential": (
        optim.SGD(
            sched.SequentialLR(
                [sched.LinearLR(0.1, 0.1, 1.0, 10), sched.MultiStepLR(0.1, [20, 50], 0.3)], [10]
            )
        ),
        lambda p: T.SGD(p, 0.1),
        lambda o: TS.SequentialLR(
            o, [TS.LinearLR(o, 0.1, 1.0, 10), TS.MultiStepLR(o, [20, 50], 0.3)], [10]
        ),
    ),
    "adam_cosine": (
        optim.Adam(sched.CosineAnnealingLR(1e-2, 30, 1e-4)),
        lambda p: T.Adam(p, 1e-2),
        lambda o: TS.CosineAnnealingLR(o, 30, 1e-4),
    ),
    "adamw_onecycle": (
        optim.AdamW(sched.OneCycleLR(1e-2, STEPS)),
        lambda p: T.AdamW(p, 1e-2),
        lambda o: TS.OneCycleLR(o, 1e-2, STEPS, cycle_momentum=False),
    ),
    "rmsprop_exponential": (
        optim.RMSprop(sched.ExponentialLR(1e-2, 0.98), momentum=0.5),
        lambda p: T.RMSprop(p, 1e-2, momentum=0.5),
        lambda o: TS.ExponentialLR(o, 0.98),
    ),
    "adagrad_lr_decay_lambda": (
        optim.Adagrad(sched.LambdaLR(0.1, lambda s: 0.99**s), lr_decay=0.01),
        lambda p: T.Adagrad(p, 0.1, lr_decay=0.01),
        lambda o: TS.LambdaLR(o, lambda s: 0.99**s),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_trajectory_matches_torch_float64(case):
    opt, make_torch_opt, make_torch_scheduler = CASES[case]
    params0, expected = torch_trajectory(make_torch_opt, make_torch_scheduler)
    got = jaxnet_trajectory(opt, params0)
    assert np.abs(expected[-1] - expected[0]).max() > 1e-3  # the parameters really moved
    np.testing.assert_allclose(got, expected, **TOL64)


@pytest.mark.parametrize("case", ["sgd_momentum", "adam", "adamw_onecycle"])
def test_trajectory_matches_torch_float32(case):
    opt, make_torch_opt, make_torch_scheduler = CASES[case]
    params0, expected = torch_trajectory(make_torch_opt, make_torch_scheduler, torch.float32)
    got = jaxnet_trajectory(opt, params0, jnp.float32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, **TOL32)


# optax's own versions that differ from torch; jaxnet follows torch (cases above).
OPTAX_DIFFERS = {
    # optax.amsgrad keeps the max of the bias-corrected second moment.
    "amsgrad": (optax.amsgrad(1e-2), lambda p: T.Adam(p, 1e-2, amsgrad=True)),
    # optax.adamw's default weight_decay is 1e-4, torch's 1e-2.
    "adamw_default_decay": (optax.adamw(1e-2), lambda p: T.AdamW(p, 1e-2)),
    # optax puts eps inside the square root.
    "rmsprop_eps": (optax.rmsprop(1e-2, decay=0.99, eps=1e-8), lambda p: T.RMSprop(p, 1e-2)),
    "adagrad_eps": (
        optax.adagrad(0.1, initial_accumulator_value=0.0, eps=1e-2),
        lambda p: T.Adagrad(p, 0.1, eps=1e-2),
    ),
}


@pytest.mark.parametrize("case", OPTAX_DIFFERS)
def test_optax_alias_differs_from_torch(case):
    opt, make_torch_opt = OPTAX_DIFFERS[case]
    params0, expected = torch_trajectory(make_torch_opt)
    got = jaxnet_trajectory(opt, params0)
    assert np.abs(got - expected).max() > 1e-6


def test_update_is_pure_and_keeps_dtype():
    params = {
        "0": {"weight": jnp.ones((16, 8), jnp.float32), "bias": jnp.zeros(16, jnp.float32)},
        "2": {"weight": jnp.ones((4, 16), jnp.float32), "bias": jnp.zeros(4, jnp.float32)},
    }
    grads = jax.tree.map(jnp.ones_like, params)
    opt = optim.Adam(sched.StepLR(1e-2, 2), amsgrad=True)
    state = opt.init(params)
    update = jax.jit(opt.update)
    first, _ = update(grads, state, params)
    again, _ = update(grads, state, params)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: optim.SGD(-0.1), ValueError, r"SGD: lr=-0\.1 must be >= 0"),
        (lambda: optim.SGD("0.1"), TypeError, r"SGD: lr must be a float or a schedule"),
        (lambda: optim.SGD(0.1, momentum=-0.9), ValueError, r"SGD: momentum=-0\.9 must be >= 0"),
        (lambda: optim.SGD(0.1, weight_decay=-1), ValueError, r"SGD: weight_decay=-1 must"),
        (lambda: optim.SGD(0.1, nesterov=True), ValueError, r"SGD: nesterov=True needs momentum"),
        (
            lambda: optim.SGD(0.1, momentum=0.9, dampening=0.1, nesterov=True),
            ValueError,
            r"dampening=0\.1",
        ),
        (lambda: optim.Adam(-1e-3), ValueError, r"Adam: lr=-0\.001 must be >= 0"),
        (lambda: optim.Adam(betas=(1.0, 0.999)), ValueError, r"Adam: betas\[0\]=1\.0 must be in"),
        (lambda: optim.Adam(betas=(0.9, -0.1)), ValueError, r"Adam: betas\[1\]=-0\.1 must be in"),
        (lambda: optim.Adam(betas=(0.9,)), ValueError, r"Adam: betas must be a pair"),
        (lambda: optim.Adam(eps=-1e-8), ValueError, r"Adam: eps=-1e-08 must be >= 0"),
        (lambda: optim.AdamW(weight_decay=-0.01), ValueError, r"AdamW: weight_decay=-0\.01"),
        (lambda: optim.AdamW(betas=(0.9, 1.5)), ValueError, r"AdamW: betas\[1\]=1\.5"),
        (lambda: optim.RMSprop(alpha=1.5), ValueError, r"RMSprop: alpha=1\.5 must be in \[0, 1\]"),
        (lambda: optim.RMSprop(momentum=-0.5), ValueError, r"RMSprop: momentum=-0\.5 must"),
        (lambda: optim.RMSprop(eps=-1.0), ValueError, r"RMSprop: eps=-1\.0 must be >= 0"),
        (lambda: optim.Adagrad(lr_decay=-0.1), ValueError, r"Adagrad: lr_decay=-0\.1 must"),
        (
            lambda: optim.Adagrad(initial_accumulator_value=-1.0),
            ValueError,
            r"Adagrad: initial_accumulator_value=-1\.0 must be >= 0",
        ),
        (lambda: optim.Adagrad(eps=-1e-10), ValueError, r"Adagrad: eps=-1e-10 must be >= 0"),
    ],
)
def test_invalid_hyperparameters_raise(make, error, match):
    with pytest.raises(error, match=match):
        make()


NAN = float("nan")


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("Adam", {"lr": NAN}, r"Adam: lr=nan must be >= 0"),
        ("Adam", {"eps": NAN}, r"Adam: eps=nan must be >= 0"),
        ("Adam", {"weight_decay": NAN}, r"Adam: weight_decay=nan must be >= 0"),
        ("Adam", {"betas": (NAN, 0.999)}, r"Adam: betas\[0\]=nan must be in \[0, 1\)"),
        ("AdamW", {"weight_decay": NAN}, r"AdamW: weight_decay=nan must be >= 0"),
        ("RMSprop", {"alpha": NAN}, r"RMSprop: alpha=nan must be in \[0, 1\]"),
        ("RMSprop", {"momentum": NAN}, r"RMSprop: momentum=nan must be >= 0"),
        ("Adagrad", {"lr_decay": NAN}, r"Adagrad: lr_decay=nan must be >= 0"),
        ("Adagrad", {"initial_accumulator_value": NAN}, r"initial_accumulator_value=nan"),
    ],
)
def test_nan_hyperparameters_raise_like_torch(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(optim, name)(**kwargs)
    with pytest.raises(ValueError, match="Invalid"):  # torch refuses the same NaN
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": NAN}, r"SGD: lr=nan must be >= 0"),
        ({"momentum": NAN}, r"SGD: momentum=nan must be >= 0"),
        ({"weight_decay": NAN}, r"SGD: weight_decay=nan must be >= 0"),
        ({"momentum": 0.9, "dampening": NAN}, r"SGD: dampening=nan must be a number, not NaN"),
    ],
)
def test_sgd_refuses_nan_that_torch_accepts(kwargs, match):
    """torch's SGD checks ``lr < 0``, ``momentum < 0`` and ``weight_decay < 0``, which NaN
    passes, and then steps to NaN parameters; jaxnet refuses NaN at construction."""
    params = [torch.ones(2, requires_grad=True)]
    opt = torch.optim.SGD(params, **{"lr": 0.1, **kwargs})
    params[0].grad = torch.ones(2)
    opt.step()
    opt.step()  # the second step reads the (NaN) momentum buffer
    assert torch.isnan(params[0]).all()
    with pytest.raises(ValueError, match=match):
        optim.SGD(**{"lr": 0.1, **kwargs})


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("SGD", {"lr": 0.1, "momentum": "0.9"}, r"SGD: momentum must be a float, got str"),
        ("Adam", {"betas": 0.9}, r"Adam: betas must be a pair \(beta1, beta2\), got float"),
        ("Adam", {"betas": ("0.9", 0.999)}, r"Adam: betas\[0\] must be a float, got str"),
        ("Adam", {"lr": "0.1"}, r"Adam: lr must be a float or a schedule"),
        ("Adam", {"eps": None}, r"Adam: eps must be a float, got NoneType"),
        ("RMSprop", {"alpha": "0.99"}, r"RMSprop: alpha must be a float, got str"),
    ],
)
def test_hyperparameters_that_are_not_numbers_raise_type_error_like_torch(name, kwargs, match):
    with pytest.raises(TypeError, match=match):
        getattr(optim, name)(**kwargs)
    with pytest.raises(TypeError):  # torch's own message is a bare comparison error
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)


@pytest.mark.parametrize(
    ("name", "arrays", "floats"),
    [
        ("SGD", {"lr": 0.1, "momentum": np.array(0.9)}, {"lr": 0.1, "momentum": 0.9}),
        ("SGD", {"lr": 0.1, "momentum": jnp.asarray(0.9)}, {"lr": 0.1, "momentum": 0.9}),
        ("Adam", {"betas": np.array([0.9, 0.999])}, {"betas": (0.9, 0.999)}),
        ("Adam", {"betas": (jnp.asarray(0.8), 0.99)}, {"betas": (0.8, 0.99)}),
        ("AdamW", {"weight_decay": jnp.asarray(0.05)}, {"weight_decay": 0.05}),
    ],
)
def test_zero_dim_array_hyperparameters_work_like_numbers(name, arrays, floats):
    """torch takes tensors for these too: the same trajectory as torch's, and as floats'."""
    torch_kwargs = {
        k: tuple(np.asarray(v).tolist())
        if k == "betas"
        else torch.tensor(float(v), dtype=torch.float64)
        for k, v in arrays.items()
    }
    params0, expected = torch_trajectory(lambda p: getattr(T, name)(p, **torch_kwargs))
    got = jaxnet_trajectory(getattr(optim, name)(**arrays), params0)
    np.testing.assert_allclose(got, expected, **TOL64)
    np.testing.assert_array_equal(got, jaxnet_trajectory(getattr(optim, name)(**floats), params0))


def test_traced_value_is_refused_where_python_decides_on_it():
    """Layers and transforms that branch in Python on a number refuse a traced one with
    their own name (optimisers take traced hyperparameters: test_optim_inject)."""
    from jaxnet import datasets, nn

    cases = {
        "dropout: p must be a concrete number": lambda v: nn.functional.dropout(
            jnp.ones(3), v, training=True, key=jax.random.key(0)
        ),
        "batch_norm: momentum must be a concrete number": lambda v: nn.functional.batch_norm(
            jnp.ones((2, 3)), None, None, training=True, momentum=v
        ),
        "sparse: sparsity must be a concrete number": lambda v: nn.init.sparse(
            jax.random.key(0), (4, 2), sparsity=v
        ),
        "random_horizontal_flip: p must be a concrete number": lambda v: (
            datasets.random_horizontal_flip(jax.random.key(0), jnp.ones((1, 1, 2, 2)), v)
        ),
    }
    for message, fn in cases.items():
        with pytest.raises(TypeError, match=message):
            jax.jit(fn)(0.5)
