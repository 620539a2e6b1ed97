"""The seeds' autograd idioms in functional form, and finite-difference checks.

=================================================  =========================================
PyTorch (stateful ``.grad``)                        jaxnet / JAX (gradients are return values)
=================================================  =========================================
``loss.backward(); p.grad``                         ``grads = jax.grad(loss_fn)(params, ...)``
``torch.autograd.grad(loss, [w])``                  ``jax.grad(f, argnums=i)``
``backward()`` twice without ``zero_grad``          :func:`accumulate_grads` (sums, like torch)
``optimizer.zero_grad()``                           nothing: no gradient is stored anywhere
``backward(retain_graph=True)`` then again          ``y, pullback = jax.vjp(f, x)``; call
                                                    ``pullback`` as often as needed
``x.detach()`` / ``.data``                          :func:`detach` (``jax.lax.stop_gradient``)
``with torch.no_grad(): optimizer.step()``          nothing: an update outside ``jax.grad`` is
                                                    never differentiated
=================================================  =========================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def detach(x: Any) -> Any:
    """``tensor.detach()``: the same values, with no gradient flowing back through them."""
    return jax.lax.stop_gradient(x)


def accumulate_grads(grad_fn: Callable[..., Any], params: Any, micro_batches: Any) -> Any:
    """Sum of ``grad_fn(params, batch)`` over micro-batches, in one compiled loop.

    The functional form of calling ``loss.backward()`` once per micro-batch without
    ``zero_grad()``: torch adds each backward pass into ``.grad``, so the result is the
    sum (divide by the count for the mean). ``micro_batches`` is a pytree whose leaves
    have a leading axis over the micro-batches.
    """

    def add(total: Any, batch: Any) -> tuple[Any, None]:
        return jax.tree.map(jnp.add, total, grad_fn(params, batch)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    total, _ = jax.lax.scan(add, zeros, micro_batches)
    return total


def finite_difference_grad(f: Callable[[jax.Array], jax.Array], x: Any, eps: float = 1e-6):
    """Central-difference gradient of a scalar ``f`` at ``x``, entry by entry (float64).

    PyTorch has no public counterpart: ``torch.autograd.gradcheck`` computes these
    central differences internally."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        grad[index] = (float(f(x + step)) - float(f(x - step))) / (2 * eps)
    return grad


def check_grad(
    f: Callable[[jax.Array], jax.Array],
    x: Any,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-8,
) -> float:
    """Compare ``jax.grad(f)(x)`` with central finite differences; return the max error.

    PyTorch equivalent: ``torch.autograd.gradcheck(f, (x,), eps=eps, atol=atol,
    rtol=rtol)``, which raises ``GradcheckError`` or returns ``True`` (this returns the
    largest error instead).

    Run it in float64 (``jax.config.update("jax_enable_x64", True)``): float32 finite
    differences are too coarse. Raises ``ValueError`` naming the worst entry when the two
    disagree beyond ``atol + rtol * |numeric|``.
    """
    x = np.asarray(x, dtype=np.float64)
    analytic = np.asarray(jax.grad(f)(jnp.asarray(x)), dtype=np.float64)
    numeric = finite_difference_grad(f, x, eps)
    error = np.abs(analytic - numeric)
    excess = error - (atol + rtol * np.abs(numeric))
    if excess.size and excess.max() > 0:
        worst = np.unravel_index(int(np.argmax(excess)), x.shape)
        raise ValueError(
            f"check_grad: autodiff and finite differences disagree at index {worst}: "
            f"autodiff {analytic[worst]!r}, finite difference {numeric[worst]!r}"
        )
    return float(error.max()) if error.size else 0.0
