"""Train N copies of a model at once: one ``jax.vmap``-ed, compiled call for all of them.

PyTorch has no counterpart short of a Python loop over N models (or ``torch.func``'s
``stack_module_state`` + ``vmap`` for the forward pass only). Here an ensemble or a
hyperparameter sweep is the ordinary training loop with a leading member axis on the
state: members differ by their initial key and/or by hyperparameters such as the
learning rate, and share the data and the batch order.

    model = nn.MLP(784, [256, 64], 10)
    lrs = jnp.array([0.003, 0.01, 0.03, 0.1])
    make_opt = lambda lr: optim.SGD(lambda step: lr, momentum=0.9)   # lr traced per member
    states = ensemble.create(model, jax.random.split(key, 4), make_opt, lrs)
    loop = ensemble.make_ensemble_loop(loss_fn, make_opt)
    states, metrics = loop(states, data, index_batches, lrs)          # metrics: (4, steps)

Member ``i`` equals a separate ``train.make_train_loop`` run from the same key with
``make_opt(lrs[i])``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from jaxnet import train


def create(
    model: Any,
    keys: jax.Array,
    make_optimizer: Callable[[Any], optax.GradientTransformation],
    hparams: Any,
) -> train.TrainState:
    """Stacked ``TrainState``s: member ``i`` is initialised with ``keys[i]`` and
    ``make_optimizer(hparams[i])``; its training key is ``keys[i]`` as well, and its
    buffers (if the model has any) are the model's initial ones.

    PyTorch equivalent: building N models and optimisers in a loop, then
    ``torch.func.stack_module_state(models)`` for the stacked parameters (torch has no
    stacked optimiser state)."""

    def one(key, hp):
        buffers = model.init_buffers()
        return train.TrainState.create(model.init(key), make_optimizer(hp), key, buffers)

    return jax.vmap(one)(keys, hparams)


def make_ensemble_loop(
    loss_fn: Callable,
    make_optimizer: Callable[[Any], optax.GradientTransformation],
    has_aux: bool = False,
    nan_policy: str = "stop",
    has_state: bool = False,
) -> Callable:
    """A jitted ``loop(states, data, index_batches, hparams) -> (states, metrics)``.

    The vmap of :func:`jaxnet.train.train_loop` over the members (axis 0 of ``states``
    and ``hparams``); ``data`` and ``index_batches`` are shared. ``make_optimizer`` is
    called with one member's (traced) hyperparameters, so pass them to jaxnet optimisers
    as schedules (``lambda step: lr``). ``has_aux`` and ``has_state`` are
    :func:`jaxnet.train.make_train_step`'s. ``states`` is donated.

    PyTorch has no counterpart: ``torch.func.vmap`` over ``functional_call`` batches the
    forward and backward passes, but each optimiser still steps in a Python loop.
    """

    def member(state, data, index_batches, hp):
        loop = train.train_loop(loss_fn, make_optimizer(hp), has_aux, nan_policy, has_state)
        return loop(state, data, index_batches)

    return jax.jit(jax.vmap(member, in_axes=(0, None, None, 0)), donate_argnums=0)
