"""Turning raw image arrays into network inputs, on the device.

``normalize`` is torchvision's ``ToTensor()`` followed by ``Normalize((0.1307,), (0.3081,))``
and a flatten; ``normalize_channels`` is ``transforms.Normalize(mean, std)`` for any
channel count; ``random_crop`` and ``random_horizontal_flip`` are ``RandomCrop(size,
padding)`` (zero padding) and ``RandomHorizontalFlip(p)`` applied to each example of a
batch.

The augmentations are pure functions of ``(key, batch)``: the same key gives the same
batch, and they run under ``jax.jit`` (inside a compiled epoch, from the batch's key),
with their sizes as static Python ints.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnet._checks import (
    check_concrete,
    check_non_negative_int,
    check_positive_int,
    check_real,
)

MNIST_MEAN = 0.1307  # mean pixel of the training images, scaled to [0, 1]
MNIST_STD = 0.3081  # their standard deviation


def normalize(images, dtype=jnp.float32) -> jax.Array:
    """``(images / 255 - 0.1307) / 0.3081`` flattened to ``(N, 784)`` (for 28x28 images).

    Takes raw uint8 pixels ``(N, ...)`` and returns ``(N, prod(...))`` in ``dtype``; the
    operations and their order are torchvision's ``ToTensor`` + ``Normalize``, so float32
    results match PyTorch's to float32 rounding. Anything but uint8 input raises
    ``TypeError``, which guards against normalising twice.
    """
    if jnp.result_type(images) != jnp.uint8:
        raise TypeError(
            f"normalize expected raw uint8 pixels (0..255), got {jnp.result_type(images)}"
        )
    if jnp.ndim(images) < 1:
        raise ValueError(f"normalize expected images (N, ...), got shape {jnp.shape(images)}")
    x = jnp.reshape(jnp.asarray(images, dtype), (jnp.shape(images)[0], -1))  # (N, 784)
    return (x / 255 - MNIST_MEAN) / MNIST_STD


def normalize_channels(images, mean, std) -> jax.Array:
    """``(images - mean[c]) / std[c]`` for channel ``c`` of ``(..., C, H, W)`` float images.

    PyTorch equivalent: ``torchvision.transforms.Normalize(mean, std)``. ``mean`` and
    ``std`` hold one value per channel (or one for all); a zero in ``std`` raises
    ``ValueError`` as torchvision does. The result has the images' floating dtype.
    """
    if not jnp.issubdtype(jnp.result_type(images), jnp.floating):
        raise TypeError(
            f"normalize_channels expected float images (scale uint8 pixels first), "
            f"got {jnp.result_type(images)}"
        )
    if jnp.ndim(images) < 3:
        raise ValueError(
            f"normalize_channels expected images (..., C, H, W), got shape {jnp.shape(images)}"
        )
    channels = jnp.shape(images)[-3]
    dtype = jnp.result_type(images)
    mean, std = (jnp.asarray(v, dtype).reshape(-1) for v in (mean, std))
    for name, value in (("mean", mean), ("std", std)):
        if value.shape[0] not in (1, channels):
            raise ValueError(
                f"normalize_channels: {name} needs 1 or {channels} values (one per channel), "
                f"got {value.shape[0]}"
            )
    if not isinstance(std, jax.core.Tracer) and bool(jnp.any(std == 0)):
        raise ValueError("normalize_channels: std evaluated to zero, which would divide by 0")
    lead = (1,) * (jnp.ndim(images) - 3)
    mean, std = (v.reshape(*lead, -1, 1, 1) for v in (mean, std))  # (1, ..., C or 1, 1, 1)
    return (images - mean) / std  # (..., C, H, W)


def random_crop(key: jax.Array, images, size, padding: int = 0) -> jax.Array:
    """A random ``size`` window of each image in ``(N, ..., H, W)``, after zero padding.

    PyTorch equivalent: ``torchvision.transforms.RandomCrop(size, padding)`` (``fill=0``,
    ``padding_mode='constant'``) applied to each of the N images: ``padding`` zeros are
    added on every side of H and W, then each image gets its own top-left corner, uniform
    over the ``H + 2 * padding - h + 1`` by ``W + 2 * padding - w + 1`` positions.
    ``size`` is an int (square) or ``(h, w)``; sizes are static Python ints.
    """
    h, w = _pair("random_crop", "size", size)
    check_non_negative_int("random_crop", padding=padding)
    if jnp.ndim(images) < 3:
        raise ValueError(
            f"random_crop expected images (N, ..., H, W), got shape {jnp.shape(images)}"
        )
    n, height, width = jnp.shape(images)[0], *jnp.shape(images)[-2:]
    if h > height + 2 * padding or w > width + 2 * padding:
        raise ValueError(
            f"random_crop: crop size {(h, w)} is larger than the padded image "
            f"{(height + 2 * padding, width + 2 * padding)}"
        )
    pad = [(0, 0)] * (jnp.ndim(images) - 2) + [(padding, padding)] * 2
    padded = jnp.pad(images, pad)  # (N, ..., H + 2p, W + 2p)
    row_key, column_key = jax.random.split(key)
    rows = jax.random.randint(row_key, (n,), 0, height + 2 * padding - h + 1)
    columns = jax.random.randint(column_key, (n,), 0, width + 2 * padding - w + 1)

    def crop(image, row, column):  # (..., H + 2p, W + 2p) -> (..., h, w)
        start = (0,) * (image.ndim - 2) + (row, column)
        return jax.lax.dynamic_slice(image, start, (*image.shape[:-2], h, w))

    return jax.vmap(crop)(padded, rows, columns)  # (N, ..., h, w)


def random_horizontal_flip(key: jax.Array, images, p: float = 0.5) -> jax.Array:
    """Each image of ``(N, ..., W)`` mirrored along its last axis with probability ``p``.

    PyTorch equivalent: ``torchvision.transforms.RandomHorizontalFlip(p)`` applied to each
    of the N images, each with its own coin. ``p`` is a concrete number (static under
    ``jax.jit``).
    """
    check_concrete("random_horizontal_flip", p=p)
    check_real("random_horizontal_flip", "p", p)
    if not 0 <= p <= 1:
        raise ValueError(f"random_horizontal_flip: p must be a probability in [0, 1], got {p!r}")
    if jnp.ndim(images) < 2:
        raise ValueError(
            f"random_horizontal_flip expected images (N, ..., W), got shape {jnp.shape(images)}"
        )
    flip = jax.random.bernoulli(key, p, (jnp.shape(images)[0],))  # (N,)
    flip = flip.reshape((-1,) + (1,) * (jnp.ndim(images) - 1))
    return jnp.where(flip, jnp.flip(images, axis=-1), images)


def _pair(fn: str, name: str, value) -> tuple[int, int]:
    """``value`` as ``(h, w)``: one positive int for both, or a pair of them."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"{fn}: {name} must be an int or a pair (h, w), got {value!r}")
    check_positive_int(fn, **{f"{name}[0]": pair[0], f"{name}[1]": pair[1]})
    return int(pair[0]), int(pair[1])
