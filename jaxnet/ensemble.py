"""Train N copies of a model at once: one ``jax.vmap``-ed, compiled loop for all of them.

PyTorch has no counterpart short of a Python loop over N models (or ``torch.func``'s
``stack_module_state`` + ``vmap`` for the forward pass only). Here an ensemble or a
hyperparameter sweep is the ordinary training loop with a leading member axis on the
state: members differ by their initial key and/or by hyperparameters such as the
learning rate, and share the data and the batch order. The hyperparameters live in the
optimiser state, as ``optax.inject_hyperparams`` puts them there, so one optimiser
serves every member::

    model = nn.MLP(784, [256, 64], 10)
    opt = optax.inject_hyperparams(optim.SGD)(lr=0.01, momentum=0.9)
    lrs = jnp.array([0.003, 0.01, 0.03, 0.1])
    states = ensemble.create(model, jax.random.split(key, 4), opt, {"lr": lrs})
    loop = jax.jit(ensemble.train_loop(train.train_step(loss_fn)), donate_argnums=0)
    member_batches = jnp.broadcast_to(index_batches, (4, *index_batches.shape))
    states, metrics = loop(states, data, member_batches)      # metrics: (4, steps)

Member ``i`` equals a separate ``train.train_loop`` run from ``keys[i]`` with
``optim.SGD(lr=lrs[i], momentum=0.9)`` on ``member_batches[i]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxnet import train


def create(
    model: Any,
    keys: jax.Array,
    optimizer: optax.GradientTransformation,
    hyperparams: Mapping[str, Any] | None = None,
) -> train.TrainState:
    """Stacked ``TrainState``s, one per key: member ``i`` is ``model.init(keys[i])``, its
    training key is ``keys[i]`` as well, and its buffers (if the model has any) are the
    model's initial ones.

    ``hyperparams`` maps names of ``optimizer``'s injected hyperparameters
    (``optax.inject_hyperparams(...)(name=default, ...)``) to one value per member,
    which replace the defaults in each member's optimiser state; ``update`` reads them
    there every step. A hyperparameter that shapes the initial optimiser state (Adagrad's
    ``initial_accumulator_value``) takes its default for every member.

    PyTorch equivalent: building N models and optimisers in a loop, then
    ``torch.func.stack_module_state(models)`` for the stacked parameters (torch has no
    stacked optimiser state)."""
    hyperparams = dict(hyperparams or {})
    members = len(keys)
    for name, values in hyperparams.items():
        if jnp.shape(values)[:1] != (members,):
            raise ValueError(
                f"ensemble.create: hyperparams[{name!r}] needs one value per member, a "
                f"leading axis of {members}, got shape {jnp.shape(values)}"
            )

    def one(key, values):
        state = train.TrainState.create(model.init(key), optimizer, key, model.init_buffers())
        return state.replace(opt_state=_with_hyperparams(state.opt_state, values))

    return jax.vmap(one)(keys, hyperparams)


def train_loop(step: Callable, *, unroll: int | bool = 1) -> Callable:
    """:func:`jaxnet.train.train_loop` vmapped over members: ``loop(states, data,
    index_batches) -> (states, metrics)`` with ``states`` and ``index_batches``
    ``(members, steps, batch_size)`` stacked over the members, ``data`` shared. Not
    compiled: ``jax.jit(loop, donate_argnums=0)`` compiles it.

    Each member gathers its own batches, so members may also shuffle differently; give
    them the same order with ``jnp.broadcast_to(index_batches, (members, *shape))``.
    Gathered per member, the batch has a member axis like the weights, and every dot is
    a batched matmul. With one batch shared by all members (``in_axes=None``), XLA's CPU
    dot re-lays out the stacked ``[members, out, in]`` weights on every step: the
    16-member seed MLP at batch 64 took 7.47 ms a step that way against 6.76 ms with
    per-member batches (``docs/performance.md``).

    PyTorch has no counterpart: ``torch.func.vmap`` over ``functional_call`` batches the
    forward and backward passes, but each optimiser still steps in a Python loop.
    """
    return jax.vmap(train.train_loop(step, unroll=unroll), in_axes=(0, None, 0))


def _with_hyperparams(opt_state: Any, values: dict[str, Any]) -> Any:
    """``opt_state`` (an ``inject_hyperparams`` state) with ``values`` in its
    ``hyperparams``, each in the dtype of the default it replaces."""
    if not values:
        return opt_state
    injected = getattr(opt_state, "hyperparams", None)
    if injected is None:
        raise TypeError(
            "ensemble.create: per-member hyperparams need an optimiser built with "
            "optax.inject_hyperparams, e.g. optax.inject_hyperparams(optim.SGD)(lr=0.1)"
        )
    unknown = sorted(set(values) - set(injected))
    if unknown:
        raise ValueError(
            f"ensemble.create: {unknown} are not injected hyperparameters of the optimiser; "
            f"it has {sorted(injected)}"
        )
    # Copies (jnp.array), not views of the caller's arrays: a donated loop deletes them.
    cast = {name: jnp.array(v, injected[name].dtype) for name, v in values.items()}
    return opt_state._replace(hyperparams={**injected, **cast})
