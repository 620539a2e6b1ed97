"""Activation layers: ``torch.nn.ReLU``, ``GELU``, ``Softmax`` and friends.

Each is parameter-free and applies its :mod:`jaxnet.nn.functional` form with the
arguments given at construction.
"""

from __future__ import annotations

import jax

from jaxnet.nn import functional as F
from jaxnet.nn.module import Module, Scope


class ReLU(Module):
    """``max(x, 0)`` (``torch.nn.ReLU``); the gradient at 0 is 0, as in torch."""

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return F.relu(x)


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` (``torch.nn.Sigmoid``)."""

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return F.sigmoid(x)


class Tanh(Module):
    """Hyperbolic tangent (``torch.nn.Tanh``)."""

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return F.tanh(x)


class SiLU(Module):
    """``x * sigmoid(x)`` (``torch.nn.SiLU``)."""

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return F.silu(x)


class GELU(Module):
    """Gaussian error linear unit (``torch.nn.GELU``): exact with ``approximate='none'``
    (torch's default), the tanh approximation with ``'tanh'``."""

    def __init__(self, approximate: str = "none"):
        F.gelu(jax.numpy.zeros(()), approximate)  # refuses an unknown mode now
        self.approximate = approximate

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class LeakyReLU(Module):
    """``x`` where positive, ``negative_slope * x`` elsewhere (``torch.nn.LeakyReLU``)."""

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere (``torch.nn.ELU``)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return F.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Softmax(Module):
    """Softmax along ``dim`` (``torch.nn.Softmax``); ``dim`` is required."""

    def __init__(self, dim: int):
        self.dim = dim

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """Log of the softmax along ``dim`` (``torch.nn.LogSoftmax``), computed stably."""

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        return F.log_softmax(x, self.dim)
