"""jaxnet.optim.lr_scheduler against torch.optim.lr_scheduler, step by step.

torch's lr sequence is read from ``optimizer.param_groups[0]['lr']`` before each
``optimizer.step(); scheduler.step()``; jaxnet's schedule is evaluated on traced int32
steps under ``jit(vmap(...))``. (Schedules used as an optimiser's ``lr`` are checked
against torch's trajectories in ``test_optim.py``.)
"""

import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from experiments.lr_schedules import get_expon_lr_func  # the seed's NumPy helper
from jaxnet import optim
from jaxnet.optim import lr_scheduler as sched

TS = torch.optim.lr_scheduler
TOL = {"rtol": 1e-12, "atol": 1e-15}


def torch_lrs(lr, make_scheduler, steps):
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=lr)
    scheduler = make_scheduler(opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps - 1):
        opt.step()
        scheduler.step()
        lrs.append(opt.param_groups[0]["lr"])
    return np.array(lrs)


def jaxnet_lrs(schedule, steps):
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(steps, dtype=jnp.int32)))


ONECYCLE_LINEAR = {
    "pct_start": 0.25,
    "anneal_strategy": "linear",
    "div_factor": 10.0,
    "final_div_factor": 100.0,
}
ONECYCLE_THREE_PHASE = {"pct_start": 0.35, "three_phase": True}
# (base lr, torch scheduler factory, jaxnet schedule, steps)
CASES = {
    "step": (0.1, lambda o: TS.StepLR(o, 7), sched.StepLR(0.1, 7), 40),
    "step_gamma": (0.05, lambda o: TS.StepLR(o, 3, 0.5), sched.StepLR(0.05, 3, 0.5), 40),
    "step_growing": (0.01, lambda o: TS.StepLR(o, 5, 1.5), sched.StepLR(0.01, 5, 1.5), 40),
    "multistep": (
        0.1,
        lambda o: TS.MultiStepLR(o, [5, 12, 20]),
        sched.MultiStepLR(0.1, [5, 12, 20]),
        30,
    ),
    "multistep_repeated": (
        0.2,
        lambda o: TS.MultiStepLR(o, [4, 4, 9], 0.5),
        sched.MultiStepLR(0.2, [4, 4, 9], 0.5),
        15,
    ),
    "exponential": (0.1, lambda o: TS.ExponentialLR(o, 0.9), sched.ExponentialLR(0.1, 0.9), 60),
    "exponential_slow": (
        0.02,
        lambda o: TS.ExponentialLR(o, 0.995),
        sched.ExponentialLR(0.02, 0.995),
        60,
    ),
    # Past T_max torch keeps following the cosine: compare up to 3 * T_max.
    "cosine": (
        0.1,
        lambda o: TS.CosineAnnealingLR(o, 10),
        sched.CosineAnnealingLR(0.1, 10),
        31,
    ),
    "cosine_eta_min": (
        0.05,
        lambda o: TS.CosineAnnealingLR(o, 7, eta_min=0.01),
        sched.CosineAnnealingLR(0.05, 7, eta_min=0.01),
        30,
    ),
    "linear": (0.1, lambda o: TS.LinearLR(o), sched.LinearLR(0.1), 10),
    "linear_decay": (
        0.1,
        lambda o: TS.LinearLR(o, 1.0, 0.1, 8),
        sched.LinearLR(0.1, 1.0, 0.1, 8),
        12,
    ),
    "linear_warmup": (
        0.3,
        lambda o: TS.LinearLR(o, 0.01, 1.0, 20),
        sched.LinearLR(0.3, 0.01, 1.0, 20),
        25,
    ),
    # torch defines OneCycleLR for steps 0..total_steps.
    "onecycle": (
        0.1,
        lambda o: TS.OneCycleLR(o, 0.1, 50, cycle_momentum=False),
        sched.OneCycleLR(0.1, 50),
        51,
    ),
    "onecycle_linear": (
        0.1,
        lambda o: TS.OneCycleLR(o, 0.2, 100, **ONECYCLE_LINEAR, cycle_momentum=False),
        sched.OneCycleLR(0.2, 100, **ONECYCLE_LINEAR),
        101,
    ),
    "onecycle_three_phase": (
        0.1,
        lambda o: TS.OneCycleLR(o, 0.1, 37, **ONECYCLE_THREE_PHASE, cycle_momentum=False),
        sched.OneCycleLR(0.1, 37, **ONECYCLE_THREE_PHASE),
        38,
    ),
    "onecycle_short_rise": (
        0.1,
        lambda o: TS.OneCycleLR(o, 0.05, 3, cycle_momentum=False),
        sched.OneCycleLR(0.05, 3),
        4,
    ),
    "lambda": (
        0.1,
        lambda o: TS.LambdaLR(o, lambda s: 0.95**s),
        sched.LambdaLR(0.1, lambda s: 0.95**s),
        30,
    ),
    "lambda_warmup": (
        0.1,
        lambda o: TS.LambdaLR(o, lambda s: min(1.0, (s + 1) / 8)),
        # The step is an int32 array: `(s + 1) / 8` would be computed in float32.
        sched.LambdaLR(0.1, lambda s: jnp.minimum(1.0, (s + 1) * 0.125)),
        20,
    ),
    "sequential_warmup_exponential": (
        0.1,
        lambda o: TS.SequentialLR(o, [TS.LinearLR(o, 0.1, 1.0, 5), TS.ExponentialLR(o, 0.9)], [5]),
        sched.SequentialLR([sched.LinearLR(0.1, 0.1, 1.0, 5), sched.ExponentialLR(0.1, 0.9)], [5]),
        30,
    ),
    "sequential_three": (
        0.1,
        lambda o: TS.SequentialLR(
            o,
            [
                TS.LinearLR(o, 0.2, 1.0, 4),
                TS.CosineAnnealingLR(o, 10, 0.001),
                TS.StepLR(o, 3, 0.5),
            ],
            [6, 16],
        ),
        sched.SequentialLR(
            [
                sched.LinearLR(0.1, 0.2, 1.0, 4),
                sched.CosineAnnealingLR(0.1, 10, 0.001),
                sched.StepLR(0.1, 3, 0.5),
            ],
            [6, 16],
        ),
        30,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_schedule_matches_torch(case):
    lr, make_torch_scheduler, schedule, steps = CASES[case]
    expected = torch_lrs(lr, make_torch_scheduler, steps)
    got = jaxnet_lrs(schedule, steps)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, **TOL)
    # A Python int step, outside jit, gives the same value.
    np.testing.assert_allclose(float(schedule(steps - 1)), expected[-1], **TOL)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr_init": 1.6e-4, "lr_final": 1.6e-6, "max_steps": 100},
        {"lr_init": 8e-4, "lr_final": 1.6e-6, "lr_delay_mult": 0.01, "max_steps": 80},
        {
            "lr_init": 1e-2,
            "lr_final": 1e-4,
            "lr_delay_steps": 20,
            "lr_delay_mult": 0.01,
            "max_steps": 90,
        },
        {"lr_init": 0.0, "lr_final": 0.0, "max_steps": 50},
    ],
)
def test_get_expon_lr_func_matches_seed(kwargs):
    steps = np.arange(-3, 110)
    expected = np.array([get_expon_lr_func(**kwargs)(int(s)) for s in steps])
    schedule = sched.get_expon_lr_func(**kwargs)
    got = np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps, jnp.int32)))
    np.testing.assert_allclose(got, expected, **TOL)
    assert float(schedule(-1)) == 0.0
    np.testing.assert_allclose(float(schedule(7)), expected[10], **TOL)


def test_cosine_keeps_torch_period_unlike_optax():
    import optax

    T_max = 10
    past = np.arange(T_max, 2 * T_max + 1)
    ours = jaxnet_lrs(sched.CosineAnnealingLR(1.0, T_max), 2 * T_max + 1)[past]
    np.testing.assert_allclose(ours, (1 + np.cos(math.pi * past / T_max)) / 2, **TOL)
    held = np.asarray(jax.vmap(optax.cosine_decay_schedule(1.0, T_max))(jnp.asarray(past)))
    np.testing.assert_allclose(held, 0.0, atol=1e-15)  # optax holds the minimum


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: sched.StepLR(0.1, 0), ValueError, r"StepLR: step_size=0 must be a positive int"),
        (lambda: sched.StepLR(0.1, 2.5), TypeError, r"StepLR: step_size=2\.5 must be a positive"),
        (lambda: sched.StepLR(0.1, 5, gamma="0.5"), TypeError, r"StepLR: gamma must be a float"),
        (lambda: sched.StepLR(0.1, 5, gamma=math.nan), ValueError, r"StepLR: gamma=nan must be"),
        (lambda: sched.MultiStepLR(0.1, [2.0]), TypeError, r"MultiStepLR: milestones\[0\]=2\.0"),
        (lambda: sched.StepLR(-0.1, 5), ValueError, r"StepLR: lr=-0\.1 must be >= 0"),
        (lambda: sched.StepLR(0.1, 5, gamma=0.0), ValueError, r"StepLR: gamma=0\.0 must be > 0"),
        (
            lambda: sched.StepLR(sched.ExponentialLR(0.1, 0.9), 5),
            TypeError,
            r"StepLR: lr must be a float, got Schedule",
        ),
        (
            lambda: sched.MultiStepLR(0.1, [10, 5]),
            ValueError,
            r"MultiStepLR: milestones must be sorted",
        ),
        (
            lambda: sched.MultiStepLR(0.1, [0, 5]),
            ValueError,
            r"MultiStepLR: milestones\[0\]=0 must",
        ),
        (lambda: sched.ExponentialLR(0.1, -0.9), ValueError, r"ExponentialLR: gamma=-0\.9 must"),
        (lambda: sched.CosineAnnealingLR(0.1, 0), ValueError, r"CosineAnnealingLR: T_max=0 must"),
        (lambda: sched.LinearLR(0.1, start_factor=0.0), ValueError, r"LinearLR: start_factor=0\.0"),
        (lambda: sched.LinearLR(0.1, end_factor=1.5), ValueError, r"LinearLR: end_factor=1\.5"),
        (lambda: sched.LinearLR(0.1, total_iters=0), ValueError, r"LinearLR: total_iters=0 must"),
        (lambda: sched.OneCycleLR(0.1, 0), ValueError, r"OneCycleLR: total_steps=0 must"),
        (lambda: sched.OneCycleLR(-0.1, 10), ValueError, r"OneCycleLR: max_lr=-0\.1 must be >= 0"),
        (
            lambda: sched.OneCycleLR(math.nan, 10),
            ValueError,
            r"OneCycleLR: max_lr=nan must be >= 0",
        ),
        (
            lambda: sched.OneCycleLR(0.1, 10, div_factor=-25.0),
            ValueError,
            r"OneCycleLR: div_factor=-25\.0 must be > 0",
        ),
        (
            lambda: sched.OneCycleLR(0.1, 10, pct_start=math.nan),
            ValueError,
            r"OneCycleLR: pct_start=nan must be",
        ),
        (
            lambda: sched.LinearLR(0.1, start_factor="0.5"),
            TypeError,
            r"LinearLR: start_factor must be a float, got str",
        ),
        (
            lambda: sched.CosineAnnealingLR(0.1, 10, eta_min=math.nan),
            ValueError,
            r"CosineAnnealingLR: eta_min=nan must be a number, not NaN",
        ),
        (
            lambda: sched.OneCycleLR(0.1, 10, pct_start=1.5),
            ValueError,
            r"OneCycleLR: pct_start=1\.5 must be",
        ),
        (
            lambda: sched.OneCycleLR(0.1, 10, anneal_strategy="exp"),
            ValueError,
            r"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got 'exp'",
        ),
        (
            lambda: sched.OneCycleLR(0.1, 10, pct_start=0.1),
            ValueError,
            r"OneCycleLR: a phase has zero length",
        ),
        (lambda: sched.LambdaLR(0.1, 0.5), TypeError, r"LambdaLR: lr_lambda must be callable"),
        (
            lambda: sched.SequentialLR([sched.StepLR(0.1, 2), sched.StepLR(0.1, 3)], [2, 4]),
            ValueError,
            r"SequentialLR: expected 1 milestones for 2 schedules, got 2",
        ),
        (
            lambda: sched.SequentialLR([sched.StepLR(0.1, 2)] * 3, [6, 4]),
            ValueError,
            r"SequentialLR: milestones must be increasing, got \[6, 4\]",
        ),
        (lambda: sched.SequentialLR([0.1], []), TypeError, r"SequentialLR: schedules must be"),
        (
            lambda: sched.get_expon_lr_func(1e-2, 0.0),
            ValueError,
            r"get_expon_lr_func: a log-linear decay needs lr_init=0\.01 and lr_final=0\.0",
        ),
        (lambda: sched.get_expon_lr_func(1e-2, 1e-4, max_steps=0), ValueError, r"max_steps=0"),
        (lambda: sched.get_expon_lr_func(1e-2, 1e-4, -5), ValueError, r"lr_delay_steps=-5"),
    ],
)
def test_invalid_arguments_raise(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("factor", ["div_factor", "final_div_factor"])
def test_one_cycle_zero_div_factor_raises_value_error(factor):
    """torch divides by the factor and raises ZeroDivisionError; jaxnet refuses it as a
    bad value at construction."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ZeroDivisionError):
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10, **{factor: 0})
    with pytest.raises(ValueError, match=rf"OneCycleLR: {factor}=0 must be > 0"):
        sched.OneCycleLR(0.1, 10, **{factor: 0})


# --------------------------------------------------------------------------------------
# PyTorch's test/optim/test_lrscheduler.py, case by case. Its value lists are replaced by
# live torch: each torch scheduler runs on torch's test set-up (an SGD over two param
# groups, lr 0.05 and 0.5, or Adam where torch's test uses Adam), and every group's lr
# (and momentum or beta1, where the scheduler cycles it) is compared with the jaxnet
# schedule built for that group's lr. Torch's list-valued arguments (one per group) are
# one jaxnet schedule per group.


def torch_groups(lrs=(0.05, 0.5), optimizer="sgd"):
    params = [torch.zeros(1, requires_grad=True) for _ in lrs]
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)]
    if optimizer == "adam":
        return torch.optim.Adam(groups, lr=lrs[0])
    return torch.optim.SGD(groups, lr=lrs[0])


def group_values(opt):
    """Each group's (lr, momentum or beta1)."""
    return [
        (g["lr"], g["betas"][0] if "betas" in g else g.get("momentum")) for g in opt.param_groups
    ]


def torch_run(case):
    """torch's values per step and group: ``(steps, groups, 2)`` (lr, momentum).

    Without ``epochs``: read, then ``optimizer.step(); scheduler.step()`` (torch's
    ``_test``/``_test_cycle_lr``); a list of schedulers is stepped in order (torch's
    compound tests). With ``epochs``: ``scheduler.step(epoch)``, then read (torch's
    ``_test_with_epoch`` and its CosineAnnealingWarmRestarts tests).
    """
    opt = torch_groups(case.lrs, case.optimizer)
    made = case.torch(opt)
    schedulers = made if isinstance(made, list) else [made]
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation warning for step(epoch)
        if case.epochs is None:
            for step in range(case.steps):
                values.append(group_values(opt))
                if step < case.steps - 1:  # OneCycleLR refuses steps past total_steps
                    opt.step()
                    for s in schedulers:
                        s.step()
        else:
            for epoch in case.epochs:
                opt.step()
                for s in schedulers:
                    s.step(epoch)
                values.append(group_values(opt))
    return np.array(values, dtype=np.float64)


class Case(NamedTuple):
    torch: Callable  # optimizer -> scheduler, or a list stepped in turn
    jaxnet: Callable  # (group index, group lr) -> jaxnet schedule
    steps: int = 10
    lrs: tuple = (0.05, 0.5)
    epochs: list | None = None
    optimizer: str = "sgd"
    tol: dict = TOL


def same(make):
    """The same jaxnet schedule for every group, built on the group's lr."""
    return lambda i, lr: make(lr)


COS_CHAIN_TOL = {"rtol": 0, "atol": 1e-9}  # eta_min = 1e-10 in torch's affine cosine update
XS = [0, 0.25, 0.5, 0.75, 1, 0.75, 0.5, 0.25, 0, 0.25, 0.5, 0.75, 1]
TORCH_SUITE = {
    # --- single schedulers
    "step_lr": Case(
        lambda o: TS.StepLR(o, gamma=0.1, step_size=3),
        same(lambda lr: sched.StepLR(lr, 3, 0.1)),
        12,
    ),
    "get_last_lr_step_lr": Case(
        lambda o: TS.StepLR(o, 3, gamma=0.1), same(lambda lr: sched.StepLR(lr, 3)), 10, (0.1,)
    ),
    "multi_step_lr": Case(
        lambda o: TS.MultiStepLR(o, gamma=0.1, milestones=[2, 5, 9]),
        same(lambda lr: sched.MultiStepLR(lr, [2, 5, 9], 0.1)),
        12,
    ),
    "constantlr": Case(
        lambda o: TS.ConstantLR(o, factor=1.0 / 2, total_iters=5),
        same(lambda lr: sched.ConstantLR(lr, 0.5, 5)),
    ),
    "linearlr": Case(
        lambda o: TS.LinearLR(o, start_factor=0.5, total_iters=4),
        same(lambda lr: sched.LinearLR(lr, 0.5, total_iters=4)),
    ),
    "get_last_lr_linearlr": Case(
        lambda o: TS.LinearLR(o, start_factor=1 / 4, end_factor=3 / 5, total_iters=4),
        same(lambda lr: sched.LinearLR(lr, 1 / 4, 3 / 5, 4)),
    ),
    "exp_lr": Case(
        lambda o: TS.ExponentialLR(o, gamma=0.9), same(lambda lr: sched.ExponentialLR(lr, 0.9))
    ),
    "poly_lr": Case(
        lambda o: TS.PolynomialLR(o, power=0.9, total_iters=5),
        same(lambda lr: sched.PolynomialLR(lr, 5, 0.9)),
    ),
    "poly_lr_defaults": Case(lambda o: TS.PolynomialLR(o), same(sched.PolynomialLR), 20),
    "cos_anneal_lr": Case(
        lambda o: TS.CosineAnnealingLR(o, T_max=10, eta_min=1e-10),
        same(lambda lr: sched.CosineAnnealingLR(lr, 10, 1e-10)),
    ),
    "closed_form_cos_anneal_lr": Case(
        lambda o: TS.CosineAnnealingLR(o, T_max=5, eta_min=1e-10),
        same(lambda lr: sched.CosineAnnealingLR(lr, 5, 1e-10)),
        20,
    ),
    "closed_form_linearlr": Case(
        lambda o: TS.LinearLR(o, start_factor=1.0 / 3, end_factor=0.7, total_iters=4),
        same(lambda lr: sched.LinearLR(lr, 1.0 / 3, 0.7, 4)),
        20,
    ),
    "closed_form_constantlr": Case(
        lambda o: TS.ConstantLR(o, factor=1.0 / 3, total_iters=4),
        same(lambda lr: sched.ConstantLR(lr, 1.0 / 3, 4)),
        20,
    ),
    "lambda_lr": Case(
        lambda o: TS.LambdaLR(o, lr_lambda=[lambda x1: 0.9**x1, lambda x2: 0.8**x2]),
        lambda i, lr: sched.LambdaLR(lr, lambda x: (0.9, 0.8)[i] ** x),
        lrs=(0.05, 0.4),
    ),
    "multiplicative_lr": Case(
        lambda o: TS.MultiplicativeLR(o, lr_lambda=[lambda x1: 0.9, lambda x2: 0.8]),
        lambda i, lr: sched.MultiplicativeLR(lr, lambda x: (0.9, 0.8)[i]),
        lrs=(0.05, 0.4),
    ),
    "multiplicative_lr_of_the_epoch": Case(
        lambda o: TS.MultiplicativeLR(o, lambda e: 1 / (1 + 0.1 * e)),
        same(lambda lr: sched.MultiplicativeLR(lr, lambda e: 1 / (1 + 0.1 * e))),
        15,
    ),
    # --- step(epoch): torch's closed forms (its _test_with_epoch, _test_against_closed_form)
    **{
        f"with_epoch_{name}": Case(make_torch, same(make_jaxnet), epochs=list(range(20)))
        for name, make_torch, make_jaxnet in [
            ("step_lr", lambda o: TS.StepLR(o, 3, 0.1), lambda lr: sched.StepLR(lr, 3, 0.1)),
            (
                "multi_step_lr",
                lambda o: TS.MultiStepLR(o, [2, 5, 9], 0.1),
                lambda lr: sched.MultiStepLR(lr, [2, 5, 9], 0.1),
            ),
            (
                "constantlr",
                lambda o: TS.ConstantLR(o, 0.5, 5),
                lambda lr: sched.ConstantLR(lr, 0.5, 5),
            ),
            (
                "linearlr",
                lambda o: TS.LinearLR(o, 0.5, total_iters=4),
                lambda lr: sched.LinearLR(lr, 0.5, total_iters=4),
            ),
            ("exp_lr", lambda o: TS.ExponentialLR(o, 0.9), lambda lr: sched.ExponentialLR(lr, 0.9)),
            (
                "poly_lr",
                lambda o: TS.PolynomialLR(o, power=0.9),
                lambda lr: sched.PolynomialLR(lr, power=0.9),
            ),
            (
                "cos_anneal_lr",
                lambda o: TS.CosineAnnealingLR(o, 5, 1e-10),
                lambda lr: sched.CosineAnnealingLR(lr, 5, 1e-10),
            ),
        ]
    },
    # --- SequentialLR
    "sequentiallr1": Case(
        lambda o: TS.SequentialLR(
            o, [TS.ExponentialLR(o, gamma=0.8), TS.StepLR(o, gamma=0.1, step_size=4)], [3]
        ),
        same(
            lambda lr: sched.SequentialLR(
                [sched.ExponentialLR(lr, 0.8), sched.StepLR(lr, 4, 0.1)], [3]
            )
        ),
        19,
    ),
    "sequentiallr2": Case(
        lambda o: TS.SequentialLR(
            o, [TS.ConstantLR(o, factor=0.1, total_iters=3), TS.ExponentialLR(o, gamma=0.9)], [3]
        ),
        same(
            lambda lr: sched.SequentialLR(
                [sched.ConstantLR(lr, 0.1, 3), sched.ExponentialLR(lr, 0.9)], [3]
            )
        ),
        13,
    ),
    "sequentiallr3": Case(
        lambda o: TS.SequentialLR(
            o,
            [
                TS.ConstantLR(o, factor=0.1, total_iters=3),
                TS.ExponentialLR(o, gamma=0.8),
                TS.StepLR(o, gamma=0.1, step_size=2),
            ],
            [3, 6],
        ),
        same(
            lambda lr: sched.SequentialLR(
                [
                    sched.ConstantLR(lr, 0.1, 3),
                    sched.ExponentialLR(lr, 0.8),
                    sched.StepLR(lr, 2, 0.1),
                ],
                [3, 6],
            )
        ),
        12,
    ),
    "sequentiallr4": Case(  # two ConstantLRs do not change the initial lr
        lambda o: TS.SequentialLR(
            o, [TS.ConstantLR(o, factor=1), TS.ConstantLR(o, factor=0.1)], [10]
        ),
        same(
            lambda lr: sched.SequentialLR(
                [sched.ConstantLR(lr, 1), sched.ConstantLR(lr, 0.1)], [10]
            )
        ),
        15,
        (0.1,),
    ),
    "sequentiallr5_chained": Case(
        lambda o: TS.SequentialLR(
            o,
            [
                TS.ChainedScheduler(
                    [
                        TS.LinearLR(o, start_factor=0.1, total_iters=5),
                        TS.ConstantLR(o, factor=0.1, total_iters=5),
                    ]
                ),
                TS.ConstantLR(o, factor=0.5, total_iters=5),
            ],
            [5],
        ),
        same(
            lambda lr: sched.SequentialLR(
                [
                    sched.ChainedScheduler(
                        [sched.LinearLR(lr, 0.1, total_iters=5), sched.ConstantLR(lr, 0.1, 5)]
                    ),
                    sched.ConstantLR(lr, 0.5, 5),
                ],
                [5],
            )
        ),
    ),
    "sequentiallr_does_not_alias_lr_and_initial_lr": Case(
        lambda o: TS.SequentialLR(
            o,
            [TS.LinearLR(o, 0.1, 0.8, total_iters=4), TS.LinearLR(o, 0.8, 0.1, total_iters=4)],
            [4],
        ),
        same(
            lambda lr: sched.SequentialLR(
                [sched.LinearLR(lr, 0.1, 0.8, 4), sched.LinearLR(lr, 0.8, 0.1, 4)], [4]
            )
        ),
        8,
        (2.0,),
    ),
    # SequentialLR composes with the schedulers torch's value lists do not cover
    "sequential_polynomial_warm_restarts": Case(
        lambda o: TS.SequentialLR(
            o, [TS.PolynomialLR(o, 4, 2.0), TS.CosineAnnealingWarmRestarts(o, 3, 2)], [6]
        ),
        same(
            lambda lr: sched.SequentialLR(
                [sched.PolynomialLR(lr, 4, 2.0), sched.CosineAnnealingWarmRestarts(lr, 3, 2)], [6]
            )
        ),
        30,
    ),
    "sequential_lambda_cyclic": Case(
        lambda o: TS.SequentialLR(
            o,
            [
                TS.LambdaLR(o, lambda e: 1 / (e + 1)),
                TS.CyclicLR(o, 0.01, 0.1, 2, cycle_momentum=False),
            ],
            [3],
        ),
        lambda i, lr: sched.SequentialLR(
            [
                sched.LambdaLR(lr, lambda e: 1 / (e + 1.0)),
                sched.CyclicLR(0.01, 0.1, 2, cycle_momentum=False),
            ],
            [3],
        ),
        12,
        (0.1,),
    ),
    "sequential_exponential_onecycle": Case(  # OneCycleLR sets every group's initial_lr
        lambda o: TS.SequentialLR(
            o, [TS.ExponentialLR(o, 0.5), TS.OneCycleLR(o, 0.1, 6, cycle_momentum=False)], [3]
        ),
        lambda i, lr: sched.SequentialLR(
            [sched.ExponentialLR(0.1 / 25, 0.5), sched.OneCycleLR(0.1, 6, cycle_momentum=False)],
            [3],
        ),
        9,
        (0.1,),
    ),
    # --- ChainedScheduler, and torch's compound tests (schedulers stepped in turn)
    "chained_lr1": Case(
        lambda o: TS.ChainedScheduler([TS.StepLR(o, gamma=0.1, step_size=3)]),
        same(lambda lr: sched.ChainedScheduler([sched.StepLR(lr, 3, 0.1)])),
    ),
    "chained_lr2": Case(
        lambda o: TS.ChainedScheduler([TS.LinearLR(o, start_factor=0.4, total_iters=3)]),
        same(lambda lr: sched.ChainedScheduler([sched.LinearLR(lr, 0.4, total_iters=3)])),
    ),
    "chained_lr3": Case(
        lambda o: TS.ChainedScheduler(
            [
                TS.LinearLR(o, start_factor=0.4, total_iters=3),
                TS.MultiStepLR(o, milestones=[4, 8, 10], gamma=0.1),
            ]
        ),
        same(
            lambda lr: sched.ChainedScheduler(
                [sched.LinearLR(lr, 0.4, total_iters=3), sched.MultiStepLR(lr, [4, 8, 10], 0.1)]
            )
        ),
        14,
    ),
    "chained_lr4": Case(
        lambda o: TS.ChainedScheduler(
            [
                TS.ExponentialLR(o, gamma=0.9),
                TS.ConstantLR(o, factor=0.2, total_iters=4),
                TS.StepLR(o, gamma=0.1, step_size=3),
            ]
        ),
        same(
            lambda lr: sched.ChainedScheduler(
                [
                    sched.ExponentialLR(lr, 0.9),
                    sched.ConstantLR(lr, 0.2, 4),
                    sched.StepLR(lr, 3, 0.1),
                ]
            )
        ),
        9,
    ),
    "chained_lr5": Case(
        lambda o: TS.ChainedScheduler(
            [TS.PolynomialLR(o, power=0.9, total_iters=5), TS.ConstantLR(o, factor=0.1)]
        ),
        same(
            lambda lr: sched.ChainedScheduler(
                [sched.PolynomialLR(lr, 5, 0.9), sched.ConstantLR(lr, 0.1)]
            )
        ),
    ),
    "chained_multiplicative_linear": Case(
        lambda o: TS.ChainedScheduler(
            [TS.MultiplicativeLR(o, lambda e: 0.9), TS.LinearLR(o, 0.5, total_iters=4)]
        ),
        same(
            lambda lr: sched.ChainedScheduler(
                [sched.MultiplicativeLR(lr, lambda e: 0.9), sched.LinearLR(lr, 0.5, total_iters=4)]
            )
        ),
    ),
    **{
        f"compound_{name}": Case(
            lambda o, m=make_torch: m(o),
            same(lambda lr, m=make_jaxnet: sched.ChainedScheduler(m(lr))),
            tol=tol,
        )
        for name, make_torch, make_jaxnet, tol in [
            (
                "step_and_multistep_lr",
                lambda o: [
                    TS.StepLR(o, gamma=0.1, step_size=3),
                    TS.MultiStepLR(o, gamma=0.1, milestones=[2, 5, 9]),
                ],
                lambda lr: [sched.StepLR(lr, 3, 0.1), sched.MultiStepLR(lr, [2, 5, 9], 0.1)],
                TOL,
            ),
            (
                "step_and_exp_lr",
                lambda o: [TS.StepLR(o, gamma=0.1, step_size=3), TS.ExponentialLR(o, gamma=0.9)],
                lambda lr: [sched.StepLR(lr, 3, 0.1), sched.ExponentialLR(lr, 0.9)],
                TOL,
            ),
            (
                "exp_and_multistep_lr",
                lambda o: [
                    TS.MultiStepLR(o, gamma=0.1, milestones=[2, 5, 9]),
                    TS.ExponentialLR(o, gamma=0.9),
                ],
                lambda lr: [sched.MultiStepLR(lr, [2, 5, 9], 0.1), sched.ExponentialLR(lr, 0.9)],
                TOL,
            ),
            (
                "exp_and_linearlr",
                lambda o: [
                    TS.LinearLR(o, start_factor=0.4, end_factor=0.9, total_iters=4),
                    TS.ExponentialLR(o, gamma=0.9),
                ],
                lambda lr: [sched.LinearLR(lr, 0.4, 0.9, 4), sched.ExponentialLR(lr, 0.9)],
                TOL,
            ),
            (
                "step_and_constantlr",
                lambda o: [
                    TS.StepLR(o, gamma=0.1, step_size=3),
                    TS.ConstantLR(o, factor=0.4, total_iters=4),
                ],
                lambda lr: [sched.StepLR(lr, 3, 0.1), sched.ConstantLR(lr, 0.4, 4)],
                TOL,
            ),
            (
                "linearlr_and_multistep_lr",
                lambda o: [
                    TS.MultiStepLR(o, gamma=0.1, milestones=[2, 5, 9]),
                    TS.LinearLR(o, start_factor=0.4, total_iters=4),
                ],
                lambda lr: [
                    sched.MultiStepLR(lr, [2, 5, 9], 0.1),
                    sched.LinearLR(lr, 0.4, total_iters=4),
                ],
                TOL,
            ),
            (
                "cosanneal_and_step_lr",
                lambda o: [
                    TS.CosineAnnealingLR(o, T_max=10, eta_min=1e-10),
                    TS.StepLR(o, gamma=0.1, step_size=3),
                ],
                lambda lr: [sched.CosineAnnealingLR(lr, 10, 1e-10), sched.StepLR(lr, 3, 0.1)],
                COS_CHAIN_TOL,
            ),
            (
                "cosanneal_and_multistep_lr",
                lambda o: [
                    TS.CosineAnnealingLR(o, T_max=10, eta_min=1e-10),
                    TS.MultiStepLR(o, gamma=0.1, milestones=[2, 5, 9]),
                ],
                lambda lr: [
                    sched.CosineAnnealingLR(lr, 10, 1e-10),
                    sched.MultiStepLR(lr, [2, 5, 9], 0.1),
                ],
                COS_CHAIN_TOL,
            ),
            (
                "cosanneal_and_linearlr",
                lambda o: [
                    TS.LinearLR(o, start_factor=0.4, total_iters=4),
                    TS.CosineAnnealingLR(o, T_max=10, eta_min=1e-10),
                ],
                lambda lr: [
                    sched.LinearLR(lr, 0.4, total_iters=4),
                    sched.CosineAnnealingLR(lr, 10, 1e-10),
                ],
                COS_CHAIN_TOL,
            ),
            (
                "cosanneal_and_exp_lr",
                lambda o: [
                    TS.CosineAnnealingLR(o, T_max=10, eta_min=1e-10),
                    TS.ExponentialLR(o, gamma=0.1),
                ],
                lambda lr: [sched.CosineAnnealingLR(lr, 10, 1e-10), sched.ExponentialLR(lr, 0.1)],
                COS_CHAIN_TOL,
            ),
            (
                "cosanneal_no_eta_min_and_exp_lr",  # eta_min = 0: exact up to T_max
                lambda o: [TS.CosineAnnealingLR(o, T_max=10), TS.ExponentialLR(o, gamma=0.8)],
                lambda lr: [sched.CosineAnnealingLR(lr, 10), sched.ExponentialLR(lr, 0.8)],
                TOL,
            ),
        ]
    },
    # --- CyclicLR: lr and momentum (torch's _test_cycle_lr)
    "cycle_lr_triangular_mode_one_lr": Case(
        lambda o: TS.CyclicLR(
            o,
            base_lr=1,
            max_lr=5,
            step_size_up=4,
            cycle_momentum=True,
            base_momentum=1,
            max_momentum=5,
            mode="triangular",
        ),
        same(lambda lr: sched.CyclicLR(1, 5, 4, base_momentum=1, max_momentum=5)),
        11,
    ),
    "cycle_lr_triangular_mode_one_lr_no_momentum": Case(
        lambda o: TS.CyclicLR(
            o, base_lr=1, max_lr=5, step_size_up=4, cycle_momentum=False, mode="triangular"
        ),
        same(lambda lr: sched.CyclicLR(1, 5, 4, cycle_momentum=False)),
        11,
    ),
    "cycle_lr_triangular2_mode_one_lr": Case(
        lambda o: TS.CyclicLR(
            o,
            base_lr=1,
            max_lr=5,
            step_size_up=4,
            cycle_momentum=True,
            base_momentum=1,
            max_momentum=5,
            mode="triangular2",
        ),
        same(
            lambda lr: sched.CyclicLR(1, 5, 4, mode="triangular2", base_momentum=1, max_momentum=5)
        ),
        22,
    ),
    "cycle_lr_exp_range_mode_one_lr": Case(
        lambda o: TS.CyclicLR(
            o,
            base_lr=1,
            max_lr=5,
            step_size_up=4,
            cycle_momentum=True,
            base_momentum=1,
            max_momentum=5,
            mode="exp_range",
            gamma=0.9,
        ),
        same(
            lambda lr: sched.CyclicLR(
                1, 5, 4, mode="exp_range", gamma=0.9, base_momentum=1, max_momentum=5
            )
        ),
        len(XS),
    ),
    "cycle_lr_triangular_mode": Case(
        lambda o: TS.CyclicLR(
            o,
            base_lr=[1, 2],
            max_lr=[5, 6],
            step_size_up=4,
            cycle_momentum=True,
            base_momentum=[1, 2],
            max_momentum=[5, 6],
        ),
        lambda i, lr: sched.CyclicLR(1 + i, 5 + i, 4, base_momentum=1 + i, max_momentum=5 + i),
        11,
    ),
    "cycle_lr_triangular2_mode": Case(
        lambda o: TS.CyclicLR(
            o,
            base_lr=[1, 3],
            max_lr=[5, 7],
            step_size_up=4,
            cycle_momentum=True,
            base_momentum=[1, 3],
            max_momentum=[5, 7],
            mode="triangular2",
        ),
        lambda i, lr: sched.CyclicLR(
            1 + 2 * i,
            5 + 2 * i,
            4,
            mode="triangular2",
            base_momentum=1 + 2 * i,
            max_momentum=5 + 2 * i,
        ),
        22,
    ),
    "cycle_lr_exp_range_mode": Case(
        lambda o: TS.CyclicLR(
            o,
            base_lr=[1, 5],
            max_lr=[5, 12],
            step_size_up=4,
            cycle_momentum=True,
            base_momentum=[1, 5],
            max_momentum=[5, 12],
            mode="exp_range",
            gamma=0.9,
        ),
        lambda i, lr: sched.CyclicLR(
            (1, 5)[i],
            (5, 12)[i],
            4,
            mode="exp_range",
            gamma=0.9,
            base_momentum=(1, 5)[i],
            max_momentum=(5, 12)[i],
        ),
        len(XS),
    ),
    "cycle_lr_triangular_mode_step_size_up_down": Case(
        lambda o: TS.CyclicLR(
            o,
            base_lr=1,
            max_lr=5,
            step_size_up=4,
            step_size_down=6,
            cycle_momentum=True,
            base_momentum=1,
            max_momentum=5,
        ),
        same(lambda lr: sched.CyclicLR(1, 5, 4, 6, base_momentum=1, max_momentum=5)),
        11,
    ),
    "cycle_lr_triangular2_mode_step_size_up_down": Case(
        lambda o: TS.CyclicLR(
            o,
            base_lr=[1, 3],
            max_lr=[5, 7],
            step_size_up=2,
            step_size_down=6,
            cycle_momentum=True,
            base_momentum=[1, 3],
            max_momentum=[5, 7],
            mode="triangular2",
        ),
        lambda i, lr: sched.CyclicLR(
            1 + 2 * i,
            5 + 2 * i,
            2,
            6,
            mode="triangular2",
            base_momentum=1 + 2 * i,
            max_momentum=5 + 2 * i,
        ),
        24,
    ),
    "cycle_lr_exp_range_mode_step_size_up_down": Case(
        lambda o: TS.CyclicLR(
            o,
            base_lr=1,
            max_lr=5,
            step_size_up=2,
            step_size_down=6,
            cycle_momentum=True,
            base_momentum=1,
            max_momentum=5,
            mode="exp_range",
            gamma=0.9,
        ),
        same(
            lambda lr: sched.CyclicLR(
                1, 5, 2, 6, mode="exp_range", gamma=0.9, base_momentum=1, max_momentum=5
            )
        ),
        13,
    ),
    "cycle_lr_with_momentumless_optimizer": Case(
        lambda o: TS.CyclicLR(o, base_lr=1, max_lr=5, step_size_up=4, cycle_momentum=False),
        same(lambda lr: sched.CyclicLR(1, 5, 4, cycle_momentum=False)),
        11,
        optimizer="adam",
    ),
    "cycle_lr_beta1_defaults": Case(  # torch's default momenta, cycled into Adam's beta1
        lambda o: TS.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3),
        same(lambda lr: sched.CyclicLR(0.01, 0.1, 3)),
        15,
        optimizer="adam",
    ),
    "cycle_lr_scale_fn_cycle": Case(
        lambda o: TS.CyclicLR(
            o, 1, 5, 3, scale_fn=lambda x: 1 / x, base_momentum=0.5, max_momentum=0.9
        ),
        same(
            lambda lr: sched.CyclicLR(
                1, 5, 3, scale_fn=lambda x: 1 / x, base_momentum=0.5, max_momentum=0.9
            )
        ),
        20,
    ),
    "cycle_lr_scale_fn_iterations": Case(
        lambda o: TS.CyclicLR(o, 1, 5, 3, 2, scale_fn=lambda x: 0.97**x, scale_mode="iterations"),
        same(
            lambda lr: sched.CyclicLR(
                1, 5, 3, 2, scale_fn=lambda x: 0.97**x, scale_mode="iterations"
            )
        ),
        20,
    ),
    # --- OneCycleLR: lr and momentum or beta1
    "onecycle_lr_linear_annealing": Case(
        lambda o: TS.OneCycleLR(
            o,
            max_lr=25,
            final_div_factor=2,
            base_momentum=1,
            max_momentum=22,
            total_steps=10,
            anneal_strategy="linear",
        ),
        same(
            lambda lr: sched.OneCycleLR(
                25,
                10,
                final_div_factor=2,
                base_momentum=1,
                max_momentum=22,
                anneal_strategy="linear",
            )
        ),
    ),
    "onecycle_lr_linear_annealing_three_phases": Case(
        lambda o: TS.OneCycleLR(
            o,
            max_lr=25,
            div_factor=25,
            base_momentum=1,
            max_momentum=22,
            total_steps=10,
            anneal_strategy="linear",
            pct_start=0.4,
            final_div_factor=4,
            three_phase=True,
        ),
        same(
            lambda lr: sched.OneCycleLR(
                25,
                10,
                div_factor=25,
                base_momentum=1,
                max_momentum=22,
                anneal_strategy="linear",
                pct_start=0.4,
                final_div_factor=4,
                three_phase=True,
            )
        ),
    ),
    "onecycle_lr_cosine_annealing": Case(
        lambda o: TS.OneCycleLR(
            o, max_lr=25, final_div_factor=2, base_momentum=1, max_momentum=22, total_steps=10
        ),
        same(
            lambda lr: sched.OneCycleLR(
                25, 10, final_div_factor=2, base_momentum=1, max_momentum=22
            )
        ),
    ),
    "cycle_lr_with_adam": Case(
        lambda o: TS.OneCycleLR(
            o,
            max_lr=25,
            final_div_factor=2,
            base_momentum=1,
            max_momentum=22,
            total_steps=10,
            anneal_strategy="linear",
        ),
        same(
            lambda lr: sched.OneCycleLR(
                25,
                10,
                final_div_factor=2,
                base_momentum=1,
                max_momentum=22,
                anneal_strategy="linear",
            )
        ),
        optimizer="adam",
    ),
    "onecycle_epochs_steps_per_epoch_three_phase_cos": Case(
        lambda o: TS.OneCycleLR(o, 0.1, epochs=4, steps_per_epoch=9, three_phase=True),
        same(lambda lr: sched.OneCycleLR(0.1, epochs=4, steps_per_epoch=9, three_phase=True)),
        37,  # torch defines OneCycleLR for steps 0 .. total_steps
    ),
    # --- CosineAnnealingWarmRestarts
    **{
        f"CosineAnnealingWarmRestarts_lr1_T_mult_{T_mult}": Case(
            lambda o, m=T_mult: TS.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=m, eta_min=1e-10),
            same(lambda lr, m=T_mult: sched.CosineAnnealingWarmRestarts(lr, 10, m, 1e-10)),
            100,
        )
        for T_mult in (1, 2, 4)
    },
    **{  # fractional epochs 0, 0.1, ..., 29.9 through step(epoch)
        f"CosineAnnealingWarmRestarts_lr2_T_mult_{T_mult}": Case(
            lambda o, m=T_mult: TS.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=m, eta_min=1e-10),
            same(lambda lr, m=T_mult: sched.CosineAnnealingWarmRestarts(lr, 10, m, 1e-10)),
            epochs=[round(e.item(), 1) for e in torch.arange(0, 30, 0.1)],
        )
        for T_mult in (1, 2, 4)
    },
    **{  # interleaved epochs through step(epoch)
        f"CosineAnnealingWarmRestarts_lr3_T_mult_{T_mult}": Case(
            lambda o, m=T_mult: TS.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=m, eta_min=1e-10),
            same(lambda lr, m=T_mult: sched.CosineAnnealingWarmRestarts(lr, 10, m, 1e-10)),
            epochs=epochs,
        )
        for T_mult, epochs in [
            (1, [0, 1, 2, 3, 4, 5, 12, 27, 3, 4, 5, 6, 13]),
            (2, [0, 1, 2, 3, 4, 5, 25, 32, 33, 34, 80, 81, 3]),
            (3, [0, 0.1, 0.2, 0.3, 1.3, 2.3, 17.5, 18.5, 19.5, 29.5, 30.5, 31.5, 50]),
        ]
    },
}


def jaxnet_run(case):
    """jaxnet's values, ``(steps, groups, 2)``, each schedule under ``jit(vmap(...))``."""
    if case.epochs is None:
        steps = jnp.arange(case.steps, dtype=jnp.int32)
    else:
        steps = jnp.asarray(case.epochs, jnp.float64)
    groups = []
    for i, lr in enumerate(case.lrs):
        schedule = case.jaxnet(i, lr)
        lrs = np.asarray(jax.jit(jax.vmap(schedule))(steps))
        momentum = schedule.momentum
        momenta = np.asarray(jax.jit(jax.vmap(momentum))(steps)) if momentum else None
        groups.append((lrs, momenta))
    return groups


@pytest.mark.parametrize("name", TORCH_SUITE)
def test_torch_suite(name):
    case = TORCH_SUITE[name]
    expected = torch_run(case)
    for i, (lrs, momenta) in enumerate(jaxnet_run(case)):
        assert lrs.dtype == np.float64
        np.testing.assert_allclose(lrs, expected[:, i, 0], **case.tol, err_msg=f"lr, group {i}")
        if momenta is None:  # torch leaves the optimizer's momentum / beta1 alone
            assert np.all(expected[:, i, 1] == expected[0, i, 1]), f"group {i}"
        else:
            np.testing.assert_allclose(momenta, expected[:, i, 1], **TOL, err_msg=f"momentum {i}")


def test_per_epoch_is_torch_stepped_once_an_epoch():
    """``per_epoch(schedule, n)`` as an optimiser's lr (called with the update count)
    equals torch's scheduler stepped after every n-th ``optimizer.step()``."""
    steps_per_epoch, epochs = 4, 12
    opt = torch_groups((0.1,))
    scheduler = TS.ChainedScheduler([TS.StepLR(opt, 3, 0.5), TS.PolynomialLR(opt, 10, 2.0)])
    expected = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            expected.append(opt.param_groups[0]["lr"])
            opt.step()
        scheduler.step()
    chain = sched.ChainedScheduler([sched.StepLR(0.1, 3, 0.5), sched.PolynomialLR(0.1, 10, 2.0)])
    schedule = sched.per_epoch(chain, steps_per_epoch)
    got = jaxnet_lrs(schedule, steps_per_epoch * epochs)
    np.testing.assert_allclose(got, expected, **TOL)
    assert schedule.lr == 0.1 and schedule.chainable and schedule.momentum is None


def test_per_epoch_fractional_is_torchs_warm_restarts_per_batch():
    """torch's documented per-batch use: ``scheduler.step(epoch + i / iters)``."""
    iters, epochs = 7, 9
    opt = torch_groups((0.1,))
    scheduler = TS.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2, eta_min=0.001)
    expected = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(epochs):
            for i in range(iters):
                scheduler.step(epoch + i / iters)
                expected.append(opt.param_groups[0]["lr"])
                opt.step()
    schedule = sched.CosineAnnealingWarmRestarts(0.1, 2, 2, 0.001)
    got = jaxnet_lrs(sched.per_epoch(schedule, iters, fractional=True), iters * epochs)
    np.testing.assert_allclose(got, expected, **TOL)


def test_per_epoch_converts_the_momentum_schedule_and_sequential_joins_them():
    one_cycle = sched.OneCycleLR(0.1, 10, base_momentum=0.8)
    cyclic = sched.CyclicLR(0.01, 0.1, 2, base_momentum=0.7)
    joined = sched.SequentialLR([one_cycle, cyclic], [10])
    steps = jnp.arange(30)
    by_epoch = jaxnet_lrs(sched.per_epoch(one_cycle, 3).momentum, 30)
    np.testing.assert_allclose(by_epoch, jaxnet_lrs(one_cycle.momentum, 10)[steps // 3], **TOL)
    momenta = jaxnet_lrs(joined.momentum, 16)
    np.testing.assert_allclose(momenta[:10], jaxnet_lrs(one_cycle.momentum, 10), **TOL)
    np.testing.assert_allclose(momenta[10:], jaxnet_lrs(cyclic.momentum, 6), **TOL)
    assert sched.SequentialLR([one_cycle, sched.StepLR(0.1, 2)], [10]).momentum is None


def test_multiplicative_lr_restarts_in_sequential_unlike_torch():
    """Torch's SequentialLR resets a scheduler at its milestone through its closed form;
    MultiplicativeLR has none, so torch's carries on from the lr it finds. jaxnet's
    SequentialLR restarts every schedule from its own lr."""
    case = Case(
        lambda o: TS.SequentialLR(
            o, [TS.ExponentialLR(o, 0.5), TS.MultiplicativeLR(o, lambda e: 0.9)], [3]
        ),
        same(
            lambda lr: sched.SequentialLR(
                [sched.ExponentialLR(lr, 0.5), sched.MultiplicativeLR(lr, lambda e: 0.9)], [3]
            )
        ),
        6,
        (0.1,),
    )
    expected = torch_run(case)[:, 0, 0]
    got = jaxnet_run(case)[0][0]
    np.testing.assert_allclose(got[:3], expected[:3], **TOL)
    np.testing.assert_allclose(expected[3:], 0.1 * 0.5**2 * 0.9 ** np.arange(1, 4), **TOL)
    np.testing.assert_allclose(got[3:], 0.1 * 0.9 ** np.arange(3), **TOL)


def test_multiplicative_lr_compiles_once_for_any_step():
    schedule = jax.jit(sched.MultiplicativeLR(0.1, lambda e: 1 / (1 + 0.01 * e)))
    values = [float(schedule(jnp.int32(k))) for k in (0, 5, 50)]
    assert schedule._cache_size() == 1
    np.testing.assert_allclose(values[1], 0.1 / np.prod(1 + 0.01 * np.arange(1, 6)), **TOL)


@pytest.mark.parametrize(
    "schedule",
    [
        sched.LambdaLR(0.1, lambda s: 0.9**s),
        sched.CyclicLR(0.1, 0.5, 3),
        sched.OneCycleLR(0.1, 10),
        sched.CosineAnnealingWarmRestarts(0.1, 5),
        sched.SequentialLR([sched.StepLR(0.1, 2), sched.StepLR(0.1, 3)], [4]),
    ],
)
def test_chained_scheduler_refuses_what_sets_the_lr_outright(schedule):
    with pytest.raises(ValueError, match=rf"ChainedScheduler: {schedule.name} sets the lr"):
        sched.ChainedScheduler([sched.StepLR(0.1, 2), schedule])


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: sched.ConstantLR(0.1, factor=1.5), ValueError, r"ConstantLR: factor=1\.5 must be"),
        (lambda: sched.ConstantLR(0.1, factor=-0.5), ValueError, r"factor=-0\.5 must be in \(0"),
        (lambda: sched.ConstantLR(0.1, total_iters=0), ValueError, r"total_iters=0 must be a pos"),
        (lambda: sched.PolynomialLR(0.1, 0), ValueError, r"PolynomialLR: total_iters=0 must"),
        (lambda: sched.PolynomialLR(0.1, 5, -1.0), ValueError, r"PolynomialLR: power=-1\.0 must"),
        (lambda: sched.LinearLR(0.1, start_factor=1.1), ValueError, r"start_factor=1\.1 must"),
        (lambda: sched.MultiplicativeLR(0.1, 0.95), TypeError, r"lr_lambda must be callable"),
        (
            lambda: sched.CosineAnnealingWarmRestarts(0.1, 0),
            ValueError,
            r"CosineAnnealingWarmRestarts: T_0=0 must be a positive int",
        ),
        (lambda: sched.CosineAnnealingWarmRestarts(0.1, 5, 0), ValueError, r"T_mult=0 must"),
        (lambda: sched.CosineAnnealingWarmRestarts(0.1, 5, 1.5), TypeError, r"T_mult=1\.5 must"),
        (
            lambda: sched.CosineAnnealingWarmRestarts(0.1, 5, eta_min="0"),
            TypeError,
            r"eta_min must be a float, got str",
        ),
        (
            lambda: sched.CyclicLR(0, 0, mode="CATS"),
            ValueError,
            r"CyclicLR: mode must be one of \['triangular', 'triangular2', 'exp_range'\]",
        ),
        (lambda: sched.CyclicLR(0.1, 1.0, 0), ValueError, r"CyclicLR: step_size_up=0 must"),
        (lambda: sched.CyclicLR(-0.1, 1.0), ValueError, r"CyclicLR: base_lr=-0\.1 must be >= 0"),
        (lambda: sched.CyclicLR(0.1, 1.0, scale_fn=0.5), TypeError, r"scale_fn must be callable"),
        (
            lambda: sched.CyclicLR(0.1, 1.0, scale_fn=jnp.exp, scale_mode="epochs"),
            ValueError,
            r"scale_mode must be 'cycle' or 'iterations', got 'epochs'",
        ),
        (lambda: sched.CyclicLR(0.1, 1.0, base_momentum=-0.8), ValueError, r"base_momentum=-0\.8"),
        (lambda: sched.OneCycleLR(1e-3, 10, anneal_strategy="CATS"), ValueError, r"'CATS'"),
        (lambda: sched.OneCycleLR(1e-3, 10, pct_start=1.1), ValueError, r"pct_start=1\.1 must"),
        (
            lambda: sched.OneCycleLR(1e-3),
            ValueError,
            r"OneCycleLR: give total_steps, or both epochs and steps_per_epoch",
        ),
        (lambda: sched.OneCycleLR(1e-3, epochs=0, steps_per_epoch=5), ValueError, r"epochs=0 must"),
        (lambda: sched.OneCycleLR(0.1, 10, max_momentum=-1.0), ValueError, r"max_momentum=-1\.0"),
        (lambda: sched.ChainedScheduler([]), TypeError, r"ChainedScheduler: schedules must be"),
        (
            lambda: sched.ChainedScheduler([lambda s: 0.1]),
            TypeError,
            r"ChainedScheduler: schedules must be a non-empty list of jaxnet schedules",
        ),
        (
            lambda: sched.ChainedScheduler([sched.StepLR(0.1, 2), sched.StepLR(0.2, 2)]),
            ValueError,
            r"ChainedScheduler: every schedule must scale the same lr, got \[0\.1, 0\.2\]",
        ),
        (lambda: sched.SequentialLR([], []), TypeError, r"SequentialLR: schedules must be"),
        (lambda: sched.per_epoch(0.1, 5), TypeError, r"per_epoch: schedule must be callable"),
        (lambda: sched.per_epoch(sched.StepLR(0.1, 2), 0), ValueError, r"steps_per_epoch=0"),
    ],
)
def test_new_invalid_arguments_raise(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_torch_raises_on_the_same_constructions():
    """torch's construction error tests (test_linearlr_start_factor_limits*,
    test_cycle_lr_invalid_mode, test_onecycle_lr_invalid_*, ..._cannot_calculate_total_steps,
    test_multiplicative_lr_with_lr_lambda) and the checks of ConstantLR and
    CosineAnnealingWarmRestarts: each raises in torch as jaxnet's twin does above."""
    opt = torch_groups()
    for make in (
        lambda: TS.LinearLR(opt, start_factor=0.0, total_iters=4),
        lambda: TS.LinearLR(opt, start_factor=1.1, total_iters=4),
        lambda: TS.ConstantLR(opt, factor=1.5),
        lambda: TS.CyclicLR(opt, base_lr=0, max_lr=0, mode="CATS"),
        lambda: TS.OneCycleLR(opt, max_lr=1e-3, total_steps=10, anneal_strategy="CATS"),
        lambda: TS.OneCycleLR(opt, max_lr=1e-3, total_steps=10, pct_start=1.1),
        lambda: TS.OneCycleLR(opt, max_lr=1e-3),
        lambda: TS.OneCycleLR(opt, max_lr=1e-3, epochs=0, steps_per_epoch=5),
        lambda: TS.CosineAnnealingWarmRestarts(opt, T_0=0),
        lambda: TS.CosineAnnealingWarmRestarts(opt, T_0=5, T_mult=0),
        lambda: TS.CosineAnnealingWarmRestarts(opt, T_0=5, eta_min="0"),
        lambda: TS.ChainedScheduler([]),
        lambda: TS.SequentialLR(opt, [], []),
    ):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(TypeError, match="lr_lambda should be a function"):
        TS.MultiplicativeLR(opt, 0.95)
    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        TS.CyclicLR(torch.optim.Rprop([torch.zeros(1, requires_grad=True)]), 1, 5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("scheduler", ["OneCycleLR", "CyclicLR"])
def test_momentum_schedule_drives_the_optimiser_as_torch(scheduler, optimizer):
    """The schedule's ``momentum`` as SGD's momentum or Adam's beta1: 20 steps on a least
    squares problem equal torch's optimizer under the same scheduler."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=6)
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    if optimizer == "sgd":
        opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    else:
        opt = torch.optim.Adam([w], lr=0.1)
    if scheduler == "OneCycleLR":
        torch_scheduler = TS.OneCycleLR(opt, 0.1, 20, three_phase=True)
        schedule = sched.OneCycleLR(0.1, 20, three_phase=True)
    else:
        torch_scheduler = TS.CyclicLR(opt, 0.01, 0.1, 3, mode="triangular2")
        schedule = sched.CyclicLR(0.01, 0.1, 3, mode="triangular2")
    expected = []
    for _ in range(20):
        opt.zero_grad()
        (0.5 * torch.mean((torch.from_numpy(a) @ w - torch.from_numpy(b)) ** 2)).backward()
        opt.step()
        if len(expected) < 19:  # OneCycleLR refuses a step past total_steps
            torch_scheduler.step()
        expected.append(w.detach().numpy().copy())

    if optimizer == "sgd":
        jax_opt = optim.SGD(schedule, momentum=schedule.momentum)
    else:
        jax_opt = optim.Adam(schedule, betas=(schedule.momentum, 0.999))

    def step(carry, _):
        params, state = carry
        grad = jax.grad(lambda p: 0.5 * jnp.mean((a @ p - b) ** 2))(params)
        updates, state = jax_opt.update(grad, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    params = jnp.zeros(4)
    got = jax.jit(lambda p: jax.lax.scan(step, (p, jax_opt.init(p)), length=20)[1])(params)
    np.testing.assert_allclose(np.asarray(got), np.array(expected), rtol=1e-10, atol=1e-13)
