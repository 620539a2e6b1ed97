"""What happens when training meets a NaN or an inf: the error :func:`~jaxnet.train.fit`
raises, and a debugging helper that replays the failed call one step at a time to find
the step.

PyTorch has no counterpart: a torch loop trains on through NaN unless it checks
``torch.isfinite(loss)`` itself (``torch.autograd.detect_anomaly`` finds NaN gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxnet.train.state import TrainState
from jaxnet.train.step import all_finite, train_loop


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or inf loss or parameter; ``state`` holds the last finite state.

    :func:`~jaxnet.train.fit` checks after each compiled call, so ``state`` is the state
    before the call that went wrong and ``index_batches`` the ``(steps, B)`` batches that
    call trained on; :func:`find_nonfinite_step` replays them to name the step.
    """

    def __init__(self, message: str, state: TrainState, index_batches: Any = None):
        super().__init__(message)
        self.state = state
        self.index_batches = index_batches


class NonFiniteStep(NamedTuple):
    """The first step of a replay whose loss or updated parameters are not finite: its
    position in the replayed ``index_batches``, the state before it, and its loss."""

    index: int
    state: TrainState
    loss: float


def find_nonfinite_step(
    step: Callable, state: TrainState, data: Any, index_batches: Any
) -> NonFiniteStep | None:
    """Replay ``index_batches`` from ``state`` one compiled step at a time, with ``step``
    (:func:`~jaxnet.train.train_step`, built as for the failed run), to the first step
    whose loss or updated parameters are not finite; ``None`` if none is.

    A debugging helper, for a :class:`NonFiniteLossError` from
    :func:`~jaxnet.train.fit`: ``find_nonfinite_step(train_step(loss_fn),
    error.state, train_data, error.index_batches)``. Training is deterministic, so the
    replay meets the same values. Nothing is donated: ``state`` stays readable, and
    the replay holds two states at a time.
    """
    loop = jax.jit(train_loop(step, unroll=True))
    index_batches = np.asarray(index_batches)
    for i in range(len(index_batches)):
        after, metrics = loop(state, data, index_batches[i : i + 1])
        loss = float(metrics["loss"][0])
        if not (np.isfinite(loss) and all_finite(after.params)):
            return NonFiniteStep(i, state, loss)
        state = after
    return None
