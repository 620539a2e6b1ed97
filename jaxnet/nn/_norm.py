"""Normalisation as pure functions: ``F.batch_norm`` and ``F.layer_norm``.

torch's ``batch_norm`` updates the running statistics in place; jaxnet's returns them. The
statistics of float16 and bfloat16 inputs are computed in float32 (torch accumulates in
a wider type too) and the output has the input's dtype.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnet._checks import check_concrete, check_non_negative, check_real
from jaxnet.nn._arrays import check_flag, check_floating


class BatchNormOutput(NamedTuple):
    """What :func:`batch_norm` returns: the normalised input and the buffers after the call.

    The buffers are the ones passed in, unchanged, unless the call updated them (a
    training call with running statistics); an unused ``num_batches_tracked`` is ``None``.
    """

    output: jax.Array
    running_mean: jax.Array | None
    running_var: jax.Array | None
    num_batches_tracked: jax.Array | None


def batch_norm(
    input: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    *,
    num_batches_tracked: jax.Array | int | None = None,
) -> BatchNormOutput:
    """Batch normalisation over the channel axis 1 (``torch.nn.functional.batch_norm``).

    ``input`` is ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` or any ``(N, C, *)``;
    ``running_mean``, ``running_var``, ``weight`` (scale) and ``bias`` (shift) are ``(C,)``.
    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel, where:

    * ``training=True``: ``mean`` and ``var`` are the batch's (the biased variance, over
      every axis but 1). With running statistics, each becomes
      ``(1 - momentum) * running + momentum * batch`` — the *unbiased* batch variance
      for ``running_var`` — and ``num_batches_tracked``, if given, grows by 1, as in
      torch's ``BatchNorm`` modules. ``momentum=None`` is torch's cumulative average,
      ``momentum = 1 / (num_batches_tracked + 1)``, so it needs ``num_batches_tracked``
      (the count before this batch). Running statistics of ``None`` mean none are kept
      (torch's ``track_running_stats=False``). Like torch, a training batch with one
      value per channel raises.
    * ``training=False``: ``mean`` and ``var`` are the running statistics, which must be
      given; nothing is updated.

    Returns ``BatchNormOutput(output, running_mean, running_var, num_batches_tracked)``;
    the new running statistics keep their dtypes and carry no gradient (torch updates
    them under ``no_grad``). A pure function: nothing passed in is modified.
    """
    name = "batch_norm"
    input = jnp.asarray(input)
    check_floating(name, input)
    check_flag(name, "training", training)
    if input.ndim < 2:
        raise ValueError(
            f"{name}: expected input (N, C), (N, C, L) or (N, C, H, W), channels on axis 1, "
            f"got shape {input.shape}"
        )
    running_mean, running_var, weight, bias = (
        _channel_vector(name, what, value, input)
        for what, value in (
            ("running_mean", running_mean),
            ("running_var", running_var),
            ("weight", weight),
            ("bias", bias),
        )
    )
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            f"{name}: pass running_mean and running_var together (running statistics) or "
            "neither (batch statistics only)"
        )
    tracking = running_mean is not None
    _check_momentum(name, momentum)
    check_non_negative(name, eps=eps)
    if num_batches_tracked is not None:
        num_batches_tracked = _check_count(name, num_batches_tracked)
    if not training and not tracking:
        raise ValueError(
            f"{name}: training=False normalises with the running statistics, but "
            "running_mean and running_var are None; pass them, or training=True"
        )
    if training and tracking and momentum is None and num_batches_tracked is None:
        raise ValueError(
            f"{name}: momentum=None (a cumulative average) needs num_batches_tracked, "
            "the number of batches the running statistics have seen"
        )

    axes = (0, *range(2, input.ndim))
    values_per_channel = math.prod(input.shape[i] for i in axes)
    if training and values_per_channel == 1:
        raise ValueError(
            f"{name}: Expected more than 1 value per channel when training, got input size "
            f"{input.shape}"
        )
    x = input.astype(jnp.promote_types(input.dtype, jnp.float32))
    if training:
        mean = jnp.mean(x, axis=axes)  # (C,)
        var = jnp.var(x, axis=axes)  # biased, for normalising
    else:
        mean, var = running_mean, running_var
    y = (x - _along_channels(mean, x.ndim)) * _along_channels(jax.lax.rsqrt(var + eps), x.ndim)
    if weight is not None:
        y = y * _along_channels(weight, x.ndim)
    if bias is not None:
        y = y + _along_channels(bias, x.ndim)
    y = y.astype(input.dtype)

    if not (training and tracking):
        return BatchNormOutput(y, running_mean, running_var, num_batches_tracked)
    if num_batches_tracked is not None:
        factor = 1 / (num_batches_tracked + 1) if momentum is None else momentum
        num_batches_tracked = num_batches_tracked + 1
    else:
        factor = momentum
    if values_per_channel > 0:  # torch leaves the statistics alone for an empty batch
        unbiased = var * (values_per_channel / (values_per_channel - 1))
        running_mean = _moving_average(running_mean, mean, factor)
        running_var = _moving_average(running_var, unbiased, factor)
    return BatchNormOutput(y, running_mean, running_var, num_batches_tracked)


def layer_norm(
    input: jax.Array,
    normalized_shape: int | Sequence[int],
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """Normalise over the trailing ``normalized_shape`` dims (``torch.nn.functional.layer_norm``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, with the mean and the biased
    variance of each sample over its last ``len(normalized_shape)`` dims; ``weight`` and
    ``bias`` have shape ``normalized_shape``. An int ``normalized_shape`` means ``(n,)``,
    as ``torch.nn.LayerNorm`` takes it.
    """
    name = "layer_norm"
    input = jnp.asarray(input)
    check_floating(name, input)
    shape = _normalized_shape(name, normalized_shape)
    if input.shape[input.ndim - len(shape) :] != shape or input.ndim < len(shape):
        raise ValueError(
            f"{name}: for normalized_shape {shape} expected input of shape (*, "
            f"{', '.join(map(str, shape))}), got shape {input.shape}"
        )
    check_non_negative(name, eps=eps)
    lead = (1,) * (input.ndim - len(shape))
    affine = {}
    for what, value in (("weight", weight), ("bias", bias)):
        if value is not None:
            value = jnp.asarray(value)
            if value.shape != shape:
                raise ValueError(
                    f"{name}: {what} must have shape normalized_shape {shape}, got {value.shape}"
                )
            affine[what] = value.reshape(lead + shape)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    x = input.astype(jnp.promote_types(input.dtype, jnp.float32))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(jnp.var(x, axis=axes, keepdims=True) + eps)
    if "weight" in affine:
        y = y * affine["weight"]
    if "bias" in affine:
        y = y + affine["bias"]
    return y.astype(input.dtype)


# ------------------------------------------------------------------- helpers


def _channel_vector(name: str, what: str, value, input: jax.Array) -> jax.Array | None:
    """``None``, or a floating ``(C,)`` array for the input's ``C = input.shape[1]``."""
    if value is None:
        return None
    value = jnp.asarray(value)
    check_floating(name, value, what)
    n_channels = input.shape[1]
    if value.shape != (n_channels,):
        raise ValueError(
            f"{name}: {what} must have shape ({n_channels},), one value per channel of the "
            f"input (channels on axis 1) of shape {input.shape}, got shape {value.shape}"
        )
    return value


def _along_channels(vector: jax.Array, ndim: int) -> jax.Array:
    """``(C,)`` reshaped to ``(1, C, 1, ...)``, to multiply along the channel axis."""
    return jnp.reshape(vector, (1, -1) + (1,) * (ndim - 2))


def _moving_average(running: jax.Array, batch: jax.Array, factor) -> jax.Array:
    """``(1 - factor) * running + factor * batch`` in the running buffer's dtype, no gradient."""
    new = factor * batch + (1 - factor) * running
    return jax.lax.stop_gradient(new.astype(running.dtype))


def _check_momentum(name: str, momentum: float | None) -> None:
    if momentum is None:
        return
    check_concrete(name, momentum=momentum)
    check_real(name, "momentum", momentum, "a float or None")
    if not 0 <= momentum <= 1:
        raise ValueError(
            f"{name}: momentum must be in [0, 1] (torch's convention: the weight of the new "
            f"batch, default 0.1) or None, got {momentum!r}"
        )


def _check_count(name: str, count) -> jax.Array:
    """``num_batches_tracked``: an int or a 0-d integer array (torch's int64 buffer)."""
    dtype = getattr(count, "dtype", None)
    is_int = isinstance(count, numbers.Integral) and not isinstance(count, bool)
    if not is_int and not (
        dtype is not None and jnp.ndim(count) == 0 and jnp.issubdtype(dtype, jnp.integer)
    ):
        kind = type(count).__name__ if dtype is None else f"{type(count).__name__} of {dtype}"
        raise TypeError(
            f"{name}: num_batches_tracked must be an int or a 0-d integer array, got {kind}"
        )
    return jnp.asarray(count)


def _normalized_shape(name: str, normalized_shape) -> tuple[int, ...]:
    """An int ``n`` as ``(n,)``, or a non-empty sequence of ints >= 0, as a tuple."""
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    shape = tuple(normalized_shape) if isinstance(normalized_shape, Sequence) else None
    if shape is None or not all(
        isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in shape
    ):
        raise TypeError(
            f"{name}: normalized_shape must be an int or a sequence of ints, "
            f"got {normalized_shape!r}"
        )
    if not shape or min(shape) < 0:
        raise ValueError(
            f"{name}: normalized_shape must have at least one dim, each >= 0, got {shape}"
        )
    return tuple(int(n) for n in shape)
