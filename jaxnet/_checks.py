"""Argument checks shared by the optimisers, schedules, training loops and device meshes;
each raises before tracing. ``not value >= 0`` style comparisons also refuse NaN, as torch
does for a NaN ``lr`` or ``eps``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from itertools import pairwise

import jax
import numpy as np


def check_real(owner: str, name: str, value: object, expected: str = "a float") -> None:
    """``TypeError`` unless ``value`` is a real number (a bool is not one): a Python or
    NumPy number, or a concrete 0-d NumPy/JAX array of an integer or floating dtype, as
    torch also takes. A traced value (a hyperparameter vmapped over ensemble members)
    gets its own ``TypeError``: the checks need concrete values."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{owner}: {name} is a traced value; pass per-member hyperparameters as "
            "schedules (lambda step: value), or pass concrete numbers"
        )
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
    """A learning rate: a real number >= 0, or (if ``schedule_ok``) any callable."""
    if schedule_ok and callable(value):
        return
    expected = "a float or a schedule (step -> lr)" if schedule_ok else "a float"
    _check_non_negative(owner, name, value, expected)


def check_non_negative(owner: str, **values: float) -> None:
    """Real numbers >= 0 (NaN refused)."""
    for name, value in values.items():
        _check_non_negative(owner, name, value, "a float")


def _check_non_negative(owner: str, name: str, value: object, expected: str) -> None:
    check_real(owner, name, value, expected)
    if not value >= 0:
        raise ValueError(f"{owner}: {name}={value!r} must be >= 0")


def check_positive(owner: str, **values: float) -> None:
    """Real numbers > 0 (NaN refused)."""
    for name, value in values.items():
        check_real(owner, name, value)
        if not value > 0:
            raise ValueError(f"{owner}: {name}={value!r} must be > 0")


def check_not_nan(owner: str, **values: float) -> None:
    """Real numbers of any sign, NaN refused."""
    for name, value in values.items():
        check_real(owner, name, value)
        if math.isnan(value):
            raise ValueError(f"{owner}: {name}={value!r} must be a number, not NaN")


def check_int(owner: str, minimum: int, **values: int) -> None:
    """Integers (Python or NumPy, as torch takes them; a bool is not one) ``>= minimum``:
    ``TypeError`` for another kind, ``ValueError`` below ``minimum``."""
    what = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{owner}: {name}={value!r} must be {what}")
        if value < minimum:
            raise ValueError(f"{owner}: {name}={value!r} must be {what}")


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
