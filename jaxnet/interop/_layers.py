"""The layer tables: each supported ``torch.nn`` layer class with the jaxnet constructor
reading its attributes, and the inverse (each jaxnet layer class with the torch
constructor reading its attributes).

A torch layer converts when its class, or the first table class in its MRO whose
``forward`` it does not override, is in :func:`torch_to_jaxnet`. Containers
(``Sequential``, ``ModuleList``, ``ModuleDict``) are handled by the converters, not here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from jaxnet import nn

_DTYPES = ("float16", "bfloat16", "float32", "float64")


def jax_dtype(torch_dtype: Any) -> Any:
    """The JAX dtype of a torch floating dtype (``torch.float32`` -> ``jnp.float32``)."""
    name = str(torch_dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise TypeError(f"parameters of dtype {torch_dtype} are not supported (only {_DTYPES})")
    return jnp.dtype(name)


def torch_dtype(dtype: Any) -> Any:
    """The torch dtype of a JAX floating dtype."""
    import torch

    return getattr(torch, jnp.dtype(dtype).name)


def _dtype(module: Any) -> dict[str, Any]:
    """``dtype=`` for a layer with parameters (the dtype of its first one)."""
    first = next(module.parameters(recurse=False), None)
    return {} if first is None else {"dtype": jax_dtype(first.dtype)}


def _conv(cls: type, m: Any) -> nn.Module:
    padding = m.padding if isinstance(m.padding, str) else tuple(m.padding)
    return cls(
        m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride), padding,
        tuple(m.dilation), m.groups, m.bias is not None, m.padding_mode, **_dtype(m),
    )  # fmt: skip


def _conv_transpose(m: Any) -> nn.Module:
    if m.padding_mode != "zeros":
        raise ValueError(f"padding_mode={m.padding_mode!r} is not supported")
    return nn.ConvTranspose2d(
        m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride), tuple(m.padding),
        tuple(m.output_padding), m.groups, m.bias is not None, tuple(m.dilation), **_dtype(m),
    )  # fmt: skip


def _batch_norm(cls: type, m: Any) -> nn.Module:
    dtype = _dtype(m)
    if not dtype and m.running_mean is not None:
        dtype = {"dtype": jax_dtype(m.running_mean.dtype)}
    return cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, **dtype)


def _softmax(cls: type, m: Any) -> nn.Module:
    if m.dim is None:
        raise ValueError("dim=None (torch's implicit dimension) is not supported: set dim")
    return cls(m.dim)


def _no_indices(cls: type, m: Any, *args: Any) -> nn.Module:
    if m.return_indices:
        raise ValueError("return_indices=True is not supported")
    return cls(*args)


@functools.cache
def torch_to_jaxnet() -> dict[type, Callable[[Any], nn.Module]]:
    """torch layer class -> a function of the torch layer making the jaxnet layer."""
    import torch.nn as tnn

    def tuple_or_int(value: Any) -> Any:
        return value if isinstance(value, int) or value is None else tuple(value)

    return {
        tnn.Linear: lambda m: nn.Linear(
            m.in_features, m.out_features, m.bias is not None, **_dtype(m)
        ),
        tnn.Identity: lambda m: nn.Identity(),
        tnn.Flatten: lambda m: nn.Flatten(m.start_dim, m.end_dim),
        tnn.Unflatten: lambda m: nn.Unflatten(m.dim, tuple(m.unflattened_size)),
        tnn.ReLU: lambda m: nn.ReLU(),
        tnn.Sigmoid: lambda m: nn.Sigmoid(),
        tnn.Tanh: lambda m: nn.Tanh(),
        tnn.SiLU: lambda m: nn.SiLU(),
        tnn.GELU: lambda m: nn.GELU(m.approximate),
        tnn.LeakyReLU: lambda m: nn.LeakyReLU(m.negative_slope),
        tnn.ELU: lambda m: nn.ELU(m.alpha),
        tnn.Softmax: functools.partial(_softmax, nn.Softmax),
        tnn.LogSoftmax: functools.partial(_softmax, nn.LogSoftmax),
        tnn.Dropout: lambda m: nn.Dropout(m.p),
        tnn.Dropout2d: lambda m: nn.Dropout2d(m.p),
        tnn.BatchNorm1d: functools.partial(_batch_norm, nn.BatchNorm1d),
        tnn.BatchNorm2d: functools.partial(_batch_norm, nn.BatchNorm2d),
        tnn.LayerNorm: lambda m: nn.LayerNorm(
            tuple(m.normalized_shape),
            m.eps,
            m.elementwise_affine,
            m.bias is not None,
            **_dtype(m),
        ),
        tnn.Conv1d: functools.partial(_conv, nn.Conv1d),
        tnn.Conv2d: functools.partial(_conv, nn.Conv2d),
        tnn.ConvTranspose2d: _conv_transpose,
        tnn.MaxPool2d: lambda m: _no_indices(
            nn.MaxPool2d,
            m,
            tuple_or_int(m.kernel_size),
            tuple_or_int(m.stride),
            tuple_or_int(m.padding),
            tuple_or_int(m.dilation),
            False,
            m.ceil_mode,
        ),
        tnn.AvgPool2d: lambda m: nn.AvgPool2d(
            tuple_or_int(m.kernel_size),
            tuple_or_int(m.stride),
            tuple_or_int(m.padding),
            m.ceil_mode,
            m.count_include_pad,
            m.divisor_override,
        ),
        tnn.AdaptiveAvgPool2d: lambda m: nn.AdaptiveAvgPool2d(tuple_or_int(m.output_size)),
        tnn.AdaptiveMaxPool2d: lambda m: _no_indices(
            nn.AdaptiveMaxPool2d, m, tuple_or_int(m.output_size)
        ),
        tnn.ZeroPad2d: lambda m: nn.ZeroPad2d(tuple(m.padding)),
    }


def _torch_dtype_of(layer: nn.Module) -> dict[str, Any]:
    """``dtype=`` for the torch layer: the dtype of the jaxnet layer's first declaration."""
    from jaxnet.nn.module import Parameter

    first = next((e for e in layer._entries.values() if isinstance(e, Parameter)), None)
    return {} if first is None else {"dtype": torch_dtype(first.dtype)}


@functools.cache
def jaxnet_to_torch() -> dict[type, Callable[[Any], Any]]:
    """jaxnet layer class -> a function of the jaxnet layer making the torch layer."""
    import torch.nn as tnn

    def conv(cls: type) -> Callable[[Any], Any]:
        return lambda m: cls(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
            m.groups, m.bias is not None, m.padding_mode, **_torch_dtype_of(m),
        )  # fmt: skip

    def batch_norm(cls: type) -> Callable[[Any], Any]:
        return lambda m: cls(
            m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
            **_torch_dtype_of(m),
        )  # fmt: skip

    return {
        nn.Linear: lambda m: tnn.Linear(
            m.in_features, m.out_features, m.bias is not None, **_torch_dtype_of(m)
        ),
        nn.Identity: lambda m: tnn.Identity(),
        nn.Flatten: lambda m: tnn.Flatten(m.start_dim, m.end_dim),
        nn.Unflatten: lambda m: tnn.Unflatten(m.dim, m.unflattened_size),
        nn.ReLU: lambda m: tnn.ReLU(),
        nn.Sigmoid: lambda m: tnn.Sigmoid(),
        nn.Tanh: lambda m: tnn.Tanh(),
        nn.SiLU: lambda m: tnn.SiLU(),
        nn.GELU: lambda m: tnn.GELU(m.approximate),
        nn.LeakyReLU: lambda m: tnn.LeakyReLU(m.negative_slope),
        nn.ELU: lambda m: tnn.ELU(m.alpha),
        nn.Softmax: lambda m: tnn.Softmax(m.dim),
        nn.LogSoftmax: lambda m: tnn.LogSoftmax(m.dim),
        nn.Dropout: lambda m: tnn.Dropout(m.p),
        nn.Dropout2d: lambda m: tnn.Dropout2d(m.p),
        nn.BatchNorm1d: batch_norm(tnn.BatchNorm1d),
        nn.BatchNorm2d: batch_norm(tnn.BatchNorm2d),
        nn.LayerNorm: lambda m: tnn.LayerNorm(
            m.normalized_shape,
            m.eps,
            m.elementwise_affine,
            "bias" in m._entries,
            **_torch_dtype_of(m),
        ),
        nn.Conv1d: conv(tnn.Conv1d),
        nn.Conv2d: conv(tnn.Conv2d),
        nn.ConvTranspose2d: lambda m: tnn.ConvTranspose2d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            m.output_padding,
            m.groups,
            m.bias is not None,
            m.dilation,
            **_torch_dtype_of(m),
        ),
        nn.MaxPool2d: lambda m: tnn.MaxPool2d(
            m.kernel_size, m.stride, m.padding, m.dilation, False, m.ceil_mode
        ),
        nn.AvgPool2d: lambda m: tnn.AvgPool2d(
            m.kernel_size,
            m.stride,
            m.padding,
            m.ceil_mode,
            m.count_include_pad,
            m.divisor_override,
        ),
        nn.AdaptiveAvgPool2d: lambda m: tnn.AdaptiveAvgPool2d(m.output_size),
        nn.AdaptiveMaxPool2d: lambda m: tnn.AdaptiveMaxPool2d(m.output_size),
        nn.ZeroPad2d: lambda m: tnn.ZeroPad2d(m.padding),
    }


def lookup(table: dict[type, Any], obj: Any, base: type) -> Any:
    """The table entry of ``obj``'s class, or of the first class in its MRO (below
    ``base``) whose ``forward`` it inherits unchanged; ``None`` if there is none."""
    for cls in type(obj).__mro__:
        if cls is base:
            return None
        if cls in table:
            return table[cls] if type(obj).forward is cls.forward else None
    return None


class NamedSequential(nn.Sequential):
    """A :class:`jaxnet.nn.Sequential` whose children have names other than ``"0"``,
    ``"1"``, … (``torch.nn.Sequential(OrderedDict(...))``)."""

    def __init__(self, layers: dict[str, nn.Module]):
        for name, layer in layers.items():
            setattr(self, name, layer)

    def __repr__(self) -> str:
        return nn.Module.__repr__(self)
