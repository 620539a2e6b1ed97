"""Argument checks shared by the optimisers, schedules, training loops and device meshes;
each raises before tracing. ``not value >= 0`` style comparisons also refuse NaN, as torch
does for a NaN ``lr`` or ``eps``.

Check what is static, let traced values through: a concrete number (a Python or NumPy
number, or a concrete 0-d JAX array) gets every type and range check. A traced 0-d value
(a hyperparameter that ``optax.inject_hyperparams`` passes under ``jax.jit`` or
``jax.vmap``) has its kind checked from its dtype and shape, which are static, and its
range not at all, because its value is unknown until the computation runs. Range checks
are made where the value is concrete: ``optax.inject_hyperparams(...).init`` called
outside ``jit`` builds the optimiser from concrete values, so an out-of-range value raises
there. ``jax.experimental.checkify`` is not used: its checks only raise when the caller
wraps the function in ``checkify.checkify``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from itertools import pairwise

import jax
import numpy as np


def is_traced(value: object) -> bool:
    """Whether ``value`` is a JAX tracer (under ``jit``, ``vmap``, ``grad``): its dtype and
    shape are known, its value is not."""
    return isinstance(value, jax.core.Tracer)


def check_concrete(owner: str, **values: object) -> None:
    """``TypeError`` for a traced value, where a layer or a transform decides in Python on
    the value (a probability, a momentum, a sparsity), so it must be known when traced."""
    for name, value in values.items():
        if is_traced(value):
            raise TypeError(f"{owner}: {name} must be a concrete number, got a traced value")


def shown(value: object) -> object:
    """``value`` as an error message shows it: a concrete 0-d array as the number it holds,
    so that ``lr=-0.1`` reads the same whether it came as a float or as the array
    ``optax.inject_hyperparams`` makes of it."""
    if not is_traced(value) and getattr(value, "shape", None) == () and hasattr(value, "item"):
        return value.item()
    return value


def check_real(owner: str, name: str, value: object, expected: str = "a float") -> None:
    """``TypeError`` unless ``value`` is a real number (a bool is not one): a Python or
    NumPy number, or a 0-d NumPy/JAX array of an integer or floating dtype, as torch also
    takes. A traced value passes when it is such a 0-d array; its value is not checked."""
    if is_traced(value):
        if not _real_scalar(value):
            raise TypeError(
                f"{owner}: {name} must be {expected}, got a traced {value.dtype} array of "
                f"shape {value.shape}"
            )
        return
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or _real_scalar(value)):
        raise TypeError(f"{owner}: {name} must be {expected}, got {type(value).__name__}")


def _real_scalar(value: object) -> bool:
    """A 0-d array (NumPy or JAX) of an integer or floating dtype."""
    dtype = getattr(value, "dtype", None)
    return (
        getattr(value, "shape", None) == ()
        and dtype is not None
        and (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating))
    )


def check_lr(owner: str, value: object, name: str = "lr", schedule_ok: bool = True) -> None:
    """A learning rate: a real number >= 0 (unchecked when traced), or (if ``schedule_ok``)
    any callable."""
    if schedule_ok and callable(value):
        return
    expected = "a float or a schedule (step -> lr)" if schedule_ok else "a float"
    _check_non_negative(owner, name, value, expected)


def check_non_negative(owner: str, **values: float) -> None:
    """Real numbers >= 0 (NaN refused); a traced value's range is not checked."""
    for name, value in values.items():
        _check_non_negative(owner, name, value, "a float")


def _check_non_negative(owner: str, name: str, value: object, expected: str) -> None:
    check_real(owner, name, value, expected)
    if not is_traced(value) and not value >= 0:
        raise ValueError(f"{owner}: {name}={shown(value)!r} must be >= 0")


def check_positive(owner: str, **values: float) -> None:
    """Real numbers > 0 (NaN refused); a traced value's range is not checked."""
    for name, value in values.items():
        check_real(owner, name, value)
        if not is_traced(value) and not value > 0:
            raise ValueError(f"{owner}: {name}={shown(value)!r} must be > 0")


def check_not_nan(owner: str, **values: float) -> None:
    """Real numbers of any sign, NaN refused (a traced value's is not checked)."""
    for name, value in values.items():
        check_real(owner, name, value)
        if not is_traced(value) and math.isnan(value):
            raise ValueError(f"{owner}: {name}={shown(value)!r} must be a number, not NaN")


def check_int(owner: str, minimum: int, **values: int) -> None:
    """Integers (Python or NumPy, as torch takes them; a bool is not one) ``>= minimum``:
    ``TypeError`` for another kind, ``ValueError`` below ``minimum``."""
    what = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{owner}: {name}={shown(value)!r} must be {what}")
        if value < minimum:
            raise ValueError(f"{owner}: {name}={shown(value)!r} must be {what}")


def check_positive_int(owner: str, **values: int) -> None:
    """Ints >= 1 (see :func:`check_int`)."""
    check_int(owner, 1, **values)


def check_non_negative_int(owner: str, **values: int) -> None:
    """Ints >= 0 (see :func:`check_int`)."""
    check_int(owner, 0, **values)


def check_milestones(owner: str, milestones: Sequence[int], strict: bool) -> None:
    """Positive ints, increasing (``strict``) or non-decreasing."""
    check_positive_int(owner, **{f"milestones[{i}]": m for i, m in enumerate(milestones)})
    for before, after in pairwise(milestones):
        if after < before or (strict and after == before):
            order = "increasing" if strict else "sorted"
            raise ValueError(f"{owner}: milestones must be {order}, got {list(milestones)}")
