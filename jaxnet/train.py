"""Compiled training: a pure train step, a compiled multi-step loop, ``evaluate`` and ``fit``.

PyTorch equivalent: the hand-written loop ::

    for x, y in loader:
        loss = criterion(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()

Here one step is a pure function ``(state, batch) -> (state, metrics)`` compiled by
``jax.jit`` (state buffers donated, so parameters are updated in place on the device),
and many steps run as one compiled ``lax.scan`` that gathers each batch from the
device-resident data set by index — no per-step dispatch and no per-epoch copy of the
data.

With ``nan_policy="skip"`` a step whose loss or gradients are not finite is dropped
inside the compiled loop (``metrics["finite"]`` says which) and training goes on. With
``nan_policy="stop"`` (default) the steps carry no guard — checking every gradient and
selecting every parameter on every step costs 15-30 % of a small step — and :func:`fit`
checks after each compiled call instead: it keeps a copy of the state from before the
call and, if a loss or a parameter came out non-finite, replays the call from that copy
one step at a time (the computation is deterministic) to the first step that went wrong,
then raises :class:`NonFiniteLossError` naming it and holding the last finite state.
Either way no non-finite parameter leaves :func:`fit`.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from tqdm.auto import tqdm

from jaxnet import parallel
from jaxnet._checks import check_positive_int
from jaxnet.datasets import batch_order
from jaxnet.datasets.batching import num_examples

NAN_POLICIES = ("stop", "skip")


@struct.dataclass
class TrainState:
    """Everything training changes, as one pytree: params, optimiser state, step, key.

    PyTorch equivalent: the model's and the optimizer's ``state_dict()`` together (plus
    the epoch counter and the generator seeding the ``DataLoader``), as one value.
    ``step`` counts the updates applied (a step dropped by ``nan_policy="skip"`` does
    not count).

    ``key`` drives the data order (epoch ``e`` shuffles with ``fold_in(key, e)``), so a
    restored state resumes with the same batches.
    """

    params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array

    @classmethod
    def create(cls, params: Any, optimizer: optax.GradientTransformation, key: jax.Array):
        """A step-0 state owning copies of ``params`` and ``key`` (steps donate their state)."""
        params = _copy(params)
        return cls(params, optimizer.init(params), jnp.zeros((), jnp.int32), _copy(key))


def _copy(tree: Any) -> Any:
    """Fresh device buffers for every leaf (typed PRNG keys included)."""

    def leaf(x: jax.Array) -> jax.Array:
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(
                jnp.copy(jax.random.key_data(x)), impl=jax.random.key_impl(x)
            )
        return jnp.copy(x)

    return jax.tree.map(leaf, tree)


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or inf loss or gradient; ``state`` holds the last finite parameters.

    PyTorch has no counterpart: a torch loop trains on through NaN unless it checks
    ``torch.isfinite(loss)`` itself (``torch.autograd.detect_anomaly`` finds NaN gradients).
    """

    def __init__(self, message: str, state: TrainState):
        super().__init__(message)
        self.state = state


def _check_policy(nan_policy: str) -> None:
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"{nan_policy=} is not one of {NAN_POLICIES}")


def _update_fn(
    loss_fn: Callable, optimizer: optax.GradientTransformation, has_aux: bool, nan_policy: str
):
    """``(state, batch) -> (state, metrics)``; with ``"skip"`` a non-finite step is dropped."""
    _check_policy(nan_policy)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=has_aux)

    def update(state: TrainState, batch: Any):
        out, grads = grad_fn(state.params, batch)
        loss, aux = out if has_aux else (out, {})
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if nan_policy == "stop":
            state = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
            return state, {"loss": loss, **aux}
        finite = jnp.isfinite(loss) & _all_finite(grads)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        state = state.replace(
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            step=state.step + finite.astype(state.step.dtype),
        )
        return state, {"loss": loss, "finite": finite, **aux}

    return update


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _with_params_finite(loop: Callable) -> Callable:
    """``loop`` jitted (state donated), also returning whether its parameters are finite."""

    def run(state: TrainState, data: Any, index_batches: jax.Array):
        state, metrics = loop(state, data, index_batches)
        return state, metrics, _all_finite(state.params)

    return jax.jit(run, donate_argnums=0)


def _first_bad_step(run_chunk: Callable, state: TrainState, data: Any, indices: jax.Array):
    """Replay ``indices`` from ``state`` one step at a time with ``run_chunk``
    (:func:`_with_params_finite`); the state before the first step whose loss or
    parameters come out non-finite, that step's index and its loss."""
    for i in range(len(indices)):
        after, metrics, params_finite = run_chunk(_copy(state), data, indices[i : i + 1])
        loss = float(metrics["loss"][0])
        if not (np.isfinite(loss) and params_finite):
            return state, i, loss
        state = after
    raise RuntimeError("fit: a non-finite step did not repeat on replay")


def make_train_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    has_aux: bool = False,
    nan_policy: str = "stop",
) -> Callable:
    """A jitted ``step(state, batch) -> (state, metrics)``; ``state`` is donated.

    PyTorch equivalent: one iteration of the loop body, ``loss = loss_fn(model, batch);
    optimizer.zero_grad(); loss.backward(); optimizer.step()``.

    ``loss_fn(params, batch)`` returns the scalar loss (or ``(loss, metrics_dict)`` with
    ``has_aux=True``). ``metrics`` holds ``"loss"`` and the aux entries. With
    ``nan_policy="skip"`` a step whose loss or gradients are not finite leaves params and
    optimiser state unchanged, and ``metrics["finite"]`` says whether it applied; with
    ``"stop"`` the step is unguarded and the caller stops on a non-finite loss or
    parameter (:func:`fit` does this for you).
    """
    return jax.jit(_update_fn(loss_fn, optimizer, has_aux, nan_policy), donate_argnums=0)


def train_loop(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    has_aux: bool = False,
    nan_policy: str = "stop",
) -> Callable:
    """The un-jitted ``loop(state, data, index_batches) -> (state, metrics)``.

    PyTorch equivalent: the ``for idx in batch_sampler:`` loop over the train step, as a
    function to transform. :func:`make_train_loop` compiles it; :mod:`jaxnet.ensemble`
    vmaps it first.
    """
    update = _update_fn(loss_fn, optimizer, has_aux, nan_policy)

    def loop(state: TrainState, data: Any, index_batches: jax.Array):
        def body(state, indices):
            batch = jax.tree.map(lambda a: a[indices], data)  # (B, ...)
            return update(state, batch)

        return jax.lax.scan(body, state, index_batches)

    return loop


def make_train_loop(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    has_aux: bool = False,
    nan_policy: str = "stop",
) -> Callable:
    """A jitted ``loop(state, data, index_batches) -> (state, metrics)``: many steps, one call.

    ``data`` is a pytree of device arrays with a leading example axis; ``index_batches``
    is an int array ``(steps, batch_size)``. Step ``i`` trains on ``data[index_batches[i]]``
    (gathered on the device inside the loop). ``metrics`` entries are stacked over
    steps. This is the compiled epoch; ``state`` is donated. PyTorch equivalent: one
    epoch's ``for x, y in loader:`` loop, with ``DataLoader(dataset,
    batch_sampler=index_batches)``.
    """
    return jax.jit(train_loop(loss_fn, optimizer, has_aux, nan_policy), donate_argnums=0)


# XLA's CPU runtime runs a loop body's kernels one after another in the calling thread
# only when every buffer they touch is at most 512 bytes; otherwise it schedules them
# on its thread pool, which costs a tiny step more than its arithmetic. A block of 128
# per-step float32 metrics is 512 bytes.
_FULL_BATCH_BLOCK = 128


def make_full_batch_loop(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    steps: int,
    has_aux: bool = False,
    nan_policy: str = "stop",
    unroll: int = 1,
) -> Callable:
    """A jitted ``loop(state, data) -> (state, metrics)``: ``steps`` steps on all of ``data``.

    Full-batch gradient descent (the seed's linear regression): every step sees the whole
    data set, so nothing is gathered — the fastest loop for small problems, where the
    per-step cost is a few hundred nanoseconds. The steps run in blocks of at most 128,
    each collecting its own metrics, so that a tiny model's loop body stays within what
    XLA's CPU runtime executes sequentially (measured on the seed's regression: 1.5-2x
    faster than one 1000-step loop). ``unroll`` is ``lax.scan``'s, applied within a
    block. ``metrics`` entries are stacked over all ``steps``. ``state`` is donated.
    PyTorch equivalent: ``for _ in range(steps):`` the train step on the whole data set.
    """
    check_positive_int("make_full_batch_loop", steps=steps, unroll=unroll)
    update = _update_fn(loss_fn, optimizer, has_aux, nan_policy)
    block = -(-steps // -(-steps // _FULL_BATCH_BLOCK))  # even blocks of <= 128 steps
    blocks, rest = divmod(steps, block)

    def run(state: TrainState, data: Any, n: int):
        body = lambda s, _: update(s, data)  # noqa: E731
        return jax.lax.scan(body, state, None, n, unroll=min(unroll, n))

    def loop(state: TrainState, data: Any):
        state, metrics = jax.lax.scan(lambda s, _: run(s, data, block), state, None, blocks)
        metrics = jax.tree.map(lambda m: m.reshape(blocks * block, *m.shape[2:]), metrics)
        if rest:
            state, tail = run(state, data, rest)
            metrics = jax.tree.map(lambda m, t: jnp.concatenate([m, t]), metrics, tail)
        return state, metrics

    return jax.jit(loop, donate_argnums=0)


_EVAL_BATCH = 10_000


def evaluate(
    metric_fn: Callable, params: Any, data: Any, batch_size: int = _EVAL_BATCH
) -> dict[str, float]:
    """Means over a whole data set of ``metric_fn(params, batch) -> {name: (B,) values}``.

    PyTorch equivalent: the ``with torch.no_grad(): for x, y in test_loader: ...`` loop
    summing correct predictions. Every example counts once (no dropped last batch), so
    each metric must give one value per example: a batch mean would be weighted wrongly.
    """
    check_positive_int("evaluate", batch_size=batch_size)
    n = num_examples("evaluate", data)
    _check_metrics("evaluate", metric_fn, params, data, min(batch_size, n))
    return _mean_metrics(metric_fn, params, data, n, batch_size)


def _mean_metrics(
    metric_fn: Callable, params: Any, data: Any, n: int, batch_size: int
) -> dict[str, float]:
    """:func:`evaluate` on arguments already checked (``n`` examples in ``data``)."""
    compiled = jax.jit(metric_fn)
    totals: dict[str, float] = {}
    for start in range(0, n, batch_size):
        batch = jax.tree.map(lambda a, s=start: a[s : s + batch_size], data)
        for name, values in compiled(params, batch).items():
            totals[name] = totals.get(name, 0.0) + float(jnp.sum(values))
    return {name: total / n for name, total in totals.items()}


def _check_metrics(caller: str, metric_fn: Callable, params: Any, data: Any, size: int) -> None:
    """``metric_fn`` on the first ``size`` examples of ``data`` returns a dict holding one
    value per example under each name (traced by ``jax.eval_shape``, nothing compiled)."""
    metrics = jax.eval_shape(metric_fn, params, jax.tree.map(lambda a: a[:size], data))
    if not isinstance(metrics, Mapping):
        kind = "an array" if isinstance(metrics, jax.ShapeDtypeStruct) else type(metrics).__name__
        raise TypeError(
            f"{caller}: metric_fn must return a dict {{name: (B,) per-example values}}, got {kind}"
        )
    for name, values in metrics.items():
        shape = getattr(values, "shape", None)
        if shape != (size,):
            raise ValueError(
                f"{caller}: metric {name!r} must hold one value per example, shape ({size},) "
                f"for a batch of {size}, got shape {shape} (a batch mean would be weighted "
                "wrongly)"
            )


def fit(
    state: TrainState,
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    train_data: Any,
    *,
    epochs: int,
    batch_size: int,
    metric_fn: Callable | None = None,
    eval_data: Any = None,
    has_aux: bool = False,
    nan_policy: str = "stop",
    shuffle: bool = True,
    updates_per_epoch_bar: int = 10,
    progress: bool = True,
    mesh: jax.sharding.Mesh | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Train for ``epochs`` over shuffled mini-batches; returns ``(state, history)``.

    PyTorch equivalent: the hand-written ``for epoch in range(epochs):`` loop over a
    shuffled ``DataLoader(drop_last=True)``, evaluating after each epoch (what
    Lightning's ``Trainer.fit`` or Keras' ``model.fit`` package).

    ``state`` is consumed: its buffers are donated to the compiled steps and deleted, so
    neither ``state`` nor its leaves (``state.params``, ...) can be read after the call.
    Use the returned state (a :class:`NonFiniteLossError` carries the last finite one),
    or pass a copy to keep the original.

    Each epoch's batch order is ``datasets.batch_order(fold_in(state.key, epoch), ...)``
    (last partial batch dropped; ``shuffle=False`` keeps the data's order). An epoch
    runs as a few compiled calls of :func:`train_loop` so the tqdm bar (loss in its
    postfix) moves ``updates_per_epoch_bar`` times. After each epoch ``metric_fn`` is
    evaluated on ``eval_data`` (:func:`evaluate`); give both or neither. ``history`` holds
    per-step losses, per-epoch mean loss and metrics, the compile time and the training
    time (without compilation).

    With a ``mesh`` (:func:`jaxnet.parallel.make_mesh`) training is data parallel: the
    state and the data sets are replicated on its devices and each index batch is split
    over its ``'data'`` axis, so ``batch_size`` must be a multiple of that axis's size.
    On several hosts every process passes the same arguments and the whole data set.
    """
    _check_policy(nan_policy)
    check_positive_int("fit", epochs=epochs, batch_size=batch_size)
    if (metric_fn is None) != (eval_data is None):
        given, missing = (
            ("metric_fn", "eval_data") if eval_data is None else ("eval_data", "metric_fn")
        )
        raise ValueError(f"fit: {given} was given without {missing}; evaluation needs both")
    n = num_examples("fit: train_data", train_data)
    n_eval = 0
    if eval_data is not None:
        n_eval = num_examples("fit: eval_data", eval_data)
        _check_metrics("fit", metric_fn, state.params, eval_data, min(_EVAL_BATCH, n_eval))
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"fit: {batch_size=} is larger than the data set ({n} examples)")
    chunk = max(1, -(-steps // max(1, updates_per_epoch_bar)))
    # One compiled call per chunk of the epoch (and per step of a NaN replay); it also says
    # whether the parameters it leaves are finite, so checking them needs neither the
    # (donated) state nor another call.
    run_chunk = _with_params_finite(train_loop(loss_fn, optimizer, has_aux, nan_policy))
    if mesh is not None:
        parallel.check_batch_size("fit", batch_size, mesh)
        state, train_data, eval_data = parallel.replicate((state, train_data, eval_data), mesh)

    def place(index_batches: np.ndarray) -> jax.Array:  # (steps, B); B split over 'data'
        index_batches = np.asarray(index_batches, np.int32)
        if mesh is None:
            return jnp.asarray(index_batches)
        return parallel.shard_batch(index_batches, mesh, axis=1)

    # Compile ahead of time (one or two chunk lengths), so compile time is reported apart.
    start = time.perf_counter()
    compiled = {
        length: run_chunk.lower(state, train_data, place(np.zeros((length, batch_size)))).compile()
        for length in {chunk, steps % chunk or chunk}
    }
    history: dict[str, Any] = {
        "compile_seconds": time.perf_counter() - start,
        "step_loss": [],
        "epoch_loss": [],
        "eval": [],
        "train_seconds": 0.0,
    }

    for epoch in range(epochs):
        order = np.stack(
            batch_order(
                jax.random.fold_in(state.key, epoch), n, batch_size, shuffle=shuffle, drop_last=True
            )
        )  # (steps, B)
        losses = []
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress)

        finish = functools.partial(
            _finish_chunk, epoch=epoch, steps=steps, nan_policy=nan_policy,
            replay=lambda before, indices: _first_bad_step(run_chunk, before, train_data, indices),
            bar=bar,
        )  # fmt: skip
        # Each chunk is dispatched before the previous one's results are read, so the
        # device never waits for the bar or the checks.
        tic = time.perf_counter()
        pending = None
        for begin in range(0, steps, chunk):
            indices = place(order[begin : begin + chunk])
            before = _copy(state) if nan_policy == "stop" else None
            state, metrics, params_finite = compiled[len(indices)](state, train_data, indices)
            if pending is not None:
                losses.append(finish(*pending))
            pending = (begin, indices, before, metrics, params_finite)
        losses.append(finish(*pending))
        history["train_seconds"] += time.perf_counter() - tic
        epoch_losses = np.concatenate(losses)
        history["step_loss"].extend(epoch_losses.tolist())
        history["epoch_loss"].append(float(np.nanmean(epoch_losses)))
        if metric_fn is not None:
            # checked before training: no re-trace of metric_fn each epoch
            history["eval"].append(
                _mean_metrics(metric_fn, state.params, eval_data, n_eval, _EVAL_BATCH)
            )
            bar.set_postfix(loss=f"{history['epoch_loss'][-1]:.4f}", **history["eval"][-1])
        bar.close()
    return state, history


def _finish_chunk(
    begin: int,
    indices: jax.Array,
    before: TrainState | None,
    metrics: dict[str, jax.Array],
    params_finite: jax.Array,
    *,
    epoch: int,
    steps: int,
    nan_policy: str,
    replay: Callable,
    bar: Any,
) -> np.ndarray:
    """The losses of a chunk :func:`fit` dispatched (waiting for it to finish); moves the
    bar and applies the NaN policy: ``"stop"`` replays the chunk from ``before`` to the
    first bad step and raises, ``"skip"`` reports each dropped step."""
    losses = np.asarray(metrics["loss"])
    if nan_policy == "stop":
        if not (np.isfinite(losses).all() and params_finite):
            bar.close()
            last, i, loss = replay(before, indices)
            raise NonFiniteLossError(
                _nonfinite_message(loss, epoch * steps + begin + i, begin + i, epoch)
                + "; training stopped, the state holds the last finite parameters",
                last,
            )
    else:
        for i in np.flatnonzero(~np.asarray(metrics["finite"])):
            message = _nonfinite_message(losses[i], epoch * steps + begin + i, begin + i, epoch)
            tqdm.write(message + "; update skipped", file=sys.stderr)
    bar.update(len(indices))
    bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses


def _nonfinite_message(loss: float, step: int, batch: int, epoch: int) -> str:
    what = "the gradients are not finite" if np.isfinite(loss) else f"loss is {loss}"
    return f"fit: {what} at step {step} (batch {batch} of epoch {epoch + 1})"
