"""Means of per-example metrics over a whole data set, compiled once per metric function.

PyTorch equivalent: the ``model.eval(); with torch.no_grad(): for x, y in test_loader:``
loop summing correct predictions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxnet._checks import check_positive_int
from jaxnet.datasets.batching import num_examples

EVAL_BATCH = 10_000


def evaluate(
    metric_fn: Callable,
    params: Any,
    data: Any,
    batch_size: int = EVAL_BATCH,
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
    compiled = compiled_metrics(metric_fn, buffers is not None)
    variables = (params, buffers)
    check_metrics("evaluate", compiled, variables, data, min(batch_size, n))
    return mean_metrics(compiled, variables, data, n, batch_size)


def mean_metrics(
    compiled_metric_fn: Callable, variables: Any, data: Any, n: int, batch_size: int = EVAL_BATCH
) -> dict[str, float]:
    """:func:`evaluate` on arguments already checked (``n`` examples in ``data``)."""
    totals: dict[str, float] = {}
    for start in range(0, n, batch_size):
        batch = jax.tree.map(lambda a, s=start: a[s : s + batch_size], data)
        for name, values in compiled_metric_fn(variables, batch).items():
            totals[name] = totals.get(name, 0.0) + float(jnp.sum(values))
    return {name: total / n for name, total in totals.items()}


def check_metrics(
    caller: str, metric_fn: Callable, variables: Any, data: Any, size: int
) -> list[str]:
    """``metric_fn`` on the first ``size`` examples of ``data`` returns a dict holding one
    value per example under each name (traced by ``jax.eval_shape``, nothing compiled);
    the names."""
    metrics = jax.eval_shape(metric_fn, variables, jax.tree.map(lambda a: a[:size], data))
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


@functools.lru_cache(maxsize=64)
def compiled_metrics(metric_fn: Callable, has_state: bool) -> Callable:
    """``metric_fn`` as one jitted function of ``((params, buffers), batch)``, one per
    function, so that evaluating every epoch compiles once."""
    if has_state:
        return jax.jit(lambda variables, batch: metric_fn(*variables, batch))
    return jax.jit(lambda variables, batch: metric_fn(variables[0], batch))
