"""The order of mini-batches, from an explicit PRNG key, and the example count of a data set.

``batch_order`` is the single source of the order: ``jaxnet.train`` (``epoch_batch_order``,
``fit``) and ``jaxnet.parallel`` build on it, and a PyTorch twin can feed the same list to
``torch.utils.data.DataLoader(dataset, batch_sampler=batch_order(...))`` to see the very
same batches. The batches themselves are gathered inside the compiled training loop.
"""

from __future__ import annotations

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
