"""jaxnet.optim.lr_scheduler against torch.optim.lr_scheduler, step by step.

torch's lr sequence is read from ``optimizer.param_groups[0]['lr']`` before each
``optimizer.step(); scheduler.step()``; jaxnet's schedule is evaluated on traced int32
steps under ``jit(vmap(...))``. (Schedules used as an optimiser's ``lr`` are checked
against torch's trajectories in ``test_optim.py``.)
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from experiments.lr_schedules import get_expon_lr_func  # the seed's NumPy helper
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
            r"StepLR: lr must be a float, got function",
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
