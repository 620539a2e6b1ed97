"""Checks on the arrays and flags that ``jaxnet.nn.functional``'s functions take.

Each raises before tracing, with a message that names the function, what it expected and
what came.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_floating(name: str, array: jax.Array, what: str = "input") -> None:
    """``TypeError`` unless ``array`` has a real floating dtype.

    torch's kernels refuse integer and bool inputs to its losses, normalisations and
    dropout; jaxnet refuses them up front, so integer arithmetic can never wrap around.
    """
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(f"{name}: expected a floating-point {what}, got dtype {array.dtype}")


def check_flag(name: str, what: str, value: object) -> None:
    """``TypeError`` unless ``value`` is a Python or NumPy bool (not a traced array)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}: {what} must be a bool, got {type(value).__name__}")
