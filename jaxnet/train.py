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

With ``nan_policy="skip"`` a step whose loss, gradients or updated parameters are not
finite is dropped inside the compiled loop (``metrics["finite"]`` says which) and
training goes on. With
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
import warnings
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
from jaxnet._keys import on_key_data
from jaxnet.datasets import batch_order
from jaxnet.datasets.batching import num_examples
from jaxnet.optim.lr_scheduler import update_plateau

NAN_POLICIES = ("stop", "skip")


@struct.dataclass
class TrainState:
    """Everything training changes, as one pytree: params, buffers, optimiser state, step
    and epoch counters, and the key.

    PyTorch equivalent: the model's and the optimizer's ``state_dict()`` together (plus
    the epoch counter and the generator seeding the ``DataLoader`` and dropout), as one
    value. ``step`` counts the updates applied (a step dropped by ``nan_policy="skip"``
    does not count); ``epoch`` counts the epochs :func:`fit` completed. ``buffers`` are
    the model's non-trainable state (BatchNorm's running statistics; ``{}`` for most
    models).

    ``key`` drives the data order (epoch ``e`` shuffles with ``fold_in(key, e)``, see
    :func:`epoch_batch_order`) and the per-step keys of random layers
    (:func:`step_key`), so a restored state resumes with the same batches and masks.
    """

    params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array
    buffers: Any = struct.field(default_factory=dict)
    epoch: jax.Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.int32))

    @classmethod
    def create(
        cls,
        params: Any,
        optimizer: optax.GradientTransformation,
        key: jax.Array,
        buffers: Any = None,
    ):
        """A step-0 state owning copies of ``params``, ``buffers`` and ``key`` (steps donate
        their state)."""
        params = _copy(params)
        return cls(
            params,
            _copy(optimizer.init(params)),  # an init may hand one buffer to two leaves
            jnp.zeros((), jnp.int32),
            _copy(key),
            _copy(buffers or {}),
            jnp.zeros((), jnp.int32),
        )


def step_key(state: TrainState) -> jax.Array:
    """The PRNG key the step at ``state.step`` passes to the loss (its random layers):
    ``fold_in(split(state.key)[1], state.step)``, a stream apart from the data order's."""
    return jax.random.fold_in(jax.random.split(state.key)[1], state.step)


def epoch_batch_order(
    key: jax.Array, epoch: int, n: int, batch_size: int, shuffle: bool = True
) -> np.ndarray:
    """The ``(steps, batch_size)`` index batches :func:`fit` trains epoch ``epoch`` on:
    ``batch_order(fold_in(key, epoch), n, batch_size, drop_last=True)``, stacked.

    PyTorch equivalent: the batches of ``DataLoader(dataset, batch_size, shuffle,
    drop_last=True)``; a torch twin fed ``batch_sampler=epoch_batch_order(...)`` sees
    the same batches as ``fit``.
    """
    order = batch_order(
        jax.random.fold_in(key, epoch), n, batch_size, shuffle=shuffle, drop_last=True
    )
    return np.stack(order) if order else np.zeros((0, batch_size), np.int64)


def _copy(tree: Any) -> Any:
    """Fresh device buffers for every leaf (typed PRNG keys included)."""
    return jax.tree.map(lambda leaf: on_key_data(jnp.copy, leaf), tree)


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


def _value_and_grad(loss_fn: Callable, has_aux: bool, has_state: bool) -> Callable:
    """``(params, buffers, batch, key) -> ((loss, aux, buffers), grads)`` for either form of
    loss function: ``loss_fn(params, batch)``, or with ``has_state``
    ``loss_fn(params, buffers, batch, key) -> (loss, new_buffers)``; with ``has_aux`` the
    loss is ``(loss, aux_dict)``."""

    def normalised(params, buffers, batch, key):
        if has_state:
            out, buffers = loss_fn(params, buffers, batch, key)
        else:
            out = loss_fn(params, batch)
        loss, aux = out if has_aux else (out, {})
        return loss, (aux, buffers)

    grad_fn = jax.value_and_grad(normalised, has_aux=True)

    def value_and_grad(params, buffers, batch, key):
        (loss, (aux, buffers)), grads = grad_fn(params, buffers, batch, key)
        return (loss, aux, buffers), grads

    return value_and_grad


def _update_fn(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    has_aux: bool,
    nan_policy: str,
    has_state: bool = False,
):
    """``(state, batch) -> (state, metrics)``; with ``"skip"`` a non-finite step is dropped."""
    _check_policy(nan_policy)
    grad_fn = _value_and_grad(loss_fn, has_aux, has_state)

    def update(state: TrainState, batch: Any):
        key = step_key(state) if has_state else None
        (loss, aux, buffers), grads = grad_fn(state.params, state.buffers, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if nan_policy == "stop":
            state = state.replace(
                params=params, buffers=buffers, opt_state=opt_state, step=state.step + 1
            )
            return state, {"loss": loss, **aux}
        # An overflowing update (float16 Adam) is dropped too, not only non-finite grads.
        finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        state = state.replace(
            params=keep(params, state.params),
            buffers=keep(buffers, state.buffers),
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
    has_state: bool = False,
) -> Callable:
    """A jitted ``step(state, batch) -> (state, metrics)``; ``state`` is donated.

    PyTorch equivalent: one iteration of the loop body, ``loss = loss_fn(model, batch);
    optimizer.zero_grad(); loss.backward(); optimizer.step()``.

    ``loss_fn(params, batch)`` returns the scalar loss (or ``(loss, metrics_dict)`` with
    ``has_aux=True``). A model with buffers (BatchNorm) or random layers (Dropout) takes
    ``has_state=True`` and ``loss_fn(params, buffers, batch, key) -> (loss, buffers)``:
    ``key`` is the step's own (:func:`step_key`), and the returned buffers go into the
    state, as ``net.apply(params, x, buffers=buffers, key=key)`` returns them.
    ``metrics`` holds ``"loss"`` and the aux entries. With ``nan_policy="skip"`` a step
    whose loss, gradients or new parameters are not finite leaves params and optimiser
    state unchanged, and ``metrics["finite"]`` says whether it applied; with
    ``"stop"`` the step is unguarded and the caller stops on a non-finite loss or
    parameter (:func:`fit` does this for you).
    """
    return jax.jit(_update_fn(loss_fn, optimizer, has_aux, nan_policy, has_state), donate_argnums=0)


def train_loop(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    has_aux: bool = False,
    nan_policy: str = "stop",
    has_state: bool = False,
    unroll: int | bool = 1,
) -> Callable:
    """The un-jitted ``loop(state, data, index_batches) -> (state, metrics)``.

    PyTorch equivalent: the ``for idx in batch_sampler:`` loop over the train step, as a
    function to transform. :func:`make_train_loop` compiles it; :mod:`jaxnet.ensemble`
    vmaps it first. ``unroll`` is ``lax.scan``'s (``True``: no loop at all).
    """
    update = _update_fn(loss_fn, optimizer, has_aux, nan_policy, has_state)

    def loop(state: TrainState, data: Any, index_batches: jax.Array):
        def body(state, indices):
            batch = jax.tree.map(lambda a: a[indices], data)  # (B, ...)
            return update(state, batch)

        return jax.lax.scan(body, state, index_batches, unroll=unroll)

    return loop


def make_train_loop(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    has_aux: bool = False,
    nan_policy: str = "stop",
    has_state: bool = False,
) -> Callable:
    """A jitted ``loop(state, data, index_batches) -> (state, metrics)``: many steps, one call.

    ``data`` is a pytree of device arrays with a leading example axis; ``index_batches``
    is an int array ``(steps, batch_size)``. Step ``i`` trains on ``data[index_batches[i]]``
    (gathered on the device inside the loop). ``metrics`` entries are stacked over
    steps. This is the compiled epoch; ``state`` is donated. PyTorch equivalent: one
    epoch's ``for x, y in loader:`` loop, with ``DataLoader(dataset,
    batch_sampler=index_batches)``.
    """
    return jax.jit(train_loop(loss_fn, optimizer, has_aux, nan_policy, has_state), donate_argnums=0)


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
    has_state: bool = False,
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
    update = _update_fn(loss_fn, optimizer, has_aux, nan_policy, has_state)
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
    metric_fn: Callable,
    params: Any,
    data: Any,
    batch_size: int = _EVAL_BATCH,
    buffers: Any = None,
) -> dict[str, float]:
    """Means over a whole data set of ``metric_fn(params, batch) -> {name: (B,) values}``.

    PyTorch equivalent: the ``model.eval(); with torch.no_grad(): for x, y in
    test_loader: ...`` loop summing correct predictions. Every example counts once (no
    dropped last batch), so each metric must give one value per example: a batch mean
    would be weighted wrongly. A model with buffers passes them: then ``metric_fn(params,
    buffers, batch)`` (which runs ``net.apply(..., buffers=buffers, training=False)``).
    """
    check_positive_int("evaluate", batch_size=batch_size)
    n = num_examples("evaluate", data)
    if n == 0:
        raise ValueError("evaluate: data has no examples; a mean over none is undefined")
    compiled = _compiled_metrics(metric_fn, buffers is not None)
    variables = (params, buffers)
    _check_metrics("evaluate", compiled, variables, data, min(batch_size, n))
    return _mean_metrics(compiled, variables, data, n, batch_size)


def _mean_metrics(
    compiled_metric_fn: Callable, variables: Any, data: Any, n: int, batch_size: int
) -> dict[str, float]:
    """:func:`evaluate` on arguments already checked (``n`` examples in ``data``)."""
    totals: dict[str, float] = {}
    for start in range(0, n, batch_size):
        batch = jax.tree.map(lambda a, s=start: a[s : s + batch_size], data)
        for name, values in compiled_metric_fn(variables, batch).items():
            totals[name] = totals.get(name, 0.0) + float(jnp.sum(values))
    return {name: total / n for name, total in totals.items()}


def _check_metrics(
    caller: str, metric_fn: Callable, params: Any, data: Any, size: int
) -> list[str]:
    """``metric_fn`` on the first ``size`` examples of ``data`` returns a dict holding one
    value per example under each name (traced by ``jax.eval_shape``, nothing compiled);
    the names."""
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
    return list(metrics)


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
    has_state: bool = False,
    nan_policy: str = "stop",
    shuffle: bool = True,
    chunks_per_epoch: int = 10,
    steps_per_call: int | None = None,
    progress: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    plateau_metric: str | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Train for ``epochs`` more epochs over shuffled mini-batches; returns ``(state, history)``.

    PyTorch equivalent: the hand-written ``for epoch in range(epochs):`` loop over a
    shuffled ``DataLoader(drop_last=True)`` in ``model.train()`` mode, evaluating in
    ``model.eval()`` mode after each epoch (what Lightning's ``Trainer.fit`` or Keras'
    ``model.fit`` package).

    ``state`` is consumed: its buffers are donated to the compiled steps and deleted, so
    neither ``state`` nor its leaves (``state.params``, ...) can be read after the call.
    Use the returned state, or pass a copy to keep the original. Any exception raised
    once training has started (:class:`NonFiniteLossError`, a ``KeyboardInterrupt``, an
    error in ``metric_fn``) carries the last good state as its ``state`` attribute.

    Epochs continue from ``state.epoch``: epoch ``e`` trains on
    :func:`epoch_batch_order` ``(state.key, e, ...)`` (last partial batch dropped, with a
    warning saying how many examples that leaves out; ``shuffle=False`` keeps the data's
    order), so ``fit(epochs=1)`` twice, or a saved and restored state, trains exactly as
    ``fit(epochs=2)``. An epoch runs as ``chunks_per_epoch`` compiled calls of
    :func:`train_loop` (the tqdm bar moves after each), or as calls of
    ``steps_per_call`` steps each when that is given (1: every step its own compiled
    call, without a loop; for LeNet the loop and one step per call ran within 10 % of
    each other, ``docs/performance.md``). ``has_aux`` and ``has_state`` are
    :func:`make_train_step`'s. After each epoch ``metric_fn`` is evaluated on
    ``eval_data`` (:func:`evaluate`, with the state's buffers when ``has_state``); give
    both or neither. ``history`` holds per-step losses, per-epoch mean loss and metrics,
    the compile time and the training time (without compilation).

    ``plateau_metric`` names the evaluation metric that steps the optimiser's
    ``ReduceLROnPlateau`` (built with :func:`jaxnet.optim.lr_scheduler.scale_by_plateau`)
    once an epoch, as torch's ``scheduler.step(val_loss)``; the new learning rate is a
    value in the optimiser state, so nothing recompiles.

    With a ``mesh`` (:func:`jaxnet.parallel.make_mesh`) training is data parallel: the
    state and the data sets are replicated on its devices and each index batch is split
    over its ``'data'`` axis, so ``batch_size`` must be a multiple of that axis's size.
    BatchNorm then normalises with the statistics of the global batch (torch's
    ``SyncBatchNorm``), since the loss sees the whole sharded batch. On several hosts
    every process passes the same arguments and the whole data set.
    """
    _check_policy(nan_policy)
    check_positive_int(
        "fit", epochs=epochs, batch_size=batch_size, chunks_per_epoch=chunks_per_epoch
    )
    if (metric_fn is None) != (eval_data is None):
        given, missing = (
            ("metric_fn", "eval_data") if eval_data is None else ("eval_data", "metric_fn")
        )
        raise ValueError(f"fit: {given} was given without {missing}; evaluation needs both")
    n = num_examples("fit: train_data", train_data)
    n_eval, metric_names = 0, None
    if eval_data is not None:
        n_eval = num_examples("fit: eval_data", eval_data)
        if n_eval == 0:
            raise ValueError("fit: eval_data has no examples")
        # One function of (params and buffers, batch), compiled once for every epoch.
        metric_fn = _compiled_metrics(metric_fn, has_state)
        variables = (state.params, state.buffers)
        metric_names = _check_metrics(
            "fit", metric_fn, variables, eval_data, min(_EVAL_BATCH, n_eval)
        )
    if plateau_metric is not None:
        _check_plateau(plateau_metric, metric_names, state)
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"fit: {batch_size=} is larger than the data set ({n} examples)")
    _warn_dropped(n, batch_size, shuffle)
    if steps_per_call is not None:
        check_positive_int("fit", steps_per_call=steps_per_call)
    chunk = min(steps_per_call or -(-steps // min(chunks_per_epoch, steps)), steps)
    # One compiled call per chunk of the epoch (and per step of a NaN replay); it also says
    # whether the parameters it leaves are finite, so checking them needs neither the
    # (donated) state nor another call. A one-step chunk compiles without a loop.
    loop = train_loop(loss_fn, optimizer, has_aux, nan_policy, has_state, unroll=chunk == 1)
    run_chunk = _with_params_finite(loop)
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
    first_epoch = int(state.epoch)
    holder = {"state": state}  # the last good state, for any exception below
    try:
        for epoch in range(first_epoch, first_epoch + epochs):
            _fit_epoch(
                holder, compiled, run_chunk, train_data, history, place, chunk=chunk,
                epoch=epoch, last=first_epoch + epochs, steps=steps, n=n,
                batch_size=batch_size, shuffle=shuffle, nan_policy=nan_policy,
                progress=progress, plateau_metric=plateau_metric,
                evaluate_fn=None if metric_fn is None else functools.partial(
                    _evaluate_state, metric_fn, eval_data, n_eval
                ),
            )  # fmt: skip
    except BaseException as error:
        if not hasattr(error, "state"):
            error.state = holder["state"]
        raise
    return holder["state"], history


_step_plateau = jax.jit(update_plateau)


def _check_plateau(name: str, names: list[str] | None, state: TrainState) -> None:
    """``name`` is one of the evaluation's metric ``names`` (``None``: no evaluation) and
    the optimiser has a plateau state."""
    if names is None:
        raise ValueError("fit: plateau_metric needs metric_fn and eval_data to evaluate it")
    if name not in names:
        raise ValueError(f"fit: plateau_metric {name!r} is not a metric of metric_fn: {names}")
    try:
        jax.eval_shape(update_plateau, state.opt_state, 0.0)
    except ValueError:
        raise ValueError(
            "fit: plateau_metric needs an optimiser with a ReduceLROnPlateau: "
            "optax.chain(optimizer, lr_scheduler.scale_by_plateau(plateau))"
        ) from None


def _warn_dropped(n: int, batch_size: int, shuffle: bool) -> None:
    dropped = n % batch_size
    if dropped:
        which = (
            "a different few each epoch"
            if shuffle
            else "the same ones every epoch (shuffle=False), so they are never trained on"
        )
        warnings.warn(
            f"fit: each epoch drops the last partial batch: {dropped} of {n} examples "
            f"({which}); batch_size={batch_size} does not divide {n}",
            stacklevel=3,
        )


def _metrics_of_variables(metric_fn: Callable, has_state: bool) -> Callable:
    """``metric_fn`` as a function of ``((params, buffers), batch)``."""
    if has_state:
        return lambda variables, batch: metric_fn(*variables, batch)
    return lambda variables, batch: metric_fn(variables[0], batch)


@functools.lru_cache(maxsize=64)
def _compiled_metrics(metric_fn: Callable, has_state: bool) -> Callable:
    """The jitted :func:`_metrics_of_variables` of ``metric_fn``, one per function, so that
    calling :func:`evaluate` every epoch compiles once."""
    return jax.jit(_metrics_of_variables(metric_fn, has_state))


def _evaluate_state(
    compiled_metric_fn: Callable, eval_data: Any, n_eval: int, state: TrainState
) -> dict[str, float]:
    """The metrics' means on ``eval_data`` for ``state`` (checked before training)."""
    variables = (state.params, state.buffers)
    return _mean_metrics(compiled_metric_fn, variables, eval_data, n_eval, _EVAL_BATCH)


def _fit_epoch(
    holder: dict[str, TrainState],
    compiled: dict[int, Callable],
    run_chunk: Callable,
    train_data: Any,
    history: dict[str, Any],
    place: Callable,
    *,
    chunk: int,
    epoch: int,
    last: int,
    steps: int,
    n: int,
    batch_size: int,
    shuffle: bool,
    nan_policy: str,
    progress: bool,
    plateau_metric: str | None,
    evaluate_fn: Callable | None,
) -> None:
    """One epoch of :func:`fit`: its chunks, pipelined, then the evaluation; ``holder``
    always holds the last good state."""
    state = holder["state"]
    order = epoch_batch_order(state.key, epoch, n, batch_size, shuffle)  # (steps, B)
    losses = []
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{last}", disable=not progress)
    finish = functools.partial(
        _finish_chunk, epoch=epoch, steps=steps, nan_policy=nan_policy,
        replay=lambda before, indices: _first_bad_step(run_chunk, before, train_data, indices),
        bar=bar,
    )  # fmt: skip
    # Each chunk is dispatched before the previous one's results are read, so the
    # device never waits for the bar or the checks.
    tic = time.perf_counter()
    pending = None
    try:
        for begin in range(0, steps, chunk):
            indices = place(order[begin : begin + chunk])
            before = _copy(state) if nan_policy == "stop" else None
            state, metrics, params_finite = compiled[len(indices)](state, train_data, indices)
            holder["state"] = state  # the input state was donated: this is the live one
            if pending is not None:
                losses.append(finish(*pending))
            pending = (begin, indices, before, metrics, params_finite)
        losses.append(finish(*pending))
        state = state.replace(epoch=state.epoch + 1)
        holder["state"] = state
    finally:
        bar.close()
    history["train_seconds"] += time.perf_counter() - tic
    epoch_losses = np.concatenate(losses)
    history["step_loss"].extend(epoch_losses.tolist())
    history["epoch_loss"].append(float(np.nanmean(epoch_losses)))
    if evaluate_fn is not None:
        history["eval"].append(evaluate_fn(state))
        if plateau_metric is not None:
            metric = history["eval"][-1][plateau_metric]
            holder["state"] = state.replace(opt_state=_step_plateau(state.opt_state, metric))
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}/{last}: train loss {history['epoch_loss'][-1]:.4f}, "
                + ", ".join(f"eval {k} {v:.4f}" for k, v in history["eval"][-1].items())
            )


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
            what = (
                f"loss is {loss}"
                if not np.isfinite(loss)
                else "the loss was finite but the update made the parameters non-finite "
                "(non-finite gradients, or an optimiser step that overflowed)"
            )
            raise NonFiniteLossError(
                _nonfinite_message(what, epoch * steps + begin + i, begin + i, epoch)
                + "; training stopped, the state holds the last finite parameters",
                last,
            )
    else:
        for i in np.flatnonzero(~np.asarray(metrics["finite"])):
            what = (
                "the gradients or the updated parameters are not finite"
                if np.isfinite(losses[i])
                else f"loss is {losses[i]}"
            )
            message = _nonfinite_message(what, epoch * steps + begin + i, begin + i, epoch)
            tqdm.write(message + "; update skipped", file=sys.stderr)
    bar.update(len(indices))
    bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses


def _nonfinite_message(what: str, step: int, batch: int, epoch: int) -> str:
    return f"fit: {what} at step {step} (batch {batch} of epoch {epoch + 1})"
