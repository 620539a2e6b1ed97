"""The pure train step and the loop over it: functions to compile, not compiled.

PyTorch equivalent: the body of ``for x, y in loader: loss = criterion(model(x), y);
optimizer.zero_grad(); loss.backward(); optimizer.step()``, and that loop. ::

    step = train.train_step(loss_fn)           # (state, batch) -> (state, metrics)
    compiled_step = jax.jit(step, donate_argnums=0)         # one step, updating in place
    loop = jax.jit(train.train_loop(step), donate_argnums=0)   # many steps, one call
    state, metrics = loop(state, data, index_batches)   # metrics stacked over the steps

``donate_argnums=0`` lets XLA write the new state into the old one's buffers (the old
state cannot be read afterwards); leave it out to keep the old state. ``jax.vmap`` the
loop over a leading axis of states to train an ensemble (:mod:`jaxnet.ensemble`); give
the state a sharding to train data-parallel (:mod:`jaxnet.parallel`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxnet._checks import check_positive_int
from jaxnet.train.state import TrainState, step_key

NAN_POLICIES = ("stop", "skip")


def check_nan_policy(nan_policy: str) -> None:
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"{nan_policy=} is not one of {NAN_POLICIES}")


def train_step(
    loss_fn: Callable,
    *,
    has_aux: bool = False,
    has_state: bool = False,
    nan_policy: str = "stop",
) -> Callable:
    """The pure ``step(state, batch) -> (state, metrics)``: one update by ``state.tx``.

    PyTorch equivalent: one iteration of the loop body, ``loss = loss_fn(model, batch);
    optimizer.zero_grad(); loss.backward(); optimizer.step()``.

    ``loss_fn(params, batch)`` returns the scalar loss (or ``(loss, metrics_dict)`` with
    ``has_aux=True``). A model with buffers (BatchNorm) or random layers (Dropout) takes
    ``has_state=True`` and ``loss_fn(params, buffers, batch, key) -> (loss, buffers)``:
    ``key`` is the step's own (:func:`~jaxnet.train.step_key`), and the returned buffers
    go into the state, as ``net.apply(params, x, buffers=buffers, key=key)`` returns
    them. ``metrics`` holds ``"loss"`` and the aux entries.

    With ``nan_policy="skip"`` a step whose loss, gradients or new parameters are not
    finite leaves the state unchanged, and ``metrics["finite"]`` says whether it
    applied. With ``"stop"`` (default) the step carries no guard (checking every
    gradient and selecting every parameter costs 15-30 % of a small step): the caller
    checks the loss and the parameters, as :func:`~jaxnet.train.fit` does after every
    compiled call.
    """
    check_nan_policy(nan_policy)
    grad_fn = jax.value_and_grad(_normalised_loss(loss_fn, has_aux, has_state), has_aux=True)

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        key = step_key(state.key, state.step) if has_state else None
        (loss, (aux, buffers)), grads = grad_fn(state.params, state.buffers, batch, key)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if nan_policy == "stop":
            new = state.replace(
                params=params, buffers=buffers, opt_state=opt_state, step=state.step + 1
            )
            return new, {"loss": loss, **aux}
        # An overflowing update (float16 Adam) is dropped too, not only non-finite grads.
        finite = jnp.isfinite(loss) & all_finite(grads) & all_finite(params)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new = state.replace(
            params=keep(params, state.params),
            buffers=keep(buffers, state.buffers),
            opt_state=keep(opt_state, state.opt_state),
            step=state.step + finite.astype(state.step.dtype),
        )
        return new, {"loss": loss, "finite": finite, **aux}

    return step


def _normalised_loss(loss_fn: Callable, has_aux: bool, has_state: bool) -> Callable:
    """``(params, buffers, batch, key) -> (loss, (aux, buffers))`` for either form of loss
    function (see :func:`train_step`)."""

    def normalised(params, buffers, batch, key):
        if has_state:
            out, buffers = loss_fn(params, buffers, batch, key)
        else:
            out = loss_fn(params, batch)
        loss, aux = out if has_aux else (out, {})
        return loss, (aux, buffers)

    return normalised


def all_finite(tree: Any) -> jax.Array:
    """Whether every element of every leaf of ``tree`` is finite (``True`` for no leaves)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


# XLA's CPU runtime runs a loop body's kernels one after another in the calling thread
# only when every buffer they touch is at most 512 bytes; otherwise it schedules them
# on its thread pool, which costs a tiny step more than its arithmetic. A block of 128
# per-step float32 metrics is 512 bytes.
_FULL_BATCH_BLOCK = 128


def train_loop(step: Callable, *, unroll: int | bool = 1) -> Callable:
    """The loop ``loop(state, data, index_batches) -> (state, metrics)`` over ``step``
    (:func:`train_step`), not compiled: ``jax.jit(loop, donate_argnums=0)`` compiles it.

    PyTorch equivalent: one epoch's ``for idx in batch_sampler:`` loop, with
    ``DataLoader(dataset, batch_sampler=index_batches)``.

    ``data`` is a pytree of arrays with a leading example axis; ``index_batches`` is an
    int array ``(steps, batch_size)``, and step ``i`` trains on ``data[index_batches[i]]``,
    gathered on the device inside the loop (no per-step dispatch, no copy of the data
    set). ``metrics`` entries are stacked over the steps. ``unroll`` is ``lax.scan``'s,
    a positive int or ``True`` (no loop at all).

    Full-batch training (every step on all of ``data``, nothing gathered) is
    ``loop(state, data, steps=n)``; ``steps`` is static, so compile with
    ``jax.jit(loop, donate_argnums=0, static_argnames="steps")``. Its steps run in
    blocks of at most 128, which keeps a tiny model's loop body within what XLA's CPU
    runtime executes without its thread pool (on the linear regression of
    ``experiments.gradient_descent``, 1.5-2x faster than one 1000-step loop).
    """
    if unroll is not True:
        check_positive_int("train_loop", unroll=unroll)

    def loop(state: TrainState, data: Any, index_batches: Any = None, *, steps: int | None = None):
        if (index_batches is None) == (steps is None):
            raise TypeError("train_loop: give either index_batches or steps (full batch)")
        if steps is not None:
            check_positive_int("train_loop", steps=steps)
            return _full_batch(step, state, data, steps, unroll)

        def body(state: TrainState, indices: jax.Array):
            return step(state, jax.tree.map(lambda a: a[indices], data))

        if unroll is not True:
            return jax.lax.scan(body, state, index_batches, unroll=unroll)
        # Straight-line steps: lax.scan(unroll=True) still leaves a one-trip while loop,
        # and XLA's CPU backend runs convolutions in a loop body about 12x slower.
        metrics = []
        for indices in index_batches:
            state, step_metrics = body(state, indices)
            metrics.append(step_metrics)
        return state, jax.tree.map(lambda *m: jnp.stack(m), *metrics)

    return loop


def _full_batch(step: Callable, state: TrainState, data: Any, steps: int, unroll: int | bool):
    """``steps`` steps on all of ``data``, in even blocks of at most 128 steps."""
    block = -(-steps // -(-steps // _FULL_BATCH_BLOCK))
    blocks, rest = divmod(steps, block)

    def run(state, n):
        return jax.lax.scan(lambda s, _: step(s, data), state, None, n, unroll=min(unroll, n))

    state, metrics = jax.lax.scan(lambda s, _: run(s, block), state, None, blocks)
    metrics = jax.tree.map(lambda m: m.reshape(blocks * block, *m.shape[2:]), metrics)
    if rest:
        state, tail = run(state, rest)
        metrics = jax.tree.map(lambda m, t: jnp.concatenate([m, t]), metrics, tail)
    return state, metrics
