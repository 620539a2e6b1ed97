"""Dropout as pure functions (``F.dropout``, ``F.dropout1d``, ``F.dropout2d``).

torch draws its masks from a hidden global generator; jaxnet takes the randomness as an
argument. A training call that drops anything needs one of:

* ``key``: a JAX PRNG key; the keep-mask is ``jax.random.bernoulli(key, 1 - p, shape)``,
  so the same key gives the same mask;
* ``mask``: an explicit boolean keep-mask (``True`` keeps the element or channel), which
  reproduces any given mask exactly, torch's included: ``keep = F_torch.dropout(
  torch.ones(shape), p) != 0`` drawn under the same seed is the mask torch applies.

There is no default key: a training call without ``key`` or ``mask`` raises.

Otherwise the numbers are torch's: kept elements are scaled by ``1 / (1 - p)`` (inverted
dropout, computed in the input's dtype as torch computes it), ``training=False``, ``p = 0``
and empty inputs give the input back unchanged, and ``p = 1`` gives ``input * 0`` (zeros,
where NaN and inf inputs become NaN, as in torch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnet._checks import check_concrete, check_real
from jaxnet.nn._arrays import check_flag, check_floating


def dropout(
    input: jax.Array,
    p: float = 0.5,
    training: bool = True,
    *,
    key: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Zero each element with probability ``p``, scale the rest by ``1 / (1 - p)``.

    ``torch.nn.functional.dropout``. ``mask``, if given, has the input's shape.
    """
    input = jnp.asarray(input)
    return _dropout("dropout", input, p, training, key, mask, input.shape)


def dropout1d(
    input: jax.Array,
    p: float = 0.5,
    training: bool = True,
    *,
    key: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Zero whole channels of ``(N, C, L)`` or ``(C, L)`` input (``F.dropout1d``).

    Each channel is dropped with probability ``p`` and the kept ones are scaled by
    ``1 / (1 - p)``. ``mask``, if given, has shape ``(N, C, 1)`` (``(C, 1)`` unbatched).
    """
    input = jnp.asarray(input)
    if input.ndim not in (2, 3):
        raise ValueError(f"dropout1d: expected input (N, C, L) or (C, L), got shape {input.shape}")
    return _dropout("dropout1d", input, p, training, key, mask, _channel_shape(input))


def dropout2d(
    input: jax.Array,
    p: float = 0.5,
    training: bool = True,
    *,
    key: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Zero whole channels of ``(N, C, H, W)`` input (``F.dropout2d``).

    Each ``(H, W)`` feature map is dropped with probability ``p`` and the kept ones are
    scaled by ``1 / (1 - p)``. ``mask``, if given, has shape ``(N, C, 1, 1)``.

    Only 4-D input is taken. torch also runs on other ranks with a deprecation warning,
    and reads a 3-D input as ``(N, C, L)``, not as one ``(C, H, W)`` image (it warns that
    this will change); jaxnet refuses both rather than guess: add the batch dim
    (``x[None]``) to an image, or use :func:`dropout1d` for ``(N, C, L)``.
    """
    input = jnp.asarray(input)
    if input.ndim != 4:
        raise ValueError(
            f"dropout2d: expected input (N, C, H, W), got shape {input.shape}; add a batch "
            "dim (x[None]) to a single (C, H, W) image, use dropout1d for (N, C, L)"
        )
    return _dropout("dropout2d", input, p, training, key, mask, _channel_shape(input))


def _channel_shape(input: jax.Array) -> tuple[int, ...]:
    """The mask shape of channel dropout: ``(N, C, 1, ...)``, or ``(C, 1)`` unbatched 1-D."""
    lead = 1 if input.ndim == 2 else 2  # dropout1d's (C, L) has no batch dim
    return input.shape[:lead] + (1,) * (input.ndim - lead)


def _dropout(
    name: str,
    input: jax.Array,
    p: float,
    training: bool,
    key: jax.Array | None,
    mask: jax.Array | None,
    mask_shape: tuple[int, ...],
) -> jax.Array:
    check_floating(name, input)
    _check_probability(name, p)
    check_flag(name, "training", training)
    if key is not None and mask is not None:
        raise ValueError(f"{name}: pass either key or mask, not both")
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_ or mask.shape != mask_shape:
            raise ValueError(
                f"{name}: mask must be a bool array of shape {mask_shape} for input of "
                f"shape {input.shape}, got {mask.dtype} of shape {mask.shape}"
            )
    if not training or p == 0 or input.size == 0:
        return input
    if p == 1:
        return input * jnp.zeros((), input.dtype)
    if mask is None:
        if key is None:
            raise ValueError(
                f"{name}: training with p={p} needs a PRNG key (key=...) or a keep-mask "
                "(mask=...); there is no default key"
            )
        mask = jax.random.bernoulli(key, 1 - p, mask_shape)
    noise = mask.astype(input.dtype) / jnp.asarray(1 - p, input.dtype)  # as torch: 1/(1-p)
    return input * noise


def _check_probability(name: str, p: float) -> None:
    check_concrete(name, p=p)
    check_real(name, "p", p)
    if not 0 <= p <= 1:
        raise ValueError(f"{name}: p must be a probability in [0, 1], got {p!r}")
