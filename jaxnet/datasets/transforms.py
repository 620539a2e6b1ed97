"""Turning raw MNIST arrays into network inputs and targets.

``normalize`` is torchvision's ``ToTensor()`` followed by ``Normalize((0.1307,), (0.3081,))``
and a flatten; ``one_hot`` is ``torch.nn.functional.one_hot(...).float()``.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np

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


def one_hot(labels, num_classes: int = 10, dtype=jnp.float32) -> jax.Array:
    """``(N,)`` integer labels -> ``(N, num_classes)`` one-hot rows in ``dtype``.

    Unlike ``jax.nn.one_hot`` (which silently yields all-zero rows), a label outside
    ``0..num_classes-1`` raises ``ValueError`` as in PyTorch; the check needs concrete
    labels, so under ``jax.jit`` it is skipped. ``num_classes=-1`` means one more than
    the largest label, as in ``torch.nn.functional.one_hot``; it needs concrete, non-empty
    labels (the output shape depends on their values).
    """
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"one_hot expected integer labels, got {jnp.result_type(labels)}")
    try:
        if isinstance(num_classes, bool):
            raise TypeError
        num_classes = operator.index(num_classes)  # ints, NumPy and concrete 0-d JAX ints
    except TypeError:
        raise TypeError(
            f"one_hot: num_classes must be an int, got {type(num_classes).__name__}"
        ) from None
    if num_classes == 0 or num_classes < -1:
        raise ValueError(
            f"one_hot: num_classes must be positive, or -1 to infer it from the labels, "
            f"got {num_classes}"
        )
    if isinstance(labels, jax.core.Tracer):
        if num_classes == -1:
            raise ValueError(
                "one_hot: num_classes=-1 infers the class count from the labels' values, "
                "which are unknown under jax.jit; pass num_classes"
            )
    else:
        host = np.asarray(labels)
        if num_classes == -1:
            if not host.size:
                raise ValueError(
                    "one_hot: num_classes=-1 cannot infer the class count from no labels"
                )
            num_classes = int(host.max()) + 1
        if host.size and (host.min() < 0 or host.max() >= num_classes):
            raise ValueError(
                f"one_hot expected labels in 0..{num_classes - 1}, "
                f"got values in {host.min()}..{host.max()}"
            )
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)
