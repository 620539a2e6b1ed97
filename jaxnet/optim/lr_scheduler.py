"""torch.optim.lr_scheduler as pure functions of the step (``optax.Schedule``).

A torch scheduler mutates ``optimizer.param_groups[...]['lr']`` once per ``step()``; a
jaxnet schedule is the function ``step -> lr`` giving the same value: ``schedule(k)``
equals the lr torch's optimizer holds after ``k`` calls of ``scheduler.step()``, i.e.
the lr of the ``(k+1)``-th update. Torch passes the optimizer and takes the base lr
from it; jaxnet takes the base lr as the first argument::

    torch:  StepLR(optimizer, 30, 0.1)      # optimizer built with lr=0.05
    jaxnet: StepLR(0.05, 30, 0.1)           # pass it as lr: jaxnet.optim.SGD(StepLR(...))

**Epochs or steps.** A jaxnet optimiser calls its lr schedule with its update count, so
a schedule passed as ``lr`` counts optimiser steps (batches). Torch's documentation
steps most schedulers once an epoch (each docstring below says which); for those, wrap
the schedule in :func:`per_epoch`, which turns an epoch-counting schedule into a
step-counting one (``fractional=True`` passes fractional epochs, as torch's
``CosineAnnealingWarmRestarts.step(epoch + i / iters)`` does).

Every schedule is a :class:`Schedule`: callable, jittable, accepting traced integer
steps, and carrying its base ``lr`` and, for :func:`CyclicLR` and :func:`OneCycleLR`,
its ``momentum`` schedule. It computes in the widest float JAX has enabled (float64
under ``jax_enable_x64``, like torch's Python floats; optimisers cast the lr to the
parameters' dtype), except that :func:`LambdaLR` returns whatever its function gives.
Bad arguments raise ``ValueError`` (``TypeError`` for a wrong kind of argument) at
construction. The metric-driven :class:`ReduceLROnPlateau` is a state machine, not a
function of the step: see :mod:`jaxnet.optim.plateau`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from jaxnet._checks import (
    check_lr,
    check_milestones,
    check_non_negative,
    check_not_nan,
    check_positive,
    check_positive_int,
    check_real,
)
from jaxnet.optim.plateau import PlateauState as PlateauState
from jaxnet.optim.plateau import ReduceLROnPlateau as ReduceLROnPlateau
from jaxnet.optim.plateau import scale_by_plateau as scale_by_plateau
from jaxnet.optim.plateau import update_plateau as update_plateau


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """A learning-rate schedule: ``schedule(step) -> lr``, usable wherever optax takes one.

    Attributes:
        name: the torch scheduler it reproduces, for messages.
        fn: the pure function ``step -> lr``.
        lr: the base learning rate it scales (torch's ``scheduler.base_lrs``), or ``None``
            for a schedule built from others that have different ones.
        momentum: ``step -> momentum`` for the schedules that cycle momentum
            (:func:`CyclicLR`, :func:`OneCycleLR`), else ``None``. Torch writes it into
            ``param_group['momentum']`` (SGD, RMSprop) or ``param_group['betas'][0]``
            (the Adam family) at each ``scheduler.step()``; in jaxnet, pass it as the
            optimiser's ``momentum`` or ``betas[0]``. Like the lr, ``momentum(k)`` is the
            value of the ``(k+1)``-th update.
        chainable: torch's scheduler multiplies the current lr by a factor at each step
            (rather than setting it outright), so :func:`ChainedScheduler` may combine it.
    """

    name: str
    fn: Callable[[jax.typing.ArrayLike], jax.Array]
    lr: float | None
    momentum: Callable[[jax.typing.ArrayLike], jax.Array] | None = None
    chainable: bool = False

    def __call__(self, step: jax.typing.ArrayLike) -> jax.Array:
        return self.fn(step)


def StepLR(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``lr * gamma ** (step // step_size)`` (``torch.optim.lr_scheduler.StepLR``).

    Counts epochs in torch's documentation (wrap it in :func:`per_epoch` to step it once
    an epoch). ``gamma`` must be > 0 (torch also accepts 0 and negative factors).
    """
    check_lr("StepLR", lr, schedule_ok=False)
    check_positive_int("StepLR", step_size=step_size)
    check_positive("StepLR", gamma=gamma)
    fn = _on_float_steps(optax.exponential_decay(lr, step_size, gamma, staircase=True))
    return Schedule("StepLR", fn, lr, chainable=True)


def MultiStepLR(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """``lr * gamma ** (number of milestones <= step)`` (``lr_scheduler.MultiStepLR``).

    Counts epochs in torch's documentation (see :func:`per_epoch`). ``milestones`` must
    be sorted positive ints; a repeated milestone applies ``gamma`` once per occurrence,
    as in torch.
    """
    check_lr("MultiStepLR", lr, schedule_ok=False)
    check_milestones("MultiStepLR", milestones, strict=False)
    check_positive("MultiStepLR", gamma=gamma)
    scales = {m: gamma**count for m, count in Counter(milestones).items()}
    fn = _on_float_steps(optax.piecewise_constant_schedule(lr, scales))
    return Schedule("MultiStepLR", fn, lr, chainable=True)


def ConstantLR(lr: float, factor: float = 1.0 / 3, total_iters: int = 5) -> Schedule:
    """``lr * factor`` before step ``total_iters``, ``lr`` from then on
    (``lr_scheduler.ConstantLR``).

    Counts epochs in torch's documentation (see :func:`per_epoch`). ``factor`` must be
    in ``(0, 1]`` (torch takes 0 and then divides by it at ``total_iters``).
    """
    check_lr("ConstantLR", lr, schedule_ok=False)
    _check_in_unit_interval("ConstantLR", "factor", factor, low_open=True)
    check_positive_int("ConstantLR", total_iters=total_iters)

    def schedule(step):
        return lr * jnp.where(_as_float(step) < total_iters, factor, 1.0)

    return Schedule("ConstantLR", schedule, lr, chainable=True)


def ExponentialLR(lr: float, gamma: float) -> Schedule:
    """``lr * gamma ** step`` (``lr_scheduler.ExponentialLR``); ``gamma`` must be > 0.

    Counts epochs in torch's documentation (see :func:`per_epoch`).
    """
    check_lr("ExponentialLR", lr, schedule_ok=False)
    check_positive("ExponentialLR", gamma=gamma)
    fn = _on_float_steps(optax.exponential_decay(lr, 1, gamma))
    return Schedule("ExponentialLR", fn, lr, chainable=True)


def PolynomialLR(lr: float, total_iters: int = 5, power: float = 1.0) -> Schedule:
    """``lr * (1 - min(step, total_iters) / total_iters) ** power``
    (``lr_scheduler.PolynomialLR``): 0 from ``total_iters`` on.

    Counts epochs in torch's examples (``total_iters`` is "the number of steps" in its
    argument list; see :func:`per_epoch`). ``power`` must be >= 0 (a negative power
    divides by zero at ``total_iters`` in torch).
    """
    check_lr("PolynomialLR", lr, schedule_ok=False)
    check_positive_int("PolynomialLR", total_iters=total_iters)
    check_non_negative("PolynomialLR", power=power)

    def schedule(step):
        # (T - step) / T rather than optax.polynomial_schedule's 1 - step / T: XLA turns
        # the division into a multiplication by 1 / T, which can leave -1e-16 at step T,
        # and a negative base to a fractional power is NaN.
        remaining = jnp.clip(total_iters - _as_float(step), 0, total_iters)
        return lr * (remaining / total_iters) ** power

    return Schedule("PolynomialLR", schedule, lr, chainable=True)


def CosineAnnealingLR(lr: float, T_max: int, eta_min: float = 0.0) -> Schedule:
    """``eta_min + (lr - eta_min) * (1 + cos(pi * step / T_max)) / 2`` (``CosineAnnealingLR``).

    Counts epochs or steps alike in torch (``T_max`` is "the maximum number of
    iterations"; see :func:`per_epoch`); fractional steps give torch's closed form.
    Past ``T_max`` torch keeps following the cosine (its recursive update is exact for
    every step), so the lr climbs back to ``lr`` at ``2 * T_max`` and repeats with period
    ``2 * T_max``; this schedule does the same. ``optax.cosine_decay_schedule`` instead
    holds ``eta_min`` after ``T_max``, which is why it is not used here.
    """
    check_lr("CosineAnnealingLR", lr, schedule_ok=False)
    check_positive_int("CosineAnnealingLR", T_max=T_max)
    check_not_nan("CosineAnnealingLR", eta_min=eta_min)

    def schedule(step):
        step = _as_float(step)
        return eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * step / T_max)) / 2

    return Schedule("CosineAnnealingLR", schedule, lr, chainable=True)


def CosineAnnealingWarmRestarts(
    lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0
) -> Schedule:
    """SGDR's cosine with warm restarts (``lr_scheduler.CosineAnnealingWarmRestarts``).

    ``eta_min + (lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``, where the ``i``-th
    period lasts ``T_i = T_0 * T_mult ** i`` and ``T_cur`` is the time since it began.
    Counts epochs in torch, which also steps it once a batch with fractional epochs
    (``scheduler.step(epoch + i / iters)``): this schedule takes fractional steps, and
    ``per_epoch(schedule, iters, fractional=True)`` does that bookkeeping. The period is
    found exactly (torch's ``step(epoch)`` takes ``int(math.log(...))``, which can round
    down at a restart for ``T_mult > 2``; its ``step()`` without an epoch is exact).
    """
    check_lr("CosineAnnealingWarmRestarts", lr, schedule_ok=False)
    check_positive_int("CosineAnnealingWarmRestarts", T_0=T_0, T_mult=T_mult)
    check_not_nan("CosineAnnealingWarmRestarts", eta_min=eta_min)

    def period_start(i):  # the time at which period i begins
        return T_0 * i if T_mult == 1 else T_0 * (T_mult**i - 1) / (T_mult - 1)

    def schedule(step):
        t = _as_float(step)
        if T_mult == 1:
            i = jnp.floor(t / T_0)
        else:
            i = jnp.floor(jnp.log(t / T_0 * (T_mult - 1) + 1) / math.log(T_mult))
            i = jnp.where(period_start(i + 1) <= t, i + 1, i)  # log's rounding, both ways
            i = jnp.where(period_start(i) > t, i - 1, i)
        i = jnp.maximum(i, 0)
        T_cur, T_i = t - period_start(i), T_0 * T_mult**i
        return eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * T_cur / T_i)) / 2

    return Schedule("CosineAnnealingWarmRestarts", schedule, lr)


def LinearLR(
    lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
) -> Schedule:
    """``lr`` times a factor going linearly from ``start_factor`` to ``end_factor``.

    The factor reaches ``end_factor`` at ``total_iters`` and stays there
    (``lr_scheduler.LinearLR``; torch's ranges: ``0 < start_factor <= 1``,
    ``0 <= end_factor <= 1``). Counts epochs in torch's documentation (see
    :func:`per_epoch`); as a warm-up it is usually stepped once a batch.
    """
    check_lr("LinearLR", lr, schedule_ok=False)
    _check_in_unit_interval("LinearLR", "start_factor", start_factor, low_open=True)
    _check_in_unit_interval("LinearLR", "end_factor", end_factor, low_open=False)
    check_positive_int("LinearLR", total_iters=total_iters)
    fn = _on_float_steps(optax.linear_schedule(lr * start_factor, lr * end_factor, total_iters))
    return Schedule("LinearLR", fn, lr, chainable=True)


def OneCycleLR(
    max_lr: float,
    total_steps: int | None = None,
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: Literal["cos", "linear"] = "cos",
    cycle_momentum: bool = True,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """The 1cycle policy (``lr_scheduler.OneCycleLR``); counts steps (batches), as in torch.

    The lr rises from ``max_lr / div_factor`` to ``max_lr`` by step
    ``pct_start * total_steps - 1`` and anneals to
    ``max_lr / (div_factor * final_div_factor)`` at ``total_steps - 1`` (with
    ``three_phase``, it first returns to the initial lr at ``2 * pct_start * total_steps
    - 2``). Phase ends are torch's fractional steps, not ``optax.cosine_onecycle_schedule``'s
    rounded ones. With ``cycle_momentum`` the schedule's ``momentum`` attribute moves the
    other way, from ``max_momentum`` down to ``base_momentum`` at the lr's peak and back
    (in the third phase it stays at ``max_momentum``); pass it as the optimiser's
    ``momentum`` (SGD, RMSprop) or ``betas[0]`` (Adam family), as torch writes it into the
    param group. Give ``total_steps`` or both ``epochs`` and ``steps_per_epoch``
    (``total_steps`` wins, as in torch). Past ``total_steps`` torch raises; this schedule
    holds its value there. ``div_factor`` and ``final_div_factor`` must be > 0 (torch
    divides by zero at 0 and accepts negative factors, which give negative learning rates).
    """
    check_lr("OneCycleLR", max_lr, name="max_lr", schedule_ok=False)
    if total_steps is None:
        if epochs is None or steps_per_epoch is None:
            raise ValueError(
                "OneCycleLR: give total_steps, or both epochs and steps_per_epoch "
                f"(got {total_steps=}, {epochs=}, {steps_per_epoch=})"
            )
        check_positive_int("OneCycleLR", epochs=epochs, steps_per_epoch=steps_per_epoch)
        total_steps = epochs * steps_per_epoch
    check_positive_int("OneCycleLR", total_steps=total_steps)
    check_positive("OneCycleLR", div_factor=div_factor, final_div_factor=final_div_factor)
    _check_in_unit_interval("OneCycleLR", "pct_start", pct_start, low_open=False)
    if anneal_strategy not in ("cos", "linear"):
        raise ValueError(
            f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
        )
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    rise_end = float(pct_start * total_steps) - 1
    if three_phase:
        ends = [rise_end, float(2 * pct_start * total_steps) - 2, total_steps - 1]
        lrs = [(initial_lr, max_lr), (max_lr, initial_lr), (initial_lr, min_lr)]
        momenta = [(max_momentum, base_momentum), (base_momentum, max_momentum)]
        momenta.append((max_momentum, max_momentum))
    else:
        ends = [rise_end, total_steps - 1]
        lrs = [(initial_lr, max_lr), (max_lr, min_lr)]
        momenta = [(max_momentum, base_momentum), (base_momentum, max_momentum)]
    if any(end == start for start, end in zip([0.0, *ends[:-1]], ends, strict=True)):
        raise ValueError(
            f"OneCycleLR: a phase has zero length ({total_steps=}, {pct_start=}, "
            f"{three_phase=}); torch divides by zero there"
        )
    anneal = _anneal_cos if anneal_strategy == "cos" else _anneal_linear
    momentum = None
    if cycle_momentum:
        check_non_negative("OneCycleLR", base_momentum=base_momentum, max_momentum=max_momentum)
        momentum = _phased(ends, momenta, anneal, total_steps)
    return Schedule("OneCycleLR", _phased(ends, lrs, anneal, total_steps), initial_lr, momentum)


def _phased(
    ends: list[float],
    values: list[tuple[float, float]],
    anneal: Callable[[float, float, jax.Array], jax.Array],
    total_steps: int,
) -> Callable[[jax.typing.ArrayLike], jax.Array]:
    """``anneal(start, end, pct)`` through consecutive phases ending at ``ends``."""
    starts = [0.0, *ends[:-1]]

    def schedule(step):
        step = jnp.minimum(_as_float(step), total_steps)
        pieces = [
            anneal(first, last, (step - start) / (end - start))
            for start, end, (first, last) in zip(starts, ends, values, strict=True)
        ]
        value = pieces[-1]  # the first phase whose end is >= step, else the last one
        for end, piece in zip(ends[-2::-1], pieces[-2::-1], strict=True):
            value = jnp.where(step <= end, piece, value)
        return value

    return schedule


def _anneal_cos(start: float, end: float, pct: jax.Array) -> jax.Array:
    return end + (start - end) / 2.0 * (jnp.cos(math.pi * pct) + 1)


def _anneal_linear(start: float, end: float, pct: jax.Array) -> jax.Array:
    return (end - start) * pct + start


_SCALE_FNS: dict[str, tuple[Callable[[float], Callable], str]] = {
    "triangular": (lambda gamma: lambda x: 1.0, "cycle"),
    "triangular2": (lambda gamma: lambda x: 1 / (2.0 ** (x - 1)), "cycle"),
    "exp_range": (lambda gamma: lambda x: gamma**x, "iterations"),
}


def CyclicLR(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[jax.Array], jax.Array] | None = None,
    scale_mode: Literal["cycle", "iterations"] = "cycle",
    cycle_momentum: bool = True,
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
) -> Schedule:
    """The cyclical learning rate policy (``lr_scheduler.CyclicLR``); counts steps
    (batches), as in torch.

    The lr climbs from ``base_lr`` to ``max_lr`` in ``step_size_up`` steps and back in
    ``step_size_down`` (default: ``step_size_up``), its amplitude times
    ``scale_fn(cycle)`` (``scale_mode='cycle'``, cycles counted from 1) or
    ``scale_fn(step)`` (``'iterations'``). The modes are torch's: ``'triangular'``
    (scale 1), ``'triangular2'`` (halved each cycle), ``'exp_range'`` (``gamma ** step``);
    a ``scale_fn`` overrides ``mode`` and then ``scale_mode`` applies, as in torch.
    ``scale_fn`` receives a float array and must use ``jnp`` operations. With
    ``cycle_momentum`` the schedule's ``momentum`` attribute cycles inversely, from
    ``max_momentum`` at ``base_lr`` to ``base_momentum`` at ``max_lr``; pass it as the
    optimiser's ``momentum`` or ``betas[0]``, as torch writes it into the param group.
    torch's list-valued (per param group) bounds are one schedule per group here.
    """
    check_lr("CyclicLR", base_lr, name="base_lr", schedule_ok=False)
    check_lr("CyclicLR", max_lr, name="max_lr", schedule_ok=False)
    step_size_down = step_size_up if step_size_down is None else step_size_down
    check_positive_int("CyclicLR", step_size_up=step_size_up, step_size_down=step_size_down)
    if scale_fn is None:
        if mode not in _SCALE_FNS:
            raise ValueError(
                f"CyclicLR: mode must be one of {list(_SCALE_FNS)} when scale_fn is None, "
                f"got {mode!r}"
            )
        check_not_nan("CyclicLR", gamma=gamma)
        make_scale_fn, scale_mode = _SCALE_FNS[mode]
        scale_fn = make_scale_fn(gamma)
    elif not callable(scale_fn):
        raise TypeError(f"CyclicLR: scale_fn must be callable, got {type(scale_fn).__name__}")
    elif scale_mode not in ("cycle", "iterations"):
        raise ValueError(
            f"CyclicLR: scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}"
        )
    total_size = float(step_size_up + step_size_down)
    step_ratio = step_size_up / total_size

    def position(step):  # the fraction of the amplitude reached at this step
        step = _as_float(step)
        cycle = jnp.floor(1 + step / total_size)
        x = 1.0 + step / total_size - cycle
        factor = jnp.where(x <= step_ratio, x / step_ratio, (x - 1) / (step_ratio - 1))
        return factor, scale_fn(cycle if scale_mode == "cycle" else step)

    def schedule(step):
        factor, scale = position(step)
        return base_lr + (max_lr - base_lr) * factor * scale

    def momentum(step):
        factor, scale = position(step)
        return max_momentum - (max_momentum - base_momentum) * factor * scale

    if cycle_momentum:
        check_non_negative("CyclicLR", base_momentum=base_momentum, max_momentum=max_momentum)
    return Schedule("CyclicLR", schedule, base_lr, momentum if cycle_momentum else None)


def LambdaLR(lr: float, lr_lambda: Callable[[jax.Array], jax.Array]) -> Schedule:
    """``lr * lr_lambda(step)`` (``lr_scheduler.LambdaLR``).

    Counts epochs in torch's documentation (see :func:`per_epoch`). ``lr_lambda``
    receives the step as given, an integer (traced under ``jit``), as in torch; it must
    use ``jnp`` operations rather than Python control flow on it. JAX divides an int32
    array in float32 (``(s + 1) / 8``); multiply by a float (``(s + 1) * 0.125``) to keep
    float64 precision under ``jax_enable_x64``. torch's list of lambdas (one per param
    group) is one schedule per group here.
    """
    check_lr("LambdaLR", lr, schedule_ok=False)
    _check_callable("LambdaLR", lr_lambda)
    return Schedule("LambdaLR", lambda step: lr * lr_lambda(step), lr)


def MultiplicativeLR(lr: float, lr_lambda: Callable[[jax.Array], jax.Array]) -> Schedule:
    """``lr * lr_lambda(1) * ... * lr_lambda(step)`` (``lr_scheduler.MultiplicativeLR``).

    Counts epochs in torch's documentation: wrap it in :func:`per_epoch` to use it as an
    optimiser's lr, since the product is a loop of ``step`` calls of ``lr_lambda`` (for a
    constant factor, :func:`ExponentialLR` is the closed form). ``lr_lambda`` receives an
    int32 epoch and must use ``jnp`` operations on it. In a torch ``SequentialLR``,
    MultiplicativeLR carries on from the lr it finds at its milestone; here, as every
    schedule in :func:`SequentialLR`, it restarts from ``lr``.
    """
    check_lr("MultiplicativeLR", lr, schedule_ok=False)
    _check_callable("MultiplicativeLR", lr_lambda)

    def schedule(step):
        one = jnp.ones((), jax.dtypes.canonicalize_dtype(jnp.float64))
        n = jnp.asarray(step).astype(jnp.int32)
        return lr * jax.lax.fori_loop(
            1, n + 1, lambda k, prod: prod * jnp.asarray(lr_lambda(k), prod.dtype), one
        )

    return Schedule("MultiplicativeLR", schedule, lr, chainable=True)


def SequentialLR(schedules: Sequence[Callable], milestones: Sequence[int]) -> Schedule:
    """``schedules[i]`` from ``milestones[i-1]`` on, restarted at step 0 (``SequentialLR``).

    Counts whatever its schedules count. Torch's sub-schedulers share the optimizer's
    base lr; here each schedule carries its own (pass the same lr to each to reproduce
    torch). Torch restarts each scheduler at its milestone from its closed form, except
    MultiplicativeLR (see there). The momentum schedules are joined too when every
    schedule has one.
    """
    if not schedules or not all(callable(s) for s in schedules):
        raise TypeError(
            f"SequentialLR: schedules must be a non-empty list of callables, got {schedules!r}"
        )
    if len(milestones) != len(schedules) - 1:
        raise ValueError(
            f"SequentialLR: expected {len(schedules) - 1} milestones for {len(schedules)} "
            f"schedules, got {len(milestones)}"
        )
    check_milestones("SequentialLR", milestones, strict=True)
    lrs = {getattr(s, "lr", None) for s in schedules}
    momenta = [getattr(s, "momentum", None) for s in schedules]
    momentum = None
    if all(m is not None for m in momenta):
        momentum = optax.join_schedules(momenta, list(milestones))
    fn = optax.join_schedules(list(schedules), list(milestones))
    return Schedule("SequentialLR", fn, lrs.pop() if len(lrs) == 1 else None, momentum)


def ChainedScheduler(schedules: Sequence[Schedule]) -> Schedule:
    """The product of schedules' factors: ``lr * prod(s(step) / lr)`` (``ChainedScheduler``).

    Torch steps each chained scheduler in turn, and a chainable one multiplies the
    current lr by its factor, so the chain's lr is the base lr times every scheduler's
    factor. Every schedule must scale the same ``lr``, as torch's share the optimizer's,
    and be chainable: StepLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR,
    PolynomialLR, MultiplicativeLR, CosineAnnealingLR or another chain. LambdaLR,
    CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts and SequentialLR set the lr outright
    in torch (torch documents OneCycleLR as not chainable) and are refused.
    CosineAnnealingLR's torch update is ``eta_min + (lr - eta_min) * ratio``, so the
    chain equals torch's exactly when ``eta_min = 0``, up to ``T_max`` (torch's own tests
    chain it with ``eta_min = 1e-10``). Counts whatever its schedules count.
    """
    if not schedules or not all(isinstance(s, Schedule) for s in schedules):
        raise TypeError(
            "ChainedScheduler: schedules must be a non-empty list of jaxnet schedules, "
            f"got {schedules!r}"
        )
    for s in schedules:
        if not s.chainable:
            raise ValueError(
                f"ChainedScheduler: {s.name} sets the lr outright rather than scaling it "
                "(torch's is not chainable); use SequentialLR, or a LambdaLR of the product"
            )
    lrs = {s.lr for s in schedules}
    if len(lrs) != 1:
        raise ValueError(
            f"ChainedScheduler: every schedule must scale the same lr, got {sorted(lrs)}"
        )
    lr = lrs.pop()

    def schedule(step):
        value = jnp.asarray(lr, jax.dtypes.canonicalize_dtype(jnp.float64))
        for s in schedules:
            value = value * (s(step) / lr) if lr else value
        return value

    return Schedule("ChainedScheduler", schedule, lr, chainable=True)


def per_epoch(
    schedule: Callable[[jax.typing.ArrayLike], jax.Array],
    steps_per_epoch: int,
    *,
    fractional: bool = False,
) -> Schedule:
    """An epoch-counting schedule as a step-counting one: ``schedule(step // steps_per_epoch)``.

    A jaxnet optimiser calls its lr schedule with its update count; torch steps most
    schedulers once an epoch. ``per_epoch(StepLR(0.1, 30), len(loader))`` is torch's
    ``StepLR(optimizer, 30)`` stepped after each epoch. With ``fractional=True`` the
    schedule receives ``step / steps_per_epoch``, torch's
    ``scheduler.step(epoch + i / iters)`` (for CosineAnnealingWarmRestarts and
    CosineAnnealingLR). A momentum schedule is converted alike.
    """
    if not callable(schedule):
        raise TypeError(f"per_epoch: schedule must be callable, got {type(schedule).__name__}")
    check_positive_int("per_epoch", steps_per_epoch=steps_per_epoch)

    def epoch(step):
        if fractional:
            return _as_float(step) / steps_per_epoch
        return jnp.asarray(step) // steps_per_epoch

    def counting_epochs(fn):
        return None if fn is None else lambda step: fn(epoch(step))

    momentum = counting_epochs(getattr(schedule, "momentum", None))
    return Schedule(
        getattr(schedule, "name", "schedule"),
        counting_epochs(schedule),
        getattr(schedule, "lr", None),
        momentum,
        getattr(schedule, "chainable", False),
    )


def get_expon_lr_func(
    lr_init: float,
    lr_final: float,
    lr_delay_steps: int = 0,
    lr_delay_mult: float = 1.0,
    max_steps: int = 1_000_000,
) -> Schedule:
    """Log-linear decay from ``lr_init`` to ``lr_final`` over ``max_steps``, with a warm delay.

    torch.optim.lr_scheduler has no such scheduler; in torch this is a ``LambdaLR`` with
    this function (divided by the base lr) as ``lr_lambda``, stepped once an iteration.

    The schedule behind deformable 3D Gaussians' / Plenoxels' ``update_learning_rate``:
    ``exp(log(lr_init) * (1 - t) + log(lr_final) * t)`` with ``t = clip(step / max_steps,
    0, 1)``, times ``lr_delay_mult + (1 - lr_delay_mult) * sin(pi/2 * clip(step /
    lr_delay_steps, 0, 1))`` when ``lr_delay_steps > 0``. Negative steps, and
    ``lr_init == lr_final == 0``, give 0.
    """
    for name, value in (("lr_init", lr_init), ("lr_final", lr_final)):
        check_lr("get_expon_lr_func", value, name=name, schedule_ok=False)
    if (lr_init == 0) != (lr_final == 0):
        raise ValueError(
            f"get_expon_lr_func: a log-linear decay needs {lr_init=} and {lr_final=} both > 0 "
            "(or both 0 to disable the parameter)"
        )
    check_positive_int("get_expon_lr_func", max_steps=max_steps)
    check_not_nan("get_expon_lr_func", lr_delay_mult=lr_delay_mult)
    if lr_delay_steps != 0:
        check_positive_int("get_expon_lr_func", lr_delay_steps=lr_delay_steps)
    if lr_init == 0:
        return Schedule("get_expon_lr_func", lambda step: jnp.zeros_like(_as_float(step)), 0.0)
    log_init, log_final = math.log(lr_init), math.log(lr_final)

    def schedule(step):
        step = _as_float(step)
        if lr_delay_steps > 0:
            phase = jnp.clip(step / lr_delay_steps, 0, 1)
            delay_rate = lr_delay_mult + (1 - lr_delay_mult) * jnp.sin(0.5 * math.pi * phase)
        else:
            delay_rate = 1.0
        t = jnp.clip(step / max_steps, 0, 1)
        log_lerp = jnp.exp(log_init * (1 - t) + log_final * t)
        return jnp.where(step < 0, 0.0, delay_rate * log_lerp)

    return Schedule("get_expon_lr_func", schedule, lr_init)


def _check_in_unit_interval(owner: str, name: str, value: float, low_open: bool) -> None:
    check_real(owner, name, value)
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise ValueError(f"{owner}: {name}={value!r} must be in {'(' if low_open else '['}0, 1]")


def _check_callable(owner: str, lr_lambda: object) -> None:
    if not callable(lr_lambda):
        raise TypeError(f"{owner}: lr_lambda must be callable, got {type(lr_lambda).__name__}")


def _as_float(step: jax.typing.ArrayLike) -> jax.Array:
    """The step as the widest float JAX has enabled (float64 under ``jax_enable_x64``).

    torch computes learning rates in Python floats; JAX would compute an int32 step's
    ``step / n`` in float32.
    """
    return jnp.asarray(step, dtype=jax.dtypes.canonicalize_dtype(jnp.float64))


def _on_float_steps(schedule: optax.Schedule) -> optax.Schedule:
    return lambda step: schedule(_as_float(step))
