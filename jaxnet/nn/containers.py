"""``torch.nn.Sequential`` and the :class:`MLP` built on it.

``ModuleList`` and ``ModuleDict`` live in :mod:`jaxnet.nn.module` beside the record they
are part of.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

from jaxnet.nn.activation import ReLU
from jaxnet.nn.linear import Linear
from jaxnet.nn.module import Module, Scope


class Sequential(Module):
    """Layers applied in order, children keyed ``"0"``, ``"1"``, … (``torch.nn.Sequential``).

    Parameter-free children take no entry in the params. The same layer object used at
    several positions is *tied*: its parameters are stored once, under its first
    position (where torch's ``named_parameters()`` lists them), every use reads them,
    and ``jax.grad`` therefore returns the sum of the gradients of all uses.
    """

    def __init__(self, *layers: Module):
        for i, layer in enumerate(layers):
            if isinstance(layer, type):
                raise TypeError(
                    f"{type(self).__name__}: child {i} is the class {layer.__name__}, not a "
                    f"layer: did you mean {layer.__name__}()?"
                )
            if not isinstance(layer, Module):
                raise TypeError(
                    f"{type(self).__name__}: child {i} ({type(layer).__name__}) is not a "
                    "jaxnet Module"
                )
            setattr(self, str(i), layer)

    @property
    def layers(self) -> tuple[Module, ...]:
        """The children by position, a tied layer at each of its positions."""
        return tuple(self._entries.values())

    def forward(self, scope: Scope, x: Any) -> Any:
        """Each child in turn; a child's error is re-raised prefixed with its position."""
        for i, layer in enumerate(self.layers):
            try:
                x = layer(scope, x)
            except (TypeError, ValueError) as err:
                where = f"{type(self).__name__}[{i}]"
                raise type(err)(f"{where}: {err}").with_traceback(err.__traceback__) from None
        return x

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self) -> str:
        lines = [f"  ({i}): " + repr(layer).replace("\n", "\n  ") for i, layer in enumerate(self)]
        return "Sequential(\n" + "\n".join(lines) + "\n)" if lines else "Sequential()"


class MLP(Sequential):
    """``Linear -> act -> ... -> Linear`` as a :class:`Sequential` with torch's keys.

    ``MLP(784, [256, 64], 10)`` equals
    ``nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(),
    nn.Linear(64, 10))``: parameters under ``"0"``, ``"2"``, ``"4"``. ``activation`` is
    called with no arguments once per hidden layer, so it is a layer class such as
    :class:`ReLU` (as ``activation_layer`` of ``torchvision.ops.MLP``), not a layer.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: Sequence[int],
        out_features: int,
        activation: Callable[[], Module] = ReLU,
        bias: bool = True,
        dtype=jnp.float32,
    ):
        if not isinstance(hidden_features, Sequence) or isinstance(hidden_features, str):
            raise TypeError(
                "MLP: hidden_features must be a sequence of widths, one per hidden layer "
                f"(e.g. [8]), got {type(hidden_features).__name__} {hidden_features!r}"
            )
        sizes = [in_features, *hidden_features, out_features]
        layers: list[Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(Linear(n_in, n_out, bias=bias, dtype=dtype))
            if i < len(sizes) - 2:
                layers.append(_make_activation(activation))
        super().__init__(*layers)


def _make_activation(activation: Callable[[], Module]) -> Module:
    try:
        layer = activation()
    except TypeError as err:
        raise TypeError(
            "MLP: activation must be a layer class such as nn.ReLU (or a function of no "
            f"arguments returning a layer), got {activation!r}: {err}"
        ) from None
    if not isinstance(layer, Module):
        raise TypeError(f"MLP: activation() must return a layer, got {type(layer).__name__}")
    return layer
