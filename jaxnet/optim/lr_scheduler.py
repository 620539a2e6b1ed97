"""torch.optim.lr_scheduler as pure functions of the step (``optax.Schedule``).

A torch scheduler mutates ``optimizer.param_groups[...]['lr']`` once per ``step()``; a
jaxnet schedule is the function ``step -> lr`` giving the same value: ``schedule(k)``
equals the lr torch's optimizer holds after ``k`` calls of ``scheduler.step()``, i.e.
the lr of the ``(k+1)``-th update. Torch passes the optimizer and takes the base lr
from it; jaxnet takes the base lr as the first argument::

    torch:  StepLR(optimizer, 30, 0.1)      # optimizer built with lr=0.05
    jaxnet: StepLR(0.05, 30, 0.1)           # pass it as lr: jaxnet.optim.SGD(StepLR(...))

Every schedule is jittable and accepts traced integer steps. It computes in the widest
float JAX has enabled (float64 under ``jax_enable_x64``, like torch's Python floats;
optimisers cast the lr to the parameters' dtype), except that :func:`LambdaLR` returns
whatever its function gives. Bad arguments raise ``ValueError`` (``TypeError`` for a
wrong kind of argument) at construction.
"""

from __future__ import annotations

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
    check_not_nan,
    check_positive,
    check_positive_int,
    check_real,
)


def StepLR(lr: float, step_size: int, gamma: float = 0.1) -> optax.Schedule:
    """``lr * gamma ** (step // step_size)`` (``torch.optim.lr_scheduler.StepLR``).

    ``gamma`` must be > 0 (torch also accepts 0 and negative factors).
    """
    check_lr("StepLR", lr, schedule_ok=False)
    check_positive_int("StepLR", step_size=step_size)
    check_positive("StepLR", gamma=gamma)
    return _on_float_steps(optax.exponential_decay(lr, step_size, gamma, staircase=True))


def MultiStepLR(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> optax.Schedule:
    """``lr * gamma ** (number of milestones <= step)`` (``lr_scheduler.MultiStepLR``).

    ``milestones`` must be sorted positive ints; a repeated milestone applies ``gamma``
    once per occurrence, as in torch.
    """
    check_lr("MultiStepLR", lr, schedule_ok=False)
    check_milestones("MultiStepLR", milestones, strict=False)
    check_positive("MultiStepLR", gamma=gamma)
    scales = {m: gamma**count for m, count in Counter(milestones).items()}
    return _on_float_steps(optax.piecewise_constant_schedule(lr, scales))


def ExponentialLR(lr: float, gamma: float) -> optax.Schedule:
    """``lr * gamma ** step`` (``lr_scheduler.ExponentialLR``); ``gamma`` must be > 0."""
    check_lr("ExponentialLR", lr, schedule_ok=False)
    check_positive("ExponentialLR", gamma=gamma)
    return _on_float_steps(optax.exponential_decay(lr, 1, gamma))


def CosineAnnealingLR(lr: float, T_max: int, eta_min: float = 0.0) -> optax.Schedule:
    """``eta_min + (lr - eta_min) * (1 + cos(pi * step / T_max)) / 2`` (``CosineAnnealingLR``).

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

    return schedule


def LinearLR(
    lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
) -> optax.Schedule:
    """``lr`` times a factor going linearly from ``start_factor`` to ``end_factor``.

    The factor reaches ``end_factor`` at ``total_iters`` and stays there
    (``lr_scheduler.LinearLR``; torch's ranges: ``0 < start_factor <= 1``,
    ``0 <= end_factor <= 1``).
    """
    check_lr("LinearLR", lr, schedule_ok=False)
    check_real("LinearLR", "start_factor", start_factor)
    check_real("LinearLR", "end_factor", end_factor)
    if not 0 < start_factor <= 1:
        raise ValueError(f"LinearLR: {start_factor=} must be in (0, 1]")
    if not 0 <= end_factor <= 1:
        raise ValueError(f"LinearLR: {end_factor=} must be in [0, 1]")
    check_positive_int("LinearLR", total_iters=total_iters)
    return _on_float_steps(optax.linear_schedule(lr * start_factor, lr * end_factor, total_iters))


def OneCycleLR(
    max_lr: float,
    total_steps: int,
    *,
    pct_start: float = 0.3,
    anneal_strategy: Literal["cos", "linear"] = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> optax.Schedule:
    """The 1cycle policy's learning rate (``lr_scheduler.OneCycleLR``, lr only).

    The lr rises from ``max_lr / div_factor`` to ``max_lr`` by step
    ``pct_start * total_steps - 1`` and anneals to
    ``max_lr / (div_factor * final_div_factor)`` at ``total_steps - 1`` (with
    ``three_phase``, it first returns to the initial lr at ``2 * pct_start * total_steps
    - 2``). Phase ends are torch's fractional steps, not ``optax.cosine_onecycle_schedule``'s
    rounded ones. Torch also cycles the optimizer's momentum (``cycle_momentum=True``,
    between ``base_momentum`` and ``max_momentum``); this schedule gives the lr only.
    Only ``total_steps`` is taken (torch also offers ``epochs * steps_per_epoch``, which is
    why the arguments after it are keyword-only here: torch's third positional argument is
    ``epochs``). Past ``total_steps`` torch raises; this schedule holds its value there.
    ``div_factor`` and ``final_div_factor`` must be > 0 (torch divides by zero at 0 and
    accepts negative factors, which give negative learning rates).
    """
    check_lr("OneCycleLR", max_lr, name="max_lr", schedule_ok=False)
    check_positive_int("OneCycleLR", total_steps=total_steps)
    check_positive("OneCycleLR", div_factor=div_factor, final_div_factor=final_div_factor)
    check_real("OneCycleLR", "pct_start", pct_start)
    if not 0 <= pct_start <= 1:
        raise ValueError(f"OneCycleLR: {pct_start=} must be in [0, 1]")
    if anneal_strategy not in ("cos", "linear"):
        raise ValueError(
            f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
        )
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    rise_end = float(pct_start * total_steps) - 1
    if three_phase:
        phases = [
            (rise_end, initial_lr, max_lr),
            (float(2 * pct_start * total_steps) - 2, max_lr, initial_lr),
            (total_steps - 1, initial_lr, min_lr),
        ]
    else:
        phases = [(rise_end, initial_lr, max_lr), (total_steps - 1, max_lr, min_lr)]
    starts = [0.0] + [end for end, _, _ in phases[:-1]]
    if any(end == start for start, (end, _, _) in zip(starts, phases, strict=True)):
        raise ValueError(
            f"OneCycleLR: a phase has zero length ({total_steps=}, {pct_start=}, "
            f"{three_phase=}); torch divides by zero there"
        )
    anneal = _anneal_cos if anneal_strategy == "cos" else _anneal_linear

    def schedule(step):
        step = jnp.minimum(_as_float(step), total_steps)
        values = [
            anneal(start_lr, end_lr, (step - start) / (end - start))
            for start, (end, start_lr, end_lr) in zip(starts, phases, strict=True)
        ]
        lr = values[-1]  # the first phase whose end is >= step, else the last one
        for (end, _, _), value in zip(phases[-2::-1], values[-2::-1], strict=True):
            lr = jnp.where(step <= end, value, lr)
        return lr

    return schedule


def _anneal_cos(start: float, end: float, pct: jax.Array) -> jax.Array:
    return end + (start - end) / 2.0 * (jnp.cos(math.pi * pct) + 1)


def _anneal_linear(start: float, end: float, pct: jax.Array) -> jax.Array:
    return (end - start) * pct + start


def LambdaLR(lr: float, lr_lambda: Callable[[jax.Array], jax.Array]) -> optax.Schedule:
    """``lr * lr_lambda(step)`` (``lr_scheduler.LambdaLR``).

    ``lr_lambda`` receives the step as given, an integer (traced under ``jit``), as in
    torch; it must use ``jnp`` operations rather than Python control flow on it. JAX
    divides an int32 array in float32 (``(s + 1) / 8``); multiply by a float
    (``(s + 1) * 0.125``) to keep float64 precision under ``jax_enable_x64``.
    """
    check_lr("LambdaLR", lr, schedule_ok=False)
    if not callable(lr_lambda):
        raise TypeError(f"LambdaLR: lr_lambda must be callable, got {type(lr_lambda).__name__}")
    return lambda step: lr * lr_lambda(step)


def SequentialLR(schedules: Sequence[optax.Schedule], milestones: Sequence[int]) -> optax.Schedule:
    """``schedules[i]`` from ``milestones[i-1]`` on, restarted at step 0 (``SequentialLR``).

    Torch's sub-schedulers share the optimizer's base lr; here each schedule carries its
    own (pass the same lr to each to reproduce torch).
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
    return optax.join_schedules(list(schedules), list(milestones))


def get_expon_lr_func(
    lr_init: float,
    lr_final: float,
    lr_delay_steps: int = 0,
    lr_delay_mult: float = 1.0,
    max_steps: int = 1_000_000,
) -> optax.Schedule:
    """Log-linear decay from ``lr_init`` to ``lr_final`` over ``max_steps``, with a warm delay.

    torch.optim.lr_scheduler has no such scheduler; in torch this is a ``LambdaLR`` with
    this function (divided by the base lr) as ``lr_lambda``.

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
        return lambda step: jnp.zeros_like(_as_float(step))
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

    return schedule


def _as_float(step: jax.typing.ArrayLike) -> jax.Array:
    """The step as the widest float JAX has enabled (float64 under ``jax_enable_x64``).

    torch computes learning rates in Python floats; JAX would compute an int32 step's
    ``step / n`` in float32.
    """
    return jnp.asarray(step, dtype=jax.dtypes.canonicalize_dtype(jnp.float64))


def _on_float_steps(schedule: optax.Schedule) -> optax.Schedule:
    return lambda step: schedule(_as_float(step))
