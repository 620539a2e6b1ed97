"""``torch.nn.Linear``, ``Identity``, ``Flatten`` and ``Lambda``."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxnet._checks import check_non_negative_int
from jaxnet.nn import init
from jaxnet.nn.module import Module, Parameter, Scope


class Linear(Module):
    """``y = x W^T + b`` with ``W: [out_features, in_features]`` (``torch.nn.Linear``).

    Default init is torch's: weight and bias both ``U(-1/sqrt(in), 1/sqrt(in))``
    (torch's ``kaiming_uniform_(a=sqrt(5))`` works out to that bound).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=jnp.float32):
        check_non_negative_int("Linear", in_features=in_features, out_features=out_features)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        weight_init = functools.partial(init.kaiming_uniform, a=math.sqrt(5))
        self.weight = Parameter((self.out_features, self.in_features), weight_init, dtype)
        bias_init = functools.partial(init.uniform, a=-bound, b=bound)
        self.bias = Parameter((self.out_features,), bias_init, dtype) if bias else None

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.in_features:
            raise ValueError(
                f"{self.short_name()} expected input [..., {self.in_features}], "
                f"got shape {tuple(jnp.shape(x))}"
            )
        if jnp.iscomplexobj(x) or not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise TypeError(
                f"{self.short_name()} expected a floating input (as torch), got "
                f"{jnp.result_type(x)}"
            )
        y = x @ scope.weight.T
        if self.bias is not None:
            y = y + jnp.expand_dims(scope.bias, range(y.ndim - 1))  # (1.., out)
        return y

    def short_name(self) -> str:
        return f"Linear({self.in_features} -> {self.out_features})"

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Identity(Module):
    """Returns its input unchanged (``torch.nn.Identity``)."""

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return x


class Flatten(Module):
    """Flattens dims ``start_dim..end_dim`` into one (``torch.nn.Flatten``, same defaults)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        shape = jnp.shape(x)
        ndim = max(len(shape), 1)
        start = self.start_dim % ndim if -ndim <= self.start_dim < ndim else None
        end = self.end_dim % ndim if -ndim <= self.end_dim < ndim else None
        if start is None or end is None or start > end:
            raise ValueError(
                f"{self!r} cannot flatten an input of shape {tuple(shape)} "
                f"(dims out of range or start after end)"
            )
        return jnp.reshape(x, (*shape[:start], -1, *shape[end + 1 :]) if shape else (1,))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Lambda(Module):
    """A parameter-free custom layer from a function of the input.

    PyTorch has no ``nn.Lambda``; this is the one-line ``nn.Module`` subclass whose
    ``forward`` calls ``fn``: ``Lambda(lambda x: x - x.mean(), name="CenteredLayer")``.
    """

    def __init__(self, fn: Callable[[jax.Array], jax.Array], name: str | None = None):
        if not callable(fn):
            raise TypeError(f"Lambda expects a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "fn")

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return self.fn(x)

    def __repr__(self) -> str:
        return f"Lambda({self.name})"
