"""The Adam family's scalings as torch computes them, where optax's differ or cannot take
a schedule for ``beta1``.

``b1`` is a float or a schedule (``step -> beta1``, read at the number of updates done
so far), so that OneCycleLR's and CyclicLR's momentum cycling can drive it; torch reads
``group['betas'][0]`` at every step the same way, bias correction included
(``1 - beta1**step`` with the current ``beta1``). The states are optax's
``ScaleByAdamState``/``ScaleByAmsgradState`` (``mu`` is torch's ``exp_avg``, ``nu`` its
``exp_avg_sq`` or ``exp_inf``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnet.optim.transforms import ScalarOrSchedule, as_dtype_of, float_count, value_at


def _moments(updates, state, b1, b2):
    """torch's ``exp_avg.lerp_(g, 1 - b1)`` and ``exp_avg_sq * b2 + (1 - b2) * g²``."""
    mu = jax.tree.map(lambda g, m: m + as_dtype_of(1 - b1, g) * (g - m), updates, state.mu)
    nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
    return mu, nu


def scale_by_adam(
    b1: ScalarOrSchedule, b2: float, eps: float, amsgrad: bool
) -> optax.GradientTransformation:
    """torch Adam's ``(m / bc1) / (sqrt(v) / sqrt(bc2) + eps)``, ``bc_i = 1 - b_i**step``.

    With ``amsgrad`` torch keeps the running maximum of the *raw* second moment and
    divides it by the bias correction afterwards; ``optax.scale_by_amsgrad`` takes the
    maximum of the bias-corrected moment instead, which gives different steps.
    ``optax.scale_by_adam`` equals torch's plain Adam for a constant ``b1`` and is used
    there (see :func:`jaxnet.optim.Adam`).
    """

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        count = jnp.zeros([], jnp.int32)
        if amsgrad:
            return optax.ScaleByAmsgradState(count=count, mu=zeros, nu=zeros, nu_max=zeros)
        return optax.ScaleByAdamState(count=count, mu=zeros, nu=zeros)

    def update_fn(updates, state, params=None):
        del params
        beta1 = value_at(b1, state.count)
        mu, nu = _moments(updates, state, beta1, b2)
        step = float_count(state.count + 1)
        bc1, sqrt_bc2 = 1 - beta1**step, jnp.sqrt(1 - b2**step)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu) if amsgrad else nu
        updates = jax.tree.map(
            lambda m, v: (m / as_dtype_of(bc1, m)) / (jnp.sqrt(v) / as_dtype_of(sqrt_bc2, v) + eps),
            mu,
            nu_max,
        )
        count = optax.safe_increment(state.count)
        if amsgrad:
            return updates, optax.ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)
        return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_adamax(b1: ScalarOrSchedule, b2: float, eps: float) -> optax.GradientTransformation:
    """torch Adamax's ``(m / (1 - b1**step)) / max(b2 * u, |g| + eps)`` with a scheduled
    ``b1``; ``optax.scale_by_adamax`` (the same arithmetic) takes only a constant."""

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

    def update_fn(updates, state, params=None):
        del params
        beta1 = value_at(b1, state.count)
        mu = jax.tree.map(lambda g, m: m + as_dtype_of(1 - beta1, g) * (g - m), updates, state.mu)
        nu = jax.tree.map(lambda g, u: jnp.maximum(b2 * u, jnp.abs(g) + eps), updates, state.nu)
        bc1 = 1 - beta1 ** float_count(state.count + 1)
        updates = jax.tree.map(lambda m, u: m / as_dtype_of(bc1, m) / u, mu, nu)
        return updates, optax.ScaleByAdamState(optax.safe_increment(state.count), mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByNadamState(NamedTuple):
    """optax's Adam state plus torch NAdam's ``mu_product`` (a float32 scalar, as torch
    keeps it)."""

    count: jax.Array
    mu_product: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_nadam(
    b1: ScalarOrSchedule, b2: float, eps: float, momentum_decay: float
) -> optax.GradientTransformation:
    """torch NAdam (Dozat's, with momentum decay), ``-lr`` left to the caller.

    ``mu_t = b1 * (1 - 0.5 * 0.96**(step * momentum_decay))``, ``mu_product`` their
    running product; the step is ``(1 - mu_t) / (1 - prod) * g / denom + mu_{t+1} /
    (1 - prod * mu_{t+1}) * m / denom`` with ``denom = sqrt(v / bc2) + eps``.
    ``optax.scale_by_nadam`` is the Nesterov variant of Adam without momentum decay.
    torch keeps ``mu_product`` in float32 (its default scalar dtype); so does this.
    """

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        one = jnp.ones([], jnp.float32)
        return ScaleByNadamState(count=jnp.zeros([], jnp.int32), mu_product=one, mu=zeros, nu=zeros)

    def update_fn(updates, state, params=None):
        del params
        beta1 = value_at(b1, state.count)
        step = float_count(state.count + 1)
        mu_t = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
        mu_product = state.mu_product * jnp.asarray(mu_t, jnp.float32)
        product = jnp.asarray(mu_product, jnp.result_type(float))
        grad_coef = (1 - mu_t) / (1 - product)
        avg_coef = mu_next / (1 - product * mu_next)
        mu, nu = _moments(updates, state, beta1, b2)
        bc2 = 1 - b2**step

        def step_fn(g, m, v):
            denom = jnp.sqrt(v / as_dtype_of(bc2, v)) + eps
            return as_dtype_of(grad_coef, g) * g / denom + as_dtype_of(avg_coef, m) * m / denom

        updates = jax.tree.map(step_fn, updates, mu, nu)
        count = optax.safe_increment(state.count)
        return updates, ScaleByNadamState(count=count, mu_product=mu_product, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_radam(b1: ScalarOrSchedule, b2: float, eps: float) -> optax.GradientTransformation:
    """torch RAdam, ``-lr`` left to the caller.

    When the variance is tractable (``rho_t > 5``) the step is ``m̂ * rect *
    sqrt(bc2) / (sqrt(v) + eps)``, otherwise ``m̂``. ``optax.scale_by_radam`` switches
    at ``rho_t >= 5`` and puts ``eps`` after the bias correction (``m̂ / (sqrt(v̂) +
    eps)``), which differs from torch's ``sqrt(bc2) / (sqrt(v) + eps)``.
    """

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

    def update_fn(updates, state, params=None):
        del params
        beta1 = value_at(b1, state.count)
        mu, nu = _moments(updates, state, beta1, b2)
        step = float_count(state.count + 1)
        bc1, bc2 = 1 - beta1**step, 1 - b2**step
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * step * b2**step / bc2
        tractable = rho_t > 5
        ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        rect = jnp.sqrt(jnp.where(tractable, ratio, 1.0))

        def step_fn(m, v):
            m_hat = m / as_dtype_of(bc1, m)
            adaptive = as_dtype_of(jnp.sqrt(bc2), v) / (jnp.sqrt(v) + eps)
            return jnp.where(tractable, m_hat * adaptive * as_dtype_of(rect, m), m_hat)

        updates = jax.tree.map(step_fn, mu, nu)
        return updates, optax.ScaleByAdamState(optax.safe_increment(state.count), mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)
