"""The three optimiser pieces where torch.optim's arithmetic differs from optax's.

Everything else in :mod:`jaxnet.optim` is assembled from optax's own transformations;
each function here is a small ``optax.GradientTransformation`` that reproduces one
torch update rule exactly, with the difference stated in its docstring.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class DampenedTraceState(NamedTuple):
    """Updates done so far and torch's momentum buffer."""

    count: jax.Array  # shape (), int32
    trace: optax.Updates


def dampened_trace(momentum: float, dampening: float) -> optax.GradientTransformation:
    """torch.optim.SGD's momentum buffer when ``dampening != 0``.

    torch sets the buffer to the gradient itself on the first step and to
    ``momentum * buf + (1 - dampening) * g`` afterwards. ``optax.trace`` starts from a
    zero buffer and has no dampening, so it only equals torch for ``dampening == 0``.
    """

    def init_fn(params):
        return DampenedTraceState(
            count=jnp.zeros([], jnp.int32), trace=optax.tree.zeros_like(params)
        )

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0
        trace = jax.tree.map(
            lambda g, t: jnp.where(first, g, momentum * t + (1 - dampening) * g),
            updates,
            state.trace,
        )
        return trace, DampenedTraceState(count=optax.safe_increment(state.count), trace=trace)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_amsgrad(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """Adam with ``amsgrad=True`` as torch computes it.

    torch keeps the running maximum of the *raw* second moment and divides it by the
    bias correction ``1 - b2**t`` afterwards: ``m̂ / (sqrt(max_s v_s) / sqrt(1 - b2**t)
    + eps)``. ``optax.scale_by_amsgrad`` takes the maximum of the bias-corrected
    ``v_s / (1 - b2**s)`` instead (or of the raw moment without any correction), which
    gives different steps. The state is optax's ``ScaleByAmsgradState``.
    """

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAmsgradState(
            count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros, nu_max=zeros
        )

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        mu_hat = optax.tree.bias_correction(mu, b1, count)
        sqrt_correction2 = jnp.sqrt(1 - b2**count)
        updates = jax.tree.map(
            lambda m, v: m / (jnp.sqrt(v) / sqrt_correction2.astype(v.dtype) + eps),
            mu_hat,
            nu_max,
        )
        return updates, optax.ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_adagrad(initial_accumulator_value: float, eps: float) -> optax.GradientTransformation:
    """torch.optim.Adagrad's scaling ``g / (sqrt(sum g²) + eps)``.

    ``optax.scale_by_rss`` adds ``eps`` inside the square root
    (``g / sqrt(sum g² + eps)``) and zeroes the update where the sum is 0; torch adds
    it outside. The state is optax's ``ScaleByRssState``.
    """

    def init_fn(params):
        return optax.ScaleByRssState(
            sum_of_squares=optax.tree.full_like(params, initial_accumulator_value)
        )

    def update_fn(updates, state, params=None):
        del params
        sum_of_squares = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
        updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, sum_of_squares)
        return updates, optax.ScaleByRssState(sum_of_squares=sum_of_squares)

    return optax.GradientTransformation(init_fn, update_fn)
