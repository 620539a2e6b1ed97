"""Gradient clipping with torch's formulas (``torch.nn.utils.clip_grad_norm_`` / ``_value_``).

Functional: the gradients are a pytree and the clipped pytree is returned, with the
total norm, instead of being modified in place.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxnet._checks import check_non_negative


def _total_norm(leaves: list[jax.Array], norm_type: float) -> jax.Array:
    if norm_type == math.inf:
        return jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in leaves]))
    # torch: the norm of the per-tensor norms
    norms = jnp.stack([jnp.linalg.vector_norm(g, ord=norm_type) for g in leaves])
    return jnp.linalg.vector_norm(norms, ord=norm_type)


def clip_grad_norm(
    grads: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> tuple[Any, jax.Array]:
    """Scale ``grads`` so their total norm is at most ``max_norm`` (``clip_grad_norm_``).

    Returns ``(clipped_grads, total_norm)``, where ``total_norm`` is the norm *before*
    clipping, as torch returns it. torch's formula: ``coef = max_norm / (total_norm + 1e-6)``,
    clamped to at most 1 (optax's ``clip_by_global_norm`` has no ``1e-6`` and only the
    2-norm). ``norm_type`` may be ``math.inf``. With ``error_if_nonfinite=True`` a NaN or
    inf norm raises ``ValueError`` when the norm is concrete (torch raises
    ``RuntimeError``); under ``jax.jit`` the non-finite norm is returned and the clipped
    gradients are NaN, so the train loop's NaN guard sees it. ``max_norm`` must be a
    number >= 0: a NaN one raises ``ValueError`` (it would make every gradient NaN), a
    non-number ``TypeError``.
    """
    check_non_negative("clip_grad_norm", max_norm=max_norm)
    norm_type = float(norm_type)
    if math.isnan(norm_type):
        raise ValueError("clip_grad_norm: norm_type must be a number, not NaN")
    leaves = jax.tree.leaves(grads)
    if not leaves:
        return grads, jnp.zeros((), jnp.float32)
    total_norm = _total_norm(leaves, norm_type)
    concrete = not isinstance(total_norm, jax.core.Tracer)
    if error_if_nonfinite and concrete and not bool(jnp.isfinite(total_norm)):
        raise ValueError(
            f"clip_grad_norm: the total norm of order {norm_type} of the gradients is "
            f"non-finite ({float(total_norm)}), so it cannot be clipped"
        )
    coef = jnp.minimum(max_norm / (total_norm + 1e-6), 1.0)
    return jax.tree.map(lambda g: (g * coef).astype(g.dtype), grads), total_norm


def clip_grad_value(grads: Any, clip_value: float) -> Any:
    """Clamp every gradient entry to ``[-clip_value, clip_value]`` (``clip_grad_value_``).

    ``clip_value`` must be a number >= 0 (NaN raises ``ValueError``, a non-number
    ``TypeError``).
    """
    check_non_negative("clip_grad_value", clip_value=clip_value)
    return jax.tree.map(lambda g: jnp.clip(g, -clip_value, clip_value), grads)
