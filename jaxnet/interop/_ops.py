"""The ``torch`` functions and ``Tensor`` methods a traced forward may call, as JAX functions.

:func:`functions` maps each supported ``call_function`` target of a ``torch.fx`` graph
(``operator.add``, ``torch.cat``, ``torch.nn.functional.relu`` ...) to a function of JAX
arrays with torch's signature and numbers; :func:`methods` does the same for
``call_method`` targets (``x.view(...)``, ``x.mean(...)``, ``x.size(...)``). Torch
broadcasts arrays of different ranks implicitly; these functions add the leading unit axes
themselves, so they also run under ``jax_numpy_rank_promotion='raise'``.

A function that needs the layer's view of the pass (dropout: the mode and a PRNG key)
is wrapped in :class:`Scoped` and receives the :class:`jaxnet.nn.Scope` first.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxnet.nn import convolution as C
from jaxnet.nn import functional as F


class Scoped:
    """An op that takes the calling layer's :class:`jaxnet.nn.Scope` as its first argument."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def __call__(self, scope: Any, *args: Any, **kwargs: Any) -> Any:
        return self.fn(scope, *args, **kwargs)


# --------------------------------------------------------------- shape helpers


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | jnp.ndarray) or hasattr(x, "__jax_array__")


def _aligned(*xs: Any) -> list[Any]:
    """Arrays given leading unit axes up to the largest rank (torch's implicit broadcast);
    Python scalars unchanged."""
    rank = max((jnp.ndim(x) for x in xs if _is_array(x)), default=0)
    return [jnp.reshape(x, (1,) * (rank - x.ndim) + x.shape) if _is_array(x) else x for x in xs]


def _binary(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    @functools.wraps(fn)
    def op(a: Any, b: Any) -> Any:
        return fn(*_aligned(a, b))

    return op


def _shape_args(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """``view(2, -1)`` and ``view((2, -1))`` alike."""
    if len(shape) == 1 and isinstance(shape[0], Sequence):
        return tuple(shape[0])
    return tuple(shape)


def _dims(dim: Any) -> Any:
    return tuple(dim) if isinstance(dim, Sequence) else dim


def _flatten(input: jax.Array, start_dim: int = 0, end_dim: int = -1) -> jax.Array:
    shape = jnp.shape(input)
    if not shape:
        return jnp.reshape(input, (1,))
    start, end = start_dim % len(shape), end_dim % len(shape)
    return jnp.reshape(input, (*shape[:start], -1, *shape[end + 1 :]))


def _size(input: jax.Array, dim: int | None = None) -> Any:
    shape = tuple(jnp.shape(input))
    return shape if dim is None else shape[dim]


def _squeeze(input: jax.Array, dim: Any = None) -> jax.Array:
    """torch's squeeze: a named dim whose size is not 1 is left alone (jnp raises)."""
    if dim is None:
        return jnp.squeeze(input)
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    keep = tuple(d % input.ndim for d in dims if input.shape[d] == 1)
    return jnp.squeeze(input, keep) if keep else input


def _reduce(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    def op(input: jax.Array, dim: Any = None, keepdim: bool = False, *, dtype: Any = None):
        if dtype is not None:
            raise TypeError("the dtype argument of torch reductions is not supported")
        return fn(input, axis=_dims(dim), keepdims=keepdim)

    return op


def _transpose(input: jax.Array, dim0: int, dim1: int) -> jax.Array:
    return jnp.swapaxes(input, dim0, dim1)


def _permute(input: jax.Array, *dims: Any) -> jax.Array:
    return jnp.transpose(input, _shape_args(dims))


def _cat(tensors: Sequence[jax.Array], dim: int = 0) -> jax.Array:
    return jnp.concatenate(list(tensors), axis=dim)


def _stack(tensors: Sequence[jax.Array], dim: int = 0) -> jax.Array:
    return jnp.stack(list(tensors), axis=dim)


def _add(input: Any, other: Any, *, alpha: float = 1) -> Any:
    return operator.add(*_aligned(input, other if alpha == 1 else alpha * other))


def _sub(input: Any, other: Any, *, alpha: float = 1) -> Any:
    return operator.sub(*_aligned(input, other if alpha == 1 else alpha * other))


def _div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Any:
    a, b = _aligned(input, other)
    if rounding_mode is None:
        return a / b
    if rounding_mode == "floor":
        return jnp.floor_divide(a, b)
    return jnp.trunc(a / b)


def _clamp(input: jax.Array, min: Any = None, max: Any = None) -> jax.Array:
    return jnp.clip(input, min, max)


def _softmax(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    def op(input: jax.Array, dim: int, _stacklevel: int = 3, dtype: Any = None) -> jax.Array:
        if dtype is not None:
            raise TypeError("the dtype argument of softmax is not supported")
        return fn(input, dim)

    return op


def _linear(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    y = input @ weight.T
    return y if bias is None else _add(y, bias)


def _max_pool2d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    if return_indices:
        raise ValueError("max_pool2d: return_indices=True is not supported")
    return C.max_pool2d(input, kernel_size, stride or None, padding, dilation, ceil_mode)


def _adaptive_max_pool2d(input, output_size, return_indices=False):
    if return_indices:
        raise ValueError("adaptive_max_pool2d: return_indices=True is not supported")
    return C.adaptive_max_pool2d(input, output_size)


def _layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    return F.layer_norm(input, tuple(normalized_shape), weight, bias, eps)


def _dropout(fn: Callable[..., jax.Array]) -> Scoped:
    """torch's ``F.dropout(x, p, training)``: random only when ``training`` is true (its
    default); the mask's key comes from the layer's scope."""

    def op(scope, input, p=0.5, training=True, inplace=False):
        if not training or p == 0:
            return input
        return fn(input, p, training=True, key=scope.rng())

    return Scoped(op)


# ``x.shape``, ``x.ndim``, ``x.T``, ``x.mT`` and ``x.data`` (detached, as in torch).
ATTRIBUTES: dict[str, Callable[[Any], Any]] = {
    "data": jax.lax.stop_gradient,
    "shape": lambda x: tuple(jnp.shape(x)),
    "ndim": jnp.ndim,
    "T": jnp.transpose,
    "mT": lambda x: jnp.swapaxes(x, -1, -2),
}


def _getattr(obj: Any, name: str) -> Any:
    """A tensor attribute read in a traced forward (one of :data:`ATTRIBUTES`)."""
    return ATTRIBUTES[name](obj)


def _identity(input: Any, *args: Any, **kwargs: Any) -> Any:
    return input


def _expand(input: jax.Array, *sizes: Any) -> jax.Array:
    """torch's ``expand``: new leading dims, ``-1`` keeps a size."""
    sizes = _shape_args(sizes)
    x = jnp.reshape(input, (1,) * (len(sizes) - input.ndim) + input.shape)
    shape = tuple(n if s == -1 else s for s, n in zip(sizes, x.shape, strict=True))
    return jnp.broadcast_to(x, shape)


_ELEMENTWISE = {
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "exp": jnp.exp,
    "log": jnp.log,
    "sqrt": jnp.sqrt,
    "rsqrt": jax.lax.rsqrt,
    "abs": jnp.abs,
    "neg": jnp.negative,
    "sin": jnp.sin,
    "cos": jnp.cos,
}
_ARITHMETIC = {
    "add": _add,
    "sub": _sub,
    "mul": _binary(jnp.multiply),
    "div": _div,
    "pow": _binary(jnp.power),
    "matmul": jnp.matmul,
    "maximum": _binary(jnp.maximum),
    "minimum": _binary(jnp.minimum),
}
_SHAPE = {
    "flatten": _flatten,
    "transpose": _transpose,
    "permute": _permute,
    "unsqueeze": jnp.expand_dims,
    "squeeze": _squeeze,
    "mean": _reduce(jnp.mean),
    "sum": _reduce(jnp.sum),
    "amax": _reduce(jnp.max),
    "amin": _reduce(jnp.min),
    "softmax": _softmax(F.softmax),
    "log_softmax": _softmax(F.log_softmax),
    "clamp": _clamp,
}


@functools.cache
def functions() -> dict[Any, Callable[..., Any]]:
    """Supported ``call_function`` targets (torch objects) -> JAX implementations."""
    import torch
    import torch.nn.functional as tF

    table: dict[Any, Callable[..., Any]] = {
        operator.add: _binary(operator.add),
        operator.sub: _binary(operator.sub),
        operator.mul: _binary(operator.mul),
        operator.truediv: _binary(operator.truediv),
        operator.floordiv: _binary(operator.floordiv),
        operator.pow: _binary(operator.pow),
        operator.matmul: jnp.matmul,
        operator.neg: operator.neg,
        operator.getitem: operator.getitem,
        getattr: _getattr,
        torch.cat: _cat,
        torch.concat: _cat,
        torch.stack: _stack,
        torch.reshape: lambda input, shape: jnp.reshape(input, tuple(shape)),
        torch.mm: jnp.matmul,
        torch.bmm: jnp.matmul,
        torch.where: jnp.where,
        tF.relu: lambda input, inplace=False: F.relu(input),
        tF.gelu: lambda input, approximate="none": F.gelu(input, approximate),
        tF.silu: lambda input, inplace=False: F.silu(input),
        tF.leaky_relu: lambda input, negative_slope=0.01, inplace=False: F.leaky_relu(
            input, negative_slope
        ),
        tF.elu: lambda input, alpha=1.0, inplace=False: F.elu(input, alpha),
        tF.softmax: _softmax(F.softmax),
        tF.log_softmax: _softmax(F.log_softmax),
        tF.dropout: _dropout(F.dropout),
        tF.dropout2d: _dropout(F.dropout2d),
        tF.linear: _linear,
        tF.conv1d: C.conv1d,
        tF.conv2d: C.conv2d,
        tF.max_pool2d: _max_pool2d,
        tF.avg_pool2d: C.avg_pool2d,
        tF.adaptive_avg_pool2d: C.adaptive_avg_pool2d,
        tF.adaptive_max_pool2d: _adaptive_max_pool2d,
        tF.pad: lambda input, pad, mode="constant", value=None: C.pad(input, pad, mode, value),
        tF.layer_norm: _layer_norm,
    }
    for name, fn in {**_ELEMENTWISE, **_ARITHMETIC, **_SHAPE}.items():
        table[getattr(torch, name)] = fn
    for name in ("sigmoid", "tanh"):
        table[getattr(tF, name)] = _ELEMENTWISE[name]
    return table


@functools.cache
def methods() -> dict[str, Callable[..., Any]]:
    """Supported ``call_method`` names (``Tensor`` methods) -> JAX implementations."""
    return {
        **_ELEMENTWISE,
        **_ARITHMETIC,
        **_SHAPE,
        "view": lambda input, *shape: jnp.reshape(input, _shape_args(shape)),
        "reshape": lambda input, *shape: jnp.reshape(input, _shape_args(shape)),
        "view_as": lambda input, other: jnp.reshape(input, jnp.shape(other)),
        "reshape_as": lambda input, other: jnp.reshape(input, jnp.shape(other)),
        "expand": _expand,
        "expand_as": lambda input, other: _expand(input, *jnp.shape(other)),
        "size": _size,
        "dim": jnp.ndim,
        "numel": lambda input: math.prod(jnp.shape(input)),
        "t": lambda input: jnp.transpose(input),
        "contiguous": _identity,
        "clone": _identity,
        "detach": lambda input: jax.lax.stop_gradient(input),
    }
