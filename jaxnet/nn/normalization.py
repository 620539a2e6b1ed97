"""``torch.nn.BatchNorm1d``, ``BatchNorm2d`` and ``LayerNorm``.

Batch normalisation is the layer with state: its running statistics are buffers, read
from and returned to ``apply(params, x, buffers=...)``; a training-mode pass returns
their new values, an eval-mode pass normalises with them.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxnet._checks import check_non_negative, check_positive_int
from jaxnet.nn import functional as F
from jaxnet.nn import init
from jaxnet.nn.module import Buffer, Module, Parameter, Scope


class _BatchNorm(Module):
    """Shared by :class:`BatchNorm1d` and :class:`BatchNorm2d`, which differ in the ranks
    they take (``_ranks``, ``_layout``)."""

    _ranks: tuple[int, ...]
    _layout: str

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype=jnp.float32,
    ):
        name = type(self).__name__
        check_positive_int(name, num_features=num_features)
        check_non_negative(name, eps=eps)
        if momentum is not None:
            check_non_negative(name, momentum=momentum)
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        shape = (self.num_features,)
        if affine:
            self.weight = Parameter(shape, init.ones, dtype)
            self.bias = Parameter(shape, init.zeros, dtype)
        if track_running_stats:
            self.running_mean = Buffer(shape, init.zeros, dtype)
            self.running_var = Buffer(shape, init.ones, dtype)
            self.num_batches_tracked = Buffer((), init.zeros, jnp.int64)

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        shape = jnp.shape(x)
        if len(shape) not in self._ranks or shape[1] != self.num_features:
            raise ValueError(
                f"{self.short_name()} expected input {self._layout} with "
                f"C = {self.num_features}, got shape {tuple(shape)}"
            )
        affine = (scope.weight, scope.bias) if self.affine else (None, None)
        tracked = self.track_running_stats
        stats = (scope.running_mean, scope.running_var) if tracked else (None, None)
        # As torch: without running statistics, eval mode normalises with the batch's too.
        batch_stats = scope.training or not tracked
        out = F.batch_norm(
            x,
            *stats,
            *affine,
            training=batch_stats,
            momentum=self.momentum,
            eps=self.eps,
            num_batches_tracked=scope.num_batches_tracked if tracked else None,
        )
        if scope.training and tracked:
            scope.update(
                running_mean=out.running_mean,
                running_var=out.running_var,
                num_batches_tracked=out.num_batches_tracked,
            )
        return out.output

    def short_name(self) -> str:
        return f"{type(self).__name__}({self.num_features})"

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` inputs (``torch.nn.BatchNorm1d``).

    Parameters ``weight`` (ones) and ``bias`` (zeros) when ``affine``; buffers
    ``running_mean`` (zeros), ``running_var`` (ones) and ``num_batches_tracked`` when
    ``track_running_stats``, under torch's names and in torch's order. Training mode
    normalises with the batch's biased variance and moves the running variance towards
    the unbiased one by ``momentum`` (``None``: a cumulative average); eval mode uses the
    running statistics. A training batch with one value per channel raises, as in torch.
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` inputs (``torch.nn.BatchNorm2d``); see
    :class:`BatchNorm1d`."""

    _ranks = (4,)
    _layout = "(N, C, H, W)"


class LayerNorm(Module):
    """Normalises each sample over its trailing ``normalized_shape`` dims
    (``torch.nn.LayerNorm``): ``weight`` (ones) and ``bias`` (zeros) of that shape when
    ``elementwise_affine`` (``bias=False`` drops the shift)."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype=jnp.float32,
    ):
        shape = (
            (normalized_shape,)
            if isinstance(normalized_shape, numbers.Integral)
            else tuple(normalized_shape)
        )
        check_positive_int(
            "LayerNorm", **{f"normalized_shape[{i}]": n for i, n in enumerate(shape)}
        )
        check_non_negative("LayerNorm", eps=eps)
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(self.normalized_shape, init.ones, dtype)
            if bias:
                self.bias = Parameter(self.normalized_shape, init.zeros, dtype)

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        entries = self._entries
        weight = scope.weight if "weight" in entries else None
        bias = scope.bias if "bias" in entries else None
        return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)

    def short_name(self) -> str:
        return f"LayerNorm({self.normalized_shape})"

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )
