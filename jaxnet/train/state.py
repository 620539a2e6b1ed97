"""The train state, and the keys and batch order derived from it.

PyTorch equivalent: the model's and the optimizer's ``state_dict()`` together, plus the
epoch counter and the generator seeding the ``DataLoader`` and dropout.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxnet._keys import on_key_data
from jaxnet.datasets import batch_order


@struct.dataclass
class TrainState:
    """Everything training changes, as one pytree, and the optimiser that changes it.

    PyTorch equivalent: the model's and the optimizer's ``state_dict()`` together (plus
    the epoch counter and the generator seeding the ``DataLoader`` and dropout), as one
    value, with the optimizer object beside it. ``tx`` is that optimizer: a static field
    (not a leaf), so every step and :func:`jaxnet.train.fit` read it from the state and
    it is given once, to :meth:`create`. ``step`` counts the updates applied (a step
    dropped by ``nan_policy="skip"`` does not count); ``epoch`` counts the epochs
    :func:`jaxnet.train.fit` completed. ``buffers`` are the model's non-trainable state
    (BatchNorm's running statistics; ``{}`` for most models).

    ``key`` drives the data order (epoch ``e`` shuffles with ``fold_in(key, e)``, see
    :func:`epoch_batch_order`) and the per-step keys of random layers
    (:func:`step_key`), so a restored state resumes with the same batches and masks.
    """

    params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    buffers: Any = struct.field(default_factory=dict)
    epoch: jax.Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.int32))

    @classmethod
    def create(
        cls,
        params: Any,
        optimizer: optax.GradientTransformation,
        key: jax.Array,
        buffers: Any = None,
    ) -> TrainState:
        """A step-0 state owning copies of ``params``, ``buffers`` and ``key`` (compiled
        steps may donate their state), with ``optimizer.init(params)``."""
        params = copy_tree(params)
        return cls(
            params=params,
            opt_state=copy_tree(optimizer.init(params)),  # an init may share one buffer
            step=jnp.zeros((), jnp.int32),
            key=copy_tree(key),
            tx=optimizer,
            buffers=copy_tree(buffers or {}),
            epoch=jnp.zeros((), jnp.int32),
        )


def step_key(key: jax.Array, step: jax.typing.ArrayLike) -> jax.Array:
    """The PRNG key the train step number ``step`` of a state with ``key`` passes to the
    loss (its random layers): ``fold_in(split(key)[1], step)``, a stream apart from the
    data order's."""
    return jax.random.fold_in(jax.random.split(key)[1], step)


def epoch_batch_order(
    key: jax.Array, epoch: int, n: int, batch_size: int, shuffle: bool = True
) -> np.ndarray:
    """The ``(steps, batch_size)`` index batches :func:`jaxnet.train.fit` trains epoch
    ``epoch`` on: ``batch_order(fold_in(key, epoch), n, batch_size, drop_last=True)``,
    stacked.

    PyTorch equivalent: the batches of ``DataLoader(dataset, batch_size, shuffle,
    drop_last=True)``; a torch twin fed ``batch_sampler=epoch_batch_order(...)`` sees
    the same batches as ``fit``.
    """
    order = batch_order(
        jax.random.fold_in(key, epoch), n, batch_size, shuffle=shuffle, drop_last=True
    )
    return np.stack(order) if order else np.zeros((0, batch_size), np.int64)


def copy_tree(tree: Any) -> Any:
    """Fresh device buffers for every leaf (typed PRNG keys included)."""
    return jax.tree.map(lambda leaf: on_key_data(jnp.copy, leaf), tree)
