"""``torch.nn.Dropout`` and ``Dropout2d``: the layers whose forward pass takes a PRNG key."""

from __future__ import annotations

import jax

from jaxnet.nn import functional as F
from jaxnet.nn.module import Module, Scope


class Dropout(Module):
    """Zeroes each element with probability ``p`` in training mode and scales the rest by
    ``1 / (1 - p)``; the identity in eval mode (``torch.nn.Dropout``).

    Its mask comes from ``scope.rng()``: the key given to ``apply``, folded with this
    layer's path, so the same key gives the same masks and two Dropout layers draw
    different ones. ``apply(..., training=True)`` without a key raises.
    """

    _function = staticmethod(F.dropout)

    def __init__(self, p: float = 0.5):
        F.dropout(jax.numpy.zeros((1,)), p, training=False)  # refuses a bad p now
        self.p = p

    def forward(self, scope: Scope, x: jax.Array) -> jax.Array:
        if not scope.training or self.p == 0:
            return self._function(x, self.p, training=False)
        return self._function(x, self.p, training=True, key=scope.rng())

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Zeroes whole channels of ``(N, C, H, W)`` inputs with probability ``p`` in training
    mode, scaling the rest by ``1 / (1 - p)`` (``torch.nn.Dropout2d``); keys as
    :class:`Dropout`."""

    _function = staticmethod(F.dropout2d)
