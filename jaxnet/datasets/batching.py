"""Mini-batches by an explicit PRNG key, gathered on the device.

``batch_order`` is the single source of the order: ``batches`` and ``epoch_batches`` both
use it, and a PyTorch twin can feed the same list to
``torch.utils.data.DataLoader(dataset, batch_sampler=batch_order(...))`` to see the very
same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def batch_order(
    key: jax.Array | None, n: int, batch_size: int, *, shuffle: bool = True, drop_last: bool = False
) -> list[np.ndarray]:
    """Index batches of one epoch over ``n`` examples: a list of int64 arrays.

    The order is ``jax.random.permutation(key, n)`` (``np.arange(n)`` when ``shuffle`` is
    false, where ``key`` may be None), cut into ``batch_size`` pieces; the last piece is
    shorter unless ``drop_last`` drops it. The PyTorch counterpart is
    ``BatchSampler(RandomSampler(...), batch_size, drop_last)``.
    """
    for name, value in (("n", n), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"batch_order: {name} must be an int, got {value!r}")
    if n < 0 or batch_size < 1:
        raise ValueError(f"batch_order: need n >= 0 and batch_size >= 1, got {n=}, {batch_size=}")
    if shuffle:
        if key is None:
            raise ValueError("batch_order: shuffle=True needs a PRNG key, got None")
        order = np.asarray(jax.random.permutation(key, n), dtype=np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    stop = n - n % batch_size if drop_last else n
    return [order[start : start + batch_size] for start in range(0, stop, batch_size)]


def batches(
    key: jax.Array | None,
    x,
    y,
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Iterate ``(x[idx], y[idx])`` over the index batches of ``batch_order``, like a DataLoader.

    ``x`` and ``y`` should already live on the device (``jax.device_put`` once, before
    the first epoch). The epoch's order goes to the device once as one index array; each
    batch is a row of it and one compiled gather (one compilation per batch shape), with
    no host copy of the data. Arguments are checked when ``batches`` is called, not at
    the first ``next``.
    """
    x, y = _device_pair(x, y, "batches")
    order = batch_order(key, x.shape[0], batch_size, shuffle=shuffle, drop_last=drop_last)
    return _iterate(x, y, order, x.shape[0] // batch_size)


def _iterate(x, y, order: list[np.ndarray], full: int) -> Iterator[tuple[jax.Array, jax.Array]]:
    if full:
        for idx in _device_indices(order[:full]):  # rows of a (full, batch_size) device array
            yield _gather(x, y, idx)
    if full < len(order):  # the shorter last batch
        yield _gather(x, y, _device_indices(order[full:])[0])


def epoch_batches(
    key: jax.Array | None, x, y, batch_size: int, *, shuffle: bool = True
) -> tuple[jax.Array, jax.Array]:
    """One epoch stacked for ``lax.scan``: ``(num_batches, batch_size, ...)`` for x and y.

    Always ``drop_last``: the ``n % batch_size`` examples left over are skipped this epoch
    (with shuffling a different few each epoch), so every batch has the same shape and a
    compiled scan over the batches needs one compilation. The gather runs on the device
    and holds one shuffled copy of ``x`` and ``y`` there. PyTorch equivalent:
    ``torch.stack`` of the batches of a ``DataLoader(..., drop_last=True)`` (torch has no
    single call for it).
    """
    x, y = _device_pair(x, y, "epoch_batches")
    order = batch_order(key, x.shape[0], batch_size, shuffle=shuffle, drop_last=True)
    if not order:
        raise ValueError(
            f"epoch_batches: batch_size {batch_size} exceeds the {x.shape[0]} examples; "
            "dropping the last partial batch leaves no batch"
        )
    return _gather(x, y, _device_indices(order))  # indices (num_batches, batch_size)


def num_examples(caller: str, data: Any) -> int:
    """The common size of axis 0 of every array in the pytree ``data``: its number of
    examples. No array, a scalar or differing sizes raise ``ValueError`` naming ``caller``
    (a gather by index would clamp the missing rows' indices silently). Shapes only: no
    transfer, no compilation."""
    shapes = {
        jax.tree_util.keystr(path): jnp.shape(a) for path, a in jax.tree.leaves_with_path(data)
    }
    leading = {shape[:1] for shape in shapes.values()}
    if len(leading) != 1 or () in leading:
        raise ValueError(
            f"{caller}: every data array needs the same number of examples on axis 0, "
            f"got shapes {shapes}"
        )
    return leading.pop()[0]


def _device_pair(x, y, caller: str) -> tuple[jax.Array, jax.Array]:
    num_examples(caller, {"x": x, "y": y})
    return jax.device_put(x), jax.device_put(y)


def _device_indices(order: list[np.ndarray]) -> jax.Array:
    """Equal-length index batches as one (num_batches, batch_size) int32 device array."""
    return jax.device_put(np.stack(order).astype(np.int32))


@jax.jit
def _gather(x: jax.Array, y: jax.Array, idx: jax.Array) -> tuple[jax.Array, jax.Array]:
    return x[idx], y[idx]  # (*idx.shape, ...); compiled once per shape, no host transfer
