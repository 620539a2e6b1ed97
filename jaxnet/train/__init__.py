"""Compiled training: a pure train step, the loop over it, ``evaluate`` and ``fit``.

PyTorch equivalent: the hand-written loop ::

    for x, y in loader:
        loss = criterion(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()

One job a module:

- :mod:`~jaxnet.train.state`: :class:`TrainState` (params, buffers, optimiser and its
  state, counters, key), :func:`step_key` and :func:`epoch_batch_order`.
- :mod:`~jaxnet.train.step`: :func:`train_step`, the pure ``(state, batch) -> (state,
  metrics)``, and :func:`train_loop`, the ``lax.scan`` of it over index batches that
  gathers each batch from the device-resident data set. Neither is compiled:
  ``jax.jit(..., donate_argnums=0)`` compiles them, ``jax.vmap`` trains an ensemble.
- :mod:`~jaxnet.train.evaluate`: :func:`evaluate`, means of per-example metrics.
- :mod:`~jaxnet.train.fit`: :func:`fit`, epochs with progress, evaluation and the NaN
  policy, on top of the three above.
- :mod:`~jaxnet.train.nonfinite`: :class:`NonFiniteLossError` and the debugging helper
  :func:`find_nonfinite_step`.
"""

from jaxnet.train.evaluate import evaluate as evaluate
from jaxnet.train.fit import fit as fit
from jaxnet.train.nonfinite import NonFiniteLossError as NonFiniteLossError
from jaxnet.train.nonfinite import NonFiniteStep as NonFiniteStep
from jaxnet.train.nonfinite import find_nonfinite_step as find_nonfinite_step
from jaxnet.train.state import TrainState as TrainState
from jaxnet.train.state import epoch_batch_order as epoch_batch_order
from jaxnet.train.state import step_key as step_key
from jaxnet.train.step import NAN_POLICIES as NAN_POLICIES
from jaxnet.train.step import train_loop as train_loop
from jaxnet.train.step import train_step as train_step
