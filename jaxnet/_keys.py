"""Typed PRNG keys (``jax.random.key``) as data: one place for the unwrap and re-wrap that
copying, placing on devices and saving a key each need."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


def is_typed_key(leaf: Any) -> bool:
    """Whether ``leaf`` is a typed PRNG key array (not a raw ``uint32`` key)."""
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def on_key_data(fn: Callable[[Any], Any], leaf: Any) -> Any:
    """``fn(leaf)``; for a typed key, ``fn`` of its raw data, wrapped back as a key of the
    same implementation."""
    if is_typed_key(leaf):
        data = fn(jax.random.key_data(leaf))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    return fn(leaf)
