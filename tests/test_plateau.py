"""jaxnet.optim.plateau (ReduceLROnPlateau) against torch.optim.lr_scheduler.ReduceLROnPlateau.

The cases are PyTorch's test/optim/test_lrscheduler.py plateau and compound-plateau tests;
the expected lrs come from live torch on its test set-up (SGD, two param groups, lr 0.5):
``optimizer.step()``, then each scheduler's ``step`` (the plateau's with the epoch's
metric), then the lr is read. jaxnet runs the state machine in one jitted ``lax.scan``.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxnet import optim
from jaxnet.optim import lr_scheduler as sched
from jaxnet.optim.plateau import PlateauState, ReduceLROnPlateau, scale_by_plateau, update_plateau

TS = torch.optim.lr_scheduler
TOL = {"rtol": 1e-12, "atol": 1e-15}


class Case(NamedTuple):
    plateau: dict  # ReduceLROnPlateau's keyword arguments, shared by both
    metrics: list
    lr: float = 0.5
    min_lr: object = 0.0
    torch_schedule: Callable | None = None  # optimizer -> a scheduler stepped after the plateau
    schedule: Callable | None = None  # lr -> the jaxnet twin


DECREASING_SLOWLY = [10 - i * 0.0167 for i in range(20)]
DECREASING = [10 - i * 0.0165 for i in range(22)]
STUCK_MAX = [-0.8] * 2 + [-0.234] * 20
MIN_ABS = {"threshold_mode": "abs", "mode": "min", "threshold": 0.01, "patience": 5, "cooldown": 5}
MIN_ABS2 = {"patience": 5, "cooldown": 0, "threshold_mode": "abs", "mode": "min", "threshold": 0.1}
MAX_ABS = {"mode": "max", "patience": 5, "cooldown": 5, "threshold_mode": "abs"}
MAX_REL3 = {"mode": "max", "patience": 3, "threshold_mode": "rel", "threshold": 0.1}
MAX_REL5 = {"mode": "max", "threshold_mode": "rel", "threshold": 0.1, "patience": 5, "cooldown": 5}
MIN_REL5 = {"mode": "min", "threshold_mode": "rel", "threshold": 0.1, "patience": 5, "cooldown": 5}
CASES = {
    "reduce_lr_on_plateau1": Case(MIN_ABS, DECREASING_SLOWLY),
    "reduce_lr_on_plateau2": Case(MIN_ABS2, DECREASING),
    "reduce_lr_on_plateau3": Case(MAX_ABS, STUCK_MAX),
    "reduce_lr_on_plateau4": Case(MAX_REL3, [1.5 * (1.025**i) for i in range(20)]),
    "reduce_lr_on_plateau5": Case(MAX_REL5, [1.5 * (1.005**i) for i in range(20)]),
    "reduce_lr_on_plateau6": Case(
        {"mode": "min", "threshold_mode": "rel", "threshold": 0.1},
        [1.5 * (0.85**i) for i in range(20)],
    ),
    "reduce_lr_on_plateau7": Case(MIN_REL5, [1] * 7 + [0.6] + [0.5] * 12),
    "reduce_lr_on_plateau8_min_lr_per_group": Case(
        MAX_REL5, [1.5 * (1.005**i) for i in range(20)], min_lr=(0.4, 0.3)
    ),
    "add_param_group_does_not_break_reduce_lr_on_plateau": Case(
        MIN_REL5, [1] * 7 + [0.6] + [0.5] * 12, min_lr=(1e-5, 1e-4)
    ),
    "state_dict_scores": Case(
        {"mode": "min", "factor": 0.1, "patience": 2},
        [1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 5.0, 3.0, 2.0, 1.0],
    ),
    "patience_0_eps_blocks_the_last_reductions": Case(
        {"patience": 0, "factor": 0.01}, [float(i) for i in range(8)], lr=0.1
    ),
    "min_lr_floor_and_nan_metric": Case(
        {"patience": 1, "factor": 0.5, "mode": "max"},
        [1.0, float("nan"), 0.5, 2.0, 2.0, 2.0, 2.0, 2.0],
        lr=0.1,
        min_lr=0.03,
    ),
    "compound_reduce_lr_on_plateau1": Case(
        MIN_ABS,
        DECREASING_SLOWLY[:10],
        torch_schedule=lambda o: TS.StepLR(o, gamma=0.1, step_size=3),
        schedule=lambda lr: sched.StepLR(lr, 3, 0.1),
    ),
    "compound_reduce_lr_on_plateau2": Case(
        MIN_ABS2,
        DECREASING,
        torch_schedule=lambda o: TS.MultiStepLR(o, gamma=0.1, milestones=[3, 8, 12]),
        schedule=lambda lr: sched.MultiStepLR(lr, [3, 8, 12], 0.1),
    ),
    "compound_reduce_lr_on_plateau3": Case(  # eps blocks reductions of lrs below 1e-8
        MAX_ABS,
        STUCK_MAX,
        torch_schedule=lambda o: TS.ExponentialLR(o, gamma=0.1),
        schedule=lambda lr: sched.ExponentialLR(lr, 0.1),
    ),
    "compound_reduce_lr_on_plateau4": Case(
        MAX_REL3,
        [1.5 * (1.025**i) for i in range(10)],
        lr=0.05,
        torch_schedule=lambda o: TS.CosineAnnealingLR(o, 10, 1e-10),
        schedule=lambda lr: sched.CosineAnnealingLR(lr, 10, 1e-10),
    ),
    "compound_reduce_lr_on_plateau5": Case(
        MIN_ABS2,
        DECREASING,
        torch_schedule=lambda o: TS.LinearLR(o, start_factor=0.4, total_iters=4),
        schedule=lambda lr: sched.LinearLR(lr, 0.4, total_iters=4),
    ),
}


def torch_lrs(case):
    """The lr of each group after each epoch: ``(epochs, groups)``."""
    params = [torch.zeros(1, requires_grad=True) for _ in range(2)]
    opt = torch.optim.SGD([{"params": [p]} for p in params], lr=case.lr)
    min_lr = list(case.min_lr) if isinstance(case.min_lr, tuple) else case.min_lr
    plateau = TS.ReduceLROnPlateau(opt, **case.plateau, min_lr=min_lr)
    schedule = case.torch_schedule(opt) if case.torch_schedule else None
    lrs = []
    for metric in case.metrics:
        opt.step()
        plateau.step(metric)
        if schedule is not None:
            schedule.step()
        lrs.append([g["lr"] for g in opt.param_groups])
    return np.array(lrs)


def jaxnet_lrs(case):
    """The same, the plateau stepped inside one jitted scan over the metrics."""
    lr = case.schedule(case.lr) if case.schedule else (case.lr, case.lr)
    plateau = ReduceLROnPlateau(lr, **case.plateau, min_lr=case.min_lr)

    def epoch(state, inputs):
        metric, step = inputs  # the schedule has been stepped `step` times
        state = plateau.update(state, metric, step if case.schedule else None)
        return state, plateau.get_last_lr(state, step + 1 if case.schedule else None)

    @jax.jit
    def run(metrics):
        steps = jnp.arange(len(case.metrics), dtype=jnp.int32)
        return jax.lax.scan(epoch, plateau.init(), (metrics, steps))[1]

    lrs = np.asarray(run(jnp.asarray(case.metrics, jnp.float64)))
    return lrs if lrs.ndim == 2 else np.stack([lrs, lrs], axis=1)


@pytest.mark.parametrize("name", CASES)
def test_matches_torch(name):
    case = CASES[name]
    expected = torch_lrs(case)
    np.testing.assert_allclose(jaxnet_lrs(case), expected, **TOL)


# ----------------------------------------------------------- in an optimiser, compiled once

A = np.random.default_rng(0).normal(size=(6, 4))
B = np.random.default_rng(1).normal(size=6)


def loss_np(w):
    return 0.5 * np.mean((A @ w - B) ** 2)


def torch_training(make_opt, make_plateau, make_schedule, epochs, steps_per_epoch):
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    a, b = torch.from_numpy(A), torch.from_numpy(B)
    opt = make_opt([w])
    plateau = make_plateau(opt)
    schedule = make_schedule(opt) if make_schedule else None
    weights, lrs = [], []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            opt.zero_grad()
            (0.5 * torch.mean((a @ w - b) ** 2)).backward()
            opt.step()
            if schedule is not None:
                schedule.step()
        plateau.step(loss_np(w.detach().numpy()))  # the epoch's "validation" metric
        weights.append(w.detach().numpy().copy())
        lrs.append(opt.param_groups[0]["lr"])
    return np.array(weights), np.array(lrs)


@pytest.mark.parametrize("with_schedule", [False, True])
def test_scale_by_plateau_follows_torch_without_recompiling(with_schedule):
    """SGD with momentum (and a StepLR per step) under a ReduceLROnPlateau: the
    trajectory equals torch's, and the jitted epoch compiles once although the lr drops."""
    epochs, steps_per_epoch = 30, 5
    settings = {"patience": 1, "factor": 0.5, "threshold": 0.05}
    lr = sched.StepLR(0.05, 20, 0.7) if with_schedule else 0.05
    plateau = ReduceLROnPlateau(lr, **settings)
    opt = optax.chain(optim.SGD(lr, momentum=0.9), scale_by_plateau(plateau))
    a, b = jnp.asarray(A), jnp.asarray(B)

    def loss(w):
        return 0.5 * jnp.mean((a @ w - b) ** 2)

    def step(carry, _):
        w, state = carry
        updates, state = opt.update(jax.grad(loss)(w), state, w)
        return (optax.apply_updates(w, updates), state), None

    @jax.jit
    def epoch(w, state):
        return jax.lax.scan(step, (w, state), length=steps_per_epoch)[0]

    stepped = jax.jit(lambda state, metric: update_plateau(state, metric))
    w, state = jnp.zeros(4), opt.init(jnp.zeros(4))
    weights, scales = [], []
    for _ in range(epochs):
        w, state = epoch(w, state)
        state = stepped(state, loss(w))
        weights.append(np.asarray(w))
        scales.append(float(state[1].plateau.scale))
    assert epoch._cache_size() == 1 and stepped._cache_size() == 1

    expected, torch_lr = torch_training(
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
        lambda o: TS.ReduceLROnPlateau(o, **settings),
        (lambda o: TS.StepLR(o, 20, 0.7)) if with_schedule else None,
        epochs,
        steps_per_epoch,
    )
    assert len(set(scales)) >= 3  # the lr was reduced more than once
    np.testing.assert_allclose(np.array(weights), expected, rtol=1e-10, atol=1e-12)
    steps = np.arange(1, epochs + 1) * steps_per_epoch
    base = np.asarray(jax.vmap(lr)(steps)) if with_schedule else lr
    np.testing.assert_allclose(base * np.array(scales), torch_lr, **TOL)


def test_state_is_a_pytree_of_scalars_in_a_jitted_train_state():
    plateau = ReduceLROnPlateau(0.1, patience=0)
    state = plateau.init()
    assert isinstance(state, PlateauState)
    assert all(leaf.shape == () for leaf in jax.tree.leaves(state))
    update = jax.jit(plateau.update)
    for metric in (1.0, 2.0, 3.0):
        state = update(state, metric)
    assert update._cache_size() == 1
    np.testing.assert_allclose(float(plateau.get_last_lr(state)), 0.001, rtol=1e-12)
    assert int(state.num_bad_epochs) == 0 and float(state.best) == 1.0


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: ReduceLROnPlateau(0.1, factor=1.0),
            ValueError,
            r"factor=1\.0 must be in \[0, 1\)",
        ),
        (lambda: ReduceLROnPlateau(0.1, mode="CATS"), ValueError, r"mode must be 'min' or 'max'"),
        (
            lambda: ReduceLROnPlateau(0.1, threshold_mode="relative"),
            ValueError,
            r"threshold_mode must be 'rel' or 'abs', got 'relative'",
        ),
        (lambda: ReduceLROnPlateau(0.1, patience=-1), ValueError, r"patience=-1 must be an int"),
        (lambda: ReduceLROnPlateau(0.1, cooldown=1.5), TypeError, r"cooldown=1\.5 must be an int"),
        (lambda: ReduceLROnPlateau(0.1, threshold=-1e-4), ValueError, r"threshold=-0\.0001 must"),
        (lambda: ReduceLROnPlateau(0.1, eps=-1.0), ValueError, r"eps=-1\.0 must be >= 0"),
        (lambda: ReduceLROnPlateau(-0.1), ValueError, r"lr=-0\.1 must be >= 0"),
        (lambda: ReduceLROnPlateau(0.1, min_lr=-1.0), ValueError, r"min_lr=-1\.0 must be >= 0"),
        (
            lambda: ReduceLROnPlateau((0.1, 0.2), min_lr=[0.0, 0.0, 0.0]),
            ValueError,
            r"expected one min_lr per lr \(2\), got 3 min_lrs",
        ),
        (
            lambda: ReduceLROnPlateau(0.1, min_lr=[0.0, 0.0]),
            ValueError,
            r"expected one min_lr per lr \(a single lr\), got 2",
        ),
        (
            lambda: ReduceLROnPlateau(0.1).update(ReduceLROnPlateau(0.1).init(), jnp.ones(2)),
            ValueError,
            r"metric must be a scalar, got shape \(2,\)",
        ),
        (
            lambda: ReduceLROnPlateau(sched.StepLR(0.1, 2)).get_last_lr(
                ReduceLROnPlateau(0.1).init()
            ),
            TypeError,
            r"lr is a schedule; pass the step",
        ),
        (lambda: scale_by_plateau(0.1), TypeError, r"expected a ReduceLROnPlateau, got float"),
        (
            lambda: scale_by_plateau(ReduceLROnPlateau((0.1, 0.2))),
            ValueError,
            r"one lr per param group; give each group's optimiser its own plateau",
        ),
        (
            lambda: update_plateau(optim.SGD(0.1).init(jnp.zeros(2)), 1.0),
            ValueError,
            r"update_plateau: opt_state holds no scale_by_plateau state",
        ),
    ],
)
def test_invalid_arguments_raise(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_torch_refuses_what_jaxnet_refuses():
    """The construction errors torch has: factor >= 1, an unknown mode or threshold mode,
    a min_lr list of the wrong length."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for kwargs in ({"factor": 1.0}, {"mode": "CATS"}, {"threshold_mode": "CATS"}):
        with pytest.raises(ValueError):
            TS.ReduceLROnPlateau(opt, **kwargs)
    with pytest.raises(ValueError, match="expected 1 min_lrs, got 2"):
        TS.ReduceLROnPlateau(opt, min_lr=[0.0, 0.0])
