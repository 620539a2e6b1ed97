"""Argument checks shared by the optimisers and schedules; each raises before tracing."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from itertools import pairwise


def check_lr(owner: str, value: object, name: str = "lr", schedule_ok: bool = True) -> None:
    """A learning rate: a real number >= 0, or (if ``schedule_ok``) any callable."""
    if schedule_ok and callable(value):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        expected = "a float or a schedule (step -> lr)" if schedule_ok else "a float"
        raise TypeError(f"{owner}: {name} must be {expected}, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{owner}: {name}={value!r} must be >= 0")


def check_non_negative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{owner}: {name}={value!r} must be >= 0")


def check_positive_int(owner: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
            raise ValueError(f"{owner}: {name}={value!r} must be a positive int")


def check_milestones(owner: str, milestones: Sequence[int], strict: bool) -> None:
    """Positive ints, increasing (``strict``) or non-decreasing."""
    check_positive_int(owner, **{f"milestones[{i}]": m for i, m in enumerate(milestones)})
    for before, after in pairwise(milestones):
        if after < before or (strict and after == before):
            order = "increasing" if strict else "sorted"
            raise ValueError(f"{owner}: milestones must be {order}, got {list(milestones)}")
