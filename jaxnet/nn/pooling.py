"""Pooling, padding and reshaping layers for images: ``torch.nn.MaxPool2d``,
``AvgPool2d``, ``AdaptiveAvgPool2d``, ``AdaptiveMaxPool2d``, ``ZeroPad2d`` and ``Unflatten``:
each applying its :mod:`jaxnet.nn.convolution` form with the arguments given at
construction."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxnet._checks import check_positive_int
from jaxnet.nn import convolution as C
from jaxnet.nn.conv import IntOrTuple, _named
from jaxnet.nn.module import Module, Scope


class MaxPool2d(Module):
    """The maximum over each window (``torch.nn.MaxPool2d``); ``stride`` defaults to
    ``kernel_size``. ``return_indices`` is not supported."""

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ):
        if return_indices:
            raise ValueError("MaxPool2d: return_indices=True is not supported")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return _named(
            self, C.max_pool2d, x, self.kernel_size, self.stride, self.padding, self.dilation,
            self.ceil_mode,
        )  # fmt: skip

    def extra_repr(self) -> str:
        stride = self.kernel_size if self.stride is None else self.stride
        return (
            f"kernel_size={self.kernel_size}, stride={stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    """The mean over each window (``torch.nn.AvgPool2d``), with ``count_include_pad``,
    ``ceil_mode`` and ``divisor_override``."""

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return _named(
            self, C.avg_pool2d, x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
            self.count_include_pad, self.divisor_override,
        )  # fmt: skip

    def extra_repr(self) -> str:
        stride = self.kernel_size if self.stride is None else self.stride
        return f"kernel_size={self.kernel_size}, stride={stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Means over torch's adaptive windows to ``output_size`` (``torch.nn.AdaptiveAvgPool2d``),
    any size, also one that does not divide the input."""

    def __init__(self, output_size: int | Sequence[int | None]):
        self.output_size = output_size

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return _named(self, C.adaptive_avg_pool2d, x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(AdaptiveAvgPool2d):
    """Maxima over torch's adaptive windows (``torch.nn.AdaptiveMaxPool2d``)."""

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return _named(self, C.adaptive_max_pool2d, x, self.output_size)


class ZeroPad2d(Module):
    """Zero padding of the last two dims (``torch.nn.ZeroPad2d``): an int, or
    ``(left, right, top, bottom)``."""

    def __init__(self, padding: IntOrTuple):
        self.padding = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        if len(self.padding) != 4:
            raise ValueError(f"ZeroPad2d: padding must be an int or 4 ints, got {padding!r}")

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return _named(self, C.pad, x, self.padding, "constant", 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class Unflatten(Module):
    """Splits dim ``dim`` into ``unflattened_size`` (``torch.nn.Unflatten``)."""

    def __init__(self, dim: int, unflattened_size: Sequence[int]):
        check_positive_int(
            "Unflatten", **{f"unflattened_size[{i}]": n for i, n in enumerate(unflattened_size)}
        )
        self.dim = dim
        self.unflattened_size = tuple(int(n) for n in unflattened_size)

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        shape = jnp.shape(x)
        if not -len(shape) <= self.dim < len(shape):
            raise ValueError(f"{self!r}: dim {self.dim} is out of range for shape {shape}")
        dim = self.dim % len(shape)
        size = 1
        for n in self.unflattened_size:
            size *= n
        if shape[dim] != size:
            raise ValueError(
                f"{self!r}: dim {self.dim} of shape {tuple(shape)} has {shape[dim]} elements, "
                f"unflattened_size {self.unflattened_size} needs {size}"
            )
        return jnp.reshape(x, (*shape[:dim], *self.unflattened_size, *shape[dim + 1 :]))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
