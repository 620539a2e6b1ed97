"""``fit``: epochs of shuffled mini-batches through the compiled loop, with evaluation,
progress and the NaN policy.

PyTorch equivalent: the hand-written ``for epoch in range(epochs):`` loop over a
shuffled ``DataLoader`` (what Lightning's ``Trainer.fit`` or Keras' ``model.fit``
package). Everything it compiles is :func:`~jaxnet.train.train_loop` over
:func:`~jaxnet.train.train_step`.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxnet import parallel
from jaxnet._checks import check_positive_int
from jaxnet.datasets.batching import num_examples
from jaxnet.optim.lr_scheduler import update_plateau
from jaxnet.train.evaluate import EVAL_BATCH, check_metrics, compiled_metrics, mean_metrics
from jaxnet.train.nonfinite import NonFiniteLossError
from jaxnet.train.state import TrainState, copy_tree, epoch_batch_order
from jaxnet.train.step import all_finite, check_nan_policy, train_loop, train_step


def fit(
    state: TrainState,
    loss_fn: Callable,
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
    ``model.eval()`` mode after each epoch. The optimiser is the state's
    (``TrainState.create(params, optimizer, key)``).

    **Epochs** continue from ``state.epoch``: epoch ``e`` trains on
    :func:`~jaxnet.train.epoch_batch_order` ``(state.key, e, ...)`` (last partial batch
    dropped, with a warning saying how many examples that leaves out; ``shuffle=False``
    keeps the data's order), so ``fit(epochs=1)`` twice, or a saved and restored state,
    trains exactly as ``fit(epochs=2)``. An epoch runs as ``chunks_per_epoch`` compiled
    calls of :func:`~jaxnet.train.train_loop` (the tqdm bar moves after each), or as calls
    of ``steps_per_call`` steps each when that is given (1: every step its own call,
    without a loop). A model that convolves, trained on CPU, defaults to one step per
    call: XLA's CPU backend runs a convolution inside a loop body about 12x slower
    (``docs/performance_cnn.md``). ``has_aux`` and ``has_state`` are
    :func:`~jaxnet.train.train_step`'s. After each epoch ``metric_fn`` is evaluated on ``eval_data``
    (:func:`~jaxnet.train.evaluate`, with the state's buffers when ``has_state``); give
    both or neither. ``history`` holds per-step losses, per-epoch mean loss and metrics,
    the compile time and the training time (without compilation).

    **Non-finite values.** With ``nan_policy="stop"`` (default) ``fit`` keeps a copy of
    the state from before each call (the one extra copy training holds) and checks the
    call as it returns: if a loss or a parameter came out non-finite,
    :class:`NonFiniteLossError` is raised holding that copy and the call's index batches
    (:func:`~jaxnet.train.find_nonfinite_step` replays them to name the step). With
    ``"skip"`` a non-finite step is dropped inside the compiled loop and reported, and
    each call is dispatched before the previous one is checked.

    **Ownership.** ``state`` is consumed (its buffers are donated to the compiled calls
    and deleted): use the returned state. Any exception raised once training has started (a
    ``KeyboardInterrupt``, an error in ``metric_fn``) carries the last good state as its
    ``state`` attribute.

    ``plateau_metric`` names the evaluation metric that steps the optimiser's
    ``ReduceLROnPlateau`` (built with :func:`jaxnet.optim.lr_scheduler.scale_by_plateau`)
    once an epoch, as torch's ``scheduler.step(val_loss)``; the new learning rate is a
    value in the optimiser state, so nothing recompiles.

    With a ``mesh`` (:func:`jaxnet.parallel.make_mesh`) training is data parallel: the
    state and the data sets are replicated on its devices and each index batch is split
    over its ``'data'`` axis, so ``batch_size`` must be a multiple of that axis's size.
    BatchNorm then normalises with the statistics of the global batch (torch's
    ``SyncBatchNorm``). On several hosts every process passes the same arguments and
    the whole data set.
    """
    check_nan_policy(nan_policy)
    check_positive_int(
        "fit", epochs=epochs, batch_size=batch_size, chunks_per_epoch=chunks_per_epoch
    )
    if steps_per_call is not None:
        check_positive_int("fit", steps_per_call=steps_per_call)
    n = num_examples("fit: train_data", train_data)
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"fit: {batch_size=} is larger than the data set ({n} examples)")
    evaluation = _Evaluation.of(metric_fn, eval_data, has_state, state, plateau_metric)
    _warn_dropped(n, batch_size, shuffle)
    if mesh is not None:
        parallel.check_batch_size("fit", batch_size, mesh)
        state, train_data, eval_data = parallel.replicate((state, train_data, eval_data), mesh)
        evaluation = evaluation and evaluation._replace(data=eval_data)

    def place(index_batches: np.ndarray) -> jax.Array:  # (steps, B); B split over 'data'
        index_batches = np.asarray(index_batches, np.int32)
        if mesh is None:
            return jnp.asarray(index_batches)
        return parallel.shard_batch(index_batches, mesh, axis=1)

    step = train_step(loss_fn, has_aux=has_aux, has_state=has_state, nan_policy=nan_policy)
    if steps_per_call is None and _convolves_on_cpu(step, state, train_data, batch_size, mesh):
        steps_per_call = 1
    chunk = min(steps_per_call or -(-steps // min(chunks_per_epoch, steps)), steps)
    loop = train_loop(step, unroll=True if chunk == 1 else 1)  # one step: no loop at all

    def run(state: TrainState, data: Any, index_batches: jax.Array):
        state, metrics = loop(state, data, index_batches)
        return state, metrics, all_finite(state.params)

    # Compiled ahead of time (one or two call lengths), so compile time is reported apart.
    start = time.perf_counter()
    run = jax.jit(run, donate_argnums=0)
    compiled = {
        length: run.lower(state, train_data, place(np.zeros((length, batch_size)))).compile()
        for length in {chunk, steps % chunk or chunk}
    }
    history: dict[str, Any] = {
        "compile_seconds": time.perf_counter() - start,
        "step_loss": [],
        "epoch_loss": [],
        "eval": [],
        "train_seconds": 0.0,
    }
    epoch_run = _EpochRun(compiled, train_data, place, chunk, steps, n, batch_size, shuffle,
                          nan_policy, progress)  # fmt: skip
    first = int(state.epoch)
    holder = {"state": state}  # the last good state, for any exception below
    try:
        for epoch in range(first, first + epochs):
            tic = time.perf_counter()
            losses = epoch_run(holder, epoch, first + epochs)
            history["train_seconds"] += time.perf_counter() - tic
            history["step_loss"].extend(losses.tolist())
            history["epoch_loss"].append(float(np.nanmean(losses)))
            if evaluation is not None:
                holder["state"] = evaluation.after_epoch(holder["state"], history)
                if progress:
                    tqdm.write(
                        f"epoch {epoch + 1}/{first + epochs}: train loss "
                        f"{history['epoch_loss'][-1]:.4f}, "
                        + ", ".join(f"eval {k} {v:.4f}" for k, v in history["eval"][-1].items())
                    )
    except BaseException as error:
        if not hasattr(error, "state"):
            error.state = holder["state"]
        raise
    return holder["state"], history


def _convolves_on_cpu(step: Callable, state: TrainState, data: Any, batch_size: int, mesh) -> bool:
    """Whether ``step`` convolves and runs on CPU devices. XLA's CPU backend runs a
    convolution inside a loop body about 12x slower than the same convolution outside
    one (a 3x3 conv's train step: 97 ms in ``lax.scan``, 7-9 ms jitted alone or
    unrolled), so ``fit`` gives such a model one compiled step per call."""
    device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
    if device.platform != "cpu":
        return False
    batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct((batch_size, *a.shape[1:]), a.dtype), data)
    return "conv_general_dilated" in str(jax.make_jaxpr(step)(state, batch))


class _Evaluation(NamedTuple):
    """``fit``'s end-of-epoch evaluation, checked before training starts."""

    metric_fn: Callable  # compiled, of ((params, buffers), batch)
    data: Any
    n: int
    plateau_metric: str | None

    @classmethod
    def of(cls, metric_fn, data, has_state, state, plateau_metric) -> _Evaluation | None:
        if (metric_fn is None) != (data is None):
            given, missing = (
                ("metric_fn", "eval_data") if data is None else ("eval_data", "metric_fn")
            )
            raise ValueError(f"fit: {given} was given without {missing}; evaluation needs both")
        if metric_fn is None:
            if plateau_metric is not None:
                raise ValueError("fit: plateau_metric needs metric_fn and eval_data to evaluate it")
            return None
        n = num_examples("fit: eval_data", data)
        if n == 0:
            raise ValueError("fit: eval_data has no examples")
        compiled = compiled_metrics(metric_fn, has_state)
        variables = (state.params, state.buffers)
        names = check_metrics("fit", compiled, variables, data, min(EVAL_BATCH, n))
        if plateau_metric is not None:
            _check_plateau(plateau_metric, names, state)
        return cls(compiled, data, n, plateau_metric)

    def after_epoch(self, state: TrainState, history: dict[str, Any]) -> TrainState:
        """Evaluate ``state`` into ``history``; step the plateau schedule if there is one."""
        metrics = mean_metrics(self.metric_fn, (state.params, state.buffers), self.data, self.n)
        history["eval"].append(metrics)
        if self.plateau_metric is None:
            return state
        return state.replace(opt_state=_step_plateau(state.opt_state, metrics[self.plateau_metric]))


_step_plateau = jax.jit(update_plateau)


def _check_plateau(name: str, names: list[str], state: TrainState) -> None:
    """``name`` is one of the evaluation's metric ``names`` and the optimiser has a
    plateau state."""
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


class _EpochRun(NamedTuple):
    """One epoch of ``fit``: its compiled calls, their checks and the progress bar."""

    compiled: dict[int, Callable]  # call length -> compiled (state, data, idx) call
    train_data: Any
    place: Callable
    chunk: int
    steps: int
    n: int
    batch_size: int
    shuffle: bool
    nan_policy: str
    progress: bool

    def __call__(self, holder: dict[str, TrainState], epoch: int, last: int) -> np.ndarray:
        """Train epoch ``epoch``; ``holder["state"]`` always holds the last good state.
        Returns the epoch's per-step losses."""
        order = epoch_batch_order(
            holder["state"].key, epoch, self.n, self.batch_size, self.shuffle
        )  # (steps, B)
        # "stop" copies the state before each call (the one extra copy) and checks the
        # call as it returns; "skip" needs no copy and dispatches each call before
        # checking the previous one, so the device never waits for the bar.
        ahead = 1 if self.nan_policy == "skip" else 0
        pending: list[tuple] = []
        losses = []
        bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{last}", disable=not self.progress)
        try:
            for begin in range(0, self.steps, self.chunk):
                indices = self.place(order[begin : begin + self.chunk])
                before = copy_tree(holder["state"]) if self.nan_policy == "stop" else None
                state, metrics, params_finite = self.compiled[len(indices)](
                    holder["state"], self.train_data, indices
                )
                # The input was donated: the last good state is now the copy ("stop",
                # until the call is checked) or the call's result ("skip").
                holder["state"] = state if before is None else before
                pending.append((begin, indices, before, metrics, params_finite))
                if len(pending) > ahead:
                    losses.append(self._finish(epoch, *pending.pop(0), bar=bar))
                holder["state"] = state
                del before
            losses.extend(self._finish(epoch, *call, bar=bar) for call in pending)
            holder["state"] = holder["state"].replace(epoch=holder["state"].epoch + 1)
        finally:
            bar.close()
        return np.concatenate(losses)

    def _finish(self, epoch, begin, indices, before, metrics, params_finite, *, bar) -> np.ndarray:
        """The losses of a dispatched call (waiting for it); moves the bar and applies the
        NaN policy: ``"stop"`` raises holding ``before``, ``"skip"`` reports each dropped
        step."""
        losses = np.asarray(metrics["loss"])
        first = epoch * self.steps + begin  # the call's first step, counted over all epochs
        if self.nan_policy == "stop" and not (np.isfinite(losses).all() and params_finite):
            bar.close()
            bad = np.flatnonzero(~np.isfinite(losses))
            what = (
                f"the first non-finite loss, {losses[bad[0]]}, is at step {first + bad[0]} "
                f"(batch {begin + bad[0]} of epoch {epoch + 1})"
                if bad.size
                else "the losses were finite but the parameters came out non-finite "
                "(non-finite gradients, or an optimiser step that overflowed)"
            )
            last = first + len(losses) - 1
            steps = f"step {first}" if last == first else f"steps {first}-{last}"
            raise NonFiniteLossError(
                f"fit: a non-finite value in {steps}: {what}; "
                f"training stopped. The error's state is the state before step {first} and "
                f"its index_batches the batches of {steps}: train.find_nonfinite_step("
                "train.train_step(loss_fn, ...), error.state, train_data, "
                "error.index_batches) finds the first step whose loss or update is not finite",
                before,
                indices,
            )
        if self.nan_policy == "skip":
            for i in np.flatnonzero(~np.asarray(metrics["finite"])):
                what = (
                    "the gradients or the updated parameters are not finite"
                    if np.isfinite(losses[i])
                    else f"loss is {losses[i]}"
                )
                tqdm.write(
                    f"fit: {what} at step {first + i} (batch {begin + i} "
                    f"of epoch {epoch + 1}); update skipped",
                    file=sys.stderr,
                )
        bar.update(len(indices))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        return losses
