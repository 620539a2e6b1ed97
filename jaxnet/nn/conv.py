"""``torch.nn.Conv1d``, ``Conv2d`` and ``ConvTranspose2d`` in torch's layouts and init.

Weights are ``[out, in / groups, *kernel]`` (``[in, out / groups, *kernel]`` for the
transposed convolution), so a torch ``state_dict`` loads without transposes. The forward
passes are :mod:`jaxnet.nn.convolution`'s functions; an error there is re-raised
prefixed with the layer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxnet._checks import check_positive_int
from jaxnet.nn import convolution as C
from jaxnet.nn import init
from jaxnet.nn.module import Module, Parameter, Scope

IntOrTuple = int | Sequence[int]


def _ntuple(owner: str, name: str, value: IntOrTuple, n: int) -> tuple[int, ...]:
    values = (value,) * n if isinstance(value, int) else tuple(value)
    if len(values) != n:
        raise ValueError(f"{owner}: {name} must be an int or {n} ints, got {value!r}")
    return values


def _declare_weight_and_bias(
    layer: Module, shape: tuple[int, ...], out_channels: int, bias: bool, dtype: Any
) -> None:
    """torch's ``_ConvNd.reset_parameters``: weight ``kaiming_uniform(a=sqrt(5))`` and bias
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, with fan_in from the weight's shape."""
    fan_in, _ = init.fan_in_and_fan_out(shape)
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    layer.weight = Parameter(shape, functools.partial(init.kaiming_uniform, a=math.sqrt(5)), dtype)
    bias_init = functools.partial(init.uniform, a=-bound, b=bound)
    layer.bias = Parameter((out_channels,), bias_init, dtype) if bias else None


def _named(layer: Module, fn: Callable[..., jax.Array], *args: Any, **kwargs: Any) -> jax.Array:
    """``fn(*args, **kwargs)``, its ``ValueError`` prefixed with the layer's name."""
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        raise ValueError(f"{layer.short_name()}: {err}") from None


class _Conv(Module):
    """What every convolution layer shares: its sizes, checked as torch checks them, its
    weight and bias, and its name in messages."""

    def _declare(
        self,
        n: int,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple,
        dilation: IntOrTuple,
        groups: int,
    ) -> None:
        name = type(self).__name__
        check_positive_int(name, in_channels=in_channels, out_channels=out_channels, groups=groups)
        for what, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
            if channels % groups:
                raise ValueError(f"{name}: groups={groups} must divide {what}={channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _ntuple(name, "kernel_size", kernel_size, n)
        self.stride = _ntuple(name, "stride", stride, n)
        self.dilation = _ntuple(name, "dilation", dilation, n)
        self.groups = int(groups)

    def _bias(self, scope: Scope) -> jax.Array | None:
        return scope.bias if self.bias is not None else None

    def short_name(self) -> str:
        kernel = "x".join(map(str, self.kernel_size))
        return f"{type(self).__name__}({self.in_channels} -> {self.out_channels}, {kernel})"


class _ConvNd(_Conv):
    """Shared by :class:`Conv1d` and :class:`Conv2d` (``_n`` spatial dims)."""

    _n: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: str | IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype=jnp.float32,
    ):
        name = type(self).__name__
        self._declare(self._n, in_channels, out_channels, kernel_size, stride, dilation, groups)
        if padding_mode not in C.PADDING_MODES:
            raise ValueError(
                f"{name}: padding_mode must be one of {C.PADDING_MODES}, got {padding_mode!r}"
            )
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{name}: padding must be 'same', 'valid' or ints, got {padding!r}"
                )
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(
                    f"{name}: padding='same' is not supported for strided convolutions"
                )
            self.padding = padding
        else:
            self.padding = _ntuple(name, "padding", padding, self._n)
        self.padding_mode = padding_mode
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        _declare_weight_and_bias(self, shape, self.out_channels, bias, dtype)

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return _named(
            self, C.convolution, x, scope.weight, self._bias(scope), self.stride, self.padding,
            self.dilation, self.groups, self.padding_mode,
        )  # fmt: skip

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0,) * self._n:
            text += f", padding={self.padding}"
        if self.dilation != (1,) * self._n:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text


class Conv1d(_ConvNd):
    """1-d convolution of ``(N, C, L)`` inputs (``torch.nn.Conv1d``, same arguments,
    defaults, weight layout ``[out, in / groups, k]`` and default init)."""

    _n = 1


class Conv2d(_ConvNd):
    """2-d convolution of ``(N, C, H, W)`` inputs (``torch.nn.Conv2d``, same arguments,
    defaults, weight layout ``[out, in / groups, kH, kW]`` and default init). ``padding``
    is an int, a pair, ``'valid'`` or ``'same'`` (even kernels padded as torch pads them:
    the extra row and column after); ``padding_mode`` is ``'zeros'``, ``'reflect'``,
    ``'replicate'`` or ``'circular'``."""

    _n = 2


class ConvTranspose2d(_Conv):
    """2-d transposed convolution (``torch.nn.ConvTranspose2d``): weight
    ``[in, out / groups, kH, kW]``, torch's arguments, defaults and init."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrTuple = 1,
        dtype=jnp.float32,
    ):
        name = "ConvTranspose2d"
        self._declare(2, in_channels, out_channels, kernel_size, stride, dilation, groups)
        self.padding = _ntuple(name, "padding", padding, 2)
        self.output_padding = _ntuple(name, "output_padding", output_padding, 2)
        shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        _declare_weight_and_bias(self, shape, self.out_channels, bias, dtype)

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return _named(
            self, C.conv_transpose2d, x, scope.weight, self._bias(scope), self.stride,
            self.padding, self.output_padding, self.groups, self.dilation,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
