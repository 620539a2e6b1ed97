"""The optimiser pieces where torch.optim's arithmetic differs from optax's.

Everything else in :mod:`jaxnet.optim` is assembled from optax's own transformations;
each function here is a small ``optax.GradientTransformation`` that reproduces one
torch update rule exactly, with the difference from optax stated in its docstring.
The Adam family's pieces are in :mod:`jaxnet.optim.adam_transforms`.

A hyperparameter documented as "a float or a schedule" is read at the number of updates
applied so far (0 for the first), like ``lr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

ScalarOrSchedule = float | Callable[[jax.Array], Any]


def value_at(hyperparameter: ScalarOrSchedule, count: jax.Array) -> Any:
    """A hyperparameter's value at update ``count``: a schedule is called, a float kept."""
    return hyperparameter(count) if callable(hyperparameter) else hyperparameter


def as_dtype_of(value: Any, leaf: jax.Array) -> jax.Array:
    """``value`` in ``leaf``'s dtype, so that a float64 scalar does not promote float32."""
    return jnp.asarray(value, dtype=leaf.dtype)


def float_count(count: jax.Array) -> jax.Array:
    """``count`` as the default float (float64 with x64), as torch's ``step.item()``."""
    return jnp.asarray(count, dtype=jnp.result_type(float))


class MomentumState(NamedTuple):
    """Updates done so far and torch's ``momentum_buffer``."""

    count: jax.Array  # shape (), int32
    trace: optax.Updates


def momentum(
    momentum: ScalarOrSchedule, dampening: float = 0.0, nesterov: bool = False
) -> optax.GradientTransformation:
    """torch's momentum buffer (``torch.optim.SGD``, and ``RMSprop``'s with ``dampening=0``).

    The buffer is the gradient itself on the first step and ``momentum * buf + (1 -
    dampening) * g`` afterwards; the output is ``buf``, or ``g + momentum * buf`` with
    ``nesterov``. ``optax.trace`` starts from a zero buffer without dampening and takes
    only a constant ``momentum``, so it equals torch only for a constant momentum and
    ``dampening == 0`` (where :func:`jaxnet.optim.SGD` uses it).
    """

    def init_fn(params):
        return MomentumState(count=jnp.zeros([], jnp.int32), trace=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        m = value_at(momentum, state.count)
        first = state.count == 0

        def buffer(g, t):
            later = as_dtype_of(m, t) * t + as_dtype_of(1 - dampening, g) * g
            return jnp.where(first, g, later)

        trace = jax.tree.map(buffer, updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, t: g + as_dtype_of(m, t) * t, updates, trace)
        else:
            updates = trace
        return updates, MomentumState(count=optax.safe_increment(state.count), trace=trace)

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


class AsgdState(NamedTuple):
    """torch ASGD's state: ``eta`` and ``mu`` are float32 scalars, as torch keeps them."""

    count: jax.Array
    eta: jax.Array
    mu: jax.Array
    ax: optax.Updates


def asgd(
    lr: ScalarOrSchedule, lambd: float, alpha: float, t0: float
) -> optax.GradientTransformation:
    """torch.optim.ASGD's step, ``-lr`` included (optax has no ASGD).

    ``param ← param * (1 - lambd * eta) - eta * g``; then the average ``ax`` moves
    towards ``param`` by ``mu``, and ``eta = lr / (1 + lambd * lr * step)**alpha``,
    ``mu = 1 / max(1, step - t0)`` for the next step. torch stores ``eta`` and ``mu`` as
    float32 scalars (its default scalar dtype), so they are rounded to float32 here too.
    ``ax`` is not used by the step; it is kept for :func:`jaxnet.optim.torch_state_dict`.
    """

    def init_fn(params):
        return AsgdState(
            count=jnp.zeros([], jnp.int32),
            eta=jnp.asarray(value_at(lr, jnp.zeros([], jnp.int32)), jnp.float32),
            mu=jnp.ones([], jnp.float32),
            ax=optax.tree.zeros_like(params),
        )

    def update_fn(updates, state, params):
        eta = jnp.asarray(state.eta, jnp.result_type(float))
        decay = 1 - lambd * eta
        new_params = jax.tree.map(
            lambda p, g: as_dtype_of(decay, p) * p - as_dtype_of(eta, g) * g, params, updates
        )
        ax = jax.tree.map(
            lambda a, p: jnp.where(state.mu == 1, p, a + (p - a) * as_dtype_of(state.mu, p)),
            state.ax,
            new_params,
        )
        step = float_count(state.count + 1)
        lr_now = value_at(lr, state.count)
        new_state = AsgdState(
            count=optax.safe_increment(state.count),
            eta=jnp.asarray(lr_now / (1 + lambd * lr_now * step) ** alpha, jnp.float32),
            mu=jnp.asarray(1 / jnp.maximum(1, step - t0), jnp.float32),
            ax=ax,
        )
        return jax.tree.map(lambda n, p: n - p, new_params, params), new_state

    return optax.GradientTransformation(init_fn, update_fn)


class RpropState(NamedTuple):
    """torch Rprop's ``prev`` (the last gradient used) and per-element ``step_size``."""

    count: jax.Array
    prev: optax.Updates
    step_size: optax.Updates


def rprop(
    lr: float, etas: tuple[float, float], step_sizes: tuple[float, float]
) -> optax.GradientTransformation:
    """torch.optim.Rprop's step, ``-lr`` included (the initial step size is ``lr``).

    The step size grows by ``etas[1]`` where the gradient kept its sign, shrinks by
    ``etas[0]`` where it flipped (and that gradient is then ignored), and is clamped to
    ``step_sizes`` every step. ``optax.scale_by_rprop`` clamps only a grown or shrunk
    step size and returns the previous update where the sign flips; torch moves by
    ``-sign(g) * step_size`` with the flipped entries at 0.
    """
    eta_minus, eta_plus = etas
    low, high = step_sizes

    def init_fn(params):
        return RpropState(
            count=jnp.zeros([], jnp.int32),
            prev=optax.tree.zeros_like(params),
            step_size=optax.tree.full_like(params, lr),
        )

    def update_fn(updates, state, params=None):
        del params
        sign = jax.tree.map(lambda g, p: jnp.sign(g * p), updates, state.prev)
        factor = jax.tree.map(
            lambda s: jnp.where(s > 0, eta_plus, jnp.where(s < 0, eta_minus, 1.0)).astype(s.dtype),
            sign,
        )
        step_size = jax.tree.map(lambda s, f: jnp.clip(s * f, low, high), state.step_size, factor)
        grads = jax.tree.map(
            lambda g, f: jnp.where(f == as_dtype_of(eta_minus, f), 0, g), updates, factor
        )
        updates = jax.tree.map(lambda g, s: -jnp.sign(g) * s, grads, step_size)
        new_state = RpropState(optax.safe_increment(state.count), grads, step_size)
        return updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)


class AdafactorState(NamedTuple):
    """torch Adafactor's factored second moment: ``row_var``/``col_var`` for a parameter
    of two or more dimensions, ``variance`` otherwise (``None`` where absent)."""

    count: jax.Array
    row_var: Any
    col_var: Any
    variance: Any


def adafactor(
    lr: ScalarOrSchedule,
    beta2_decay: float,
    eps: tuple[float | None, float],
    d: float,
    weight_decay: float,
) -> optax.GradientTransformation:
    """torch.optim.Adafactor's step, ``-lr`` and the decoupled weight decay included.

    torch's variant (not optax's ``scale_by_factored_rms``, which follows the paper's
    relative step and momentum): ``1 - beta2_t = step**beta2_decay``, the row and column
    means of ``g²`` (over the last two dimensions) are interpolated towards, and the
    step is ``-alpha / max(1, rms(u) / d) * u`` with ``u = g / sqrt(max(v̂, eps1²))`` and
    ``alpha = max(eps2, rms(param)) * min(lr, 1 / sqrt(step))``. ``eps1=None`` is the
    parameter dtype's machine epsilon.
    """
    eps1, eps2 = eps

    def init_fn(params):
        def factored(shape_change):
            return jax.tree.map(
                lambda p: jnp.zeros(shape_change(p.shape), p.dtype) if p.ndim > 1 else None,
                params,
            )

        return AdafactorState(
            count=jnp.zeros([], jnp.int32),
            row_var=factored(lambda s: (*s[:-1], 1)),
            col_var=factored(lambda s: (*s[:-2], 1, s[-1])),
            variance=jax.tree.map(lambda p: jnp.zeros_like(p) if p.ndim <= 1 else None, params),
        )

    def update_fn(updates, state, params):
        step = float_count(state.count + 1)
        weight = step**beta2_decay
        lr_now = value_at(lr, state.count)
        rho = jnp.minimum(lr_now, 1 / jnp.sqrt(step))

        def leaf(g, p, row, col, var):
            e1 = np.finfo(p.dtype).eps if eps1 is None else eps1
            w = as_dtype_of(weight, g)
            if g.ndim > 1:
                row = row + w * (jnp.mean(jnp.square(g), axis=-1, keepdims=True) - row)
                col = col + w * (jnp.mean(jnp.square(g), axis=-2, keepdims=True) - col)
                estimate = (row @ col) / jnp.maximum(jnp.mean(row, axis=-2, keepdims=True), e1)
            else:
                var = var + w * (g * g - var)
                estimate = var
            u = jax.lax.rsqrt(jnp.maximum(estimate, e1 * e1)) * g
            alpha = jnp.maximum(eps2, _rms(p)) * rho
            scale = alpha / jnp.maximum(1.0, _rms(u) / d)
            step_ = -as_dtype_of(scale, u) * u - as_dtype_of(lr_now * weight_decay, p) * p
            return step_, row, col, var

        out = jax.tree.map(
            leaf,
            updates,
            params,
            state.row_var,
            state.col_var,
            state.variance,
            is_leaf=lambda x: x is None,
        )
        parts = [
            jax.tree.map(lambda o, i=i: o[i], out, is_leaf=lambda o: isinstance(o, tuple))
            for i in range(4)
        ]
        return parts[0], AdafactorState(optax.safe_increment(state.count), *parts[1:])

    return optax.GradientTransformation(init_fn, update_fn)


def _rms(x: jax.Array) -> jax.Array:
    """Root mean square, torch's ``x.norm(2) / sqrt(x.numel())``."""
    return jnp.sqrt(jnp.sum(jnp.square(x))) / np.sqrt(x.size)
