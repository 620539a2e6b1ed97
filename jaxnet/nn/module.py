"""The layer protocol: an immutable description with pure ``init`` and ``apply``.

PyTorch equivalent: ``torch.nn.Module``. Where a torch module owns its tensors and
mutates them, a jaxnet layer only *describes* a computation: ``init(key)`` returns a
fresh parameter pytree (nested dicts of arrays keyed by torch's names) and
``apply(params, x)`` computes the output from explicit parameters. Nothing is stored
on the layer after construction, so layers are hashable by identity and can be
closed over by ``jax.jit``.

Any object with ``init(key) -> params`` and ``apply(params, x) -> y`` works as a layer
inside :class:`~jaxnet.nn.Sequential`; subclassing :class:`Module` only adds the
conveniences below (``named_modules`` and immutability).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax

Params = dict[str, Any]


class Module:
    """Base class of jaxnet layers (``torch.nn.Module``, without the state).

    Subclasses set their hyperparameters as attributes in ``__init__`` and implement
    ``apply``; parameterised layers also implement ``init``. Once the constructor
    returns, the layer is frozen: assigning an attribute raises ``AttributeError``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        constructor = cls.__dict__["__init__"]

        @functools.wraps(constructor)
        def __init__(self, *args: Any, **kw: Any) -> None:
            constructor(self, *args, **kw)
            if type(self).__init__ is __init__:  # the outermost constructor has finished
                object.__setattr__(self, "_frozen", True)

        cls.__init__ = __init__

    def init(self, key: jax.Array) -> Params:
        """Fresh parameters for this layer; parameter-free layers return ``{}``."""
        del key
        return {}

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """The forward pass, a pure function of ``params`` and ``x``."""
        raise NotImplementedError(f"{type(self).__name__} does not define apply")

    def children(self) -> Iterator[tuple[str, Any]]:
        """Direct sub-layers as ``(name, layer)``; leaf layers have none."""
        return iter(())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Every layer of the tree with its dotted path, as ``torch.nn.Module.named_modules``.

        A layer used at several positions (tied) is listed once, at its first position,
        which is also where its parameters live.
        """
        seen: set[int] = set()
        yield from _named_modules(self, prefix, seen)

    def __setattr__(self, name: str, value: Any) -> None:
        if not getattr(self, "_frozen", False):
            object.__setattr__(self, name, value)
            return
        raise AttributeError(
            f"{type(self).__name__} is immutable: parameters live in the params pytree, "
            "hyperparameters are fixed at construction"
        )


def _named_modules(layer: Any, prefix: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
    if id(layer) in seen:
        return
    seen.add(id(layer))
    yield prefix, layer
    children = layer.children() if hasattr(layer, "children") else ()
    for name, child in children:
        yield from _named_modules(child, f"{prefix}.{name}" if prefix else name, seen)
