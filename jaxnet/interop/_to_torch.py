"""``jaxnet.to_torch``: a jaxnet model of jaxnet layers as a ``torch.nn.Module``, loaded.

Each layer of the inverse table (:func:`jaxnet.interop._layers.jaxnet_to_torch`) becomes
the torch layer built from its attributes; ``Sequential`` (and ``MLP``), ``ModuleList``
and ``ModuleDict`` become torch's containers; a layer made by :func:`jaxnet.from_torch`
from a traced torch module becomes a ``torch.fx.GraphModule`` running the same graph. A
layer with a hand-written ``forward`` cannot be translated (jaxnet does not read Python
code); every such layer is named in one ``TypeError``.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from jaxnet import nn
from jaxnet.interop import _graph, _layers
from jaxnet.nn.module import Buffer, Module, Parameter, Params


def to_torch(model: Module, params: Params, buffers: Params | None = None) -> Any:
    """A ``torch.nn.Module`` equivalent to ``model``, holding ``params`` and ``buffers``.

    Its ``state_dict()`` equals ``model.state_dict(params, buffers)`` (same keys, order and
    values); a tied jaxnet layer is one torch module at each of its positions. The torch
    module is in training mode (torch's default).
    """
    import torch

    if not isinstance(model, Module):
        raise TypeError(f"to_torch expects a jaxnet Module, got {type(model).__name__}")
    builder = _Builder()
    module = builder.build(model, "")
    if builder.problems:
        lines = "\n".join(f"  - {p}" for p in builder.problems)
        raise TypeError(f"to_torch cannot convert {model.short_name()}:\n{lines}")
    state = {key: _tensor(value) for key, value in model.state_dict(params, buffers).items()}
    module.load_state_dict(state, strict=True)
    return module.train(True) if isinstance(module, torch.nn.Module) else module


def _tensor(array: np.ndarray) -> Any:
    """A torch tensor with ``array``'s dtype and values (bfloat16 bit for bit)."""
    import torch

    array = np.asarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


class _Builder:
    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}
        self.problems: list[str] = []

    def build(self, layer: Module, path: str) -> Any:
        if id(layer) not in self.memo:
            self.memo[id(layer)] = self._build(layer, path)
        return self.memo[id(layer)]

    def _children(self, layer: Module, path: str) -> dict[str, Any]:
        return {
            name: self.build(child, f"{path}.{name}" if path else name)
            for name, child in layer.named_children()
        }

    def _build(self, layer: Module, path: str) -> Any:
        import torch

        make = _layers.lookup(_layers.jaxnet_to_torch(), layer, Module)
        if make is not None:
            return make(layer)
        if isinstance(layer, nn.ModuleList):
            return torch.nn.ModuleList(self._children(layer, path).values())
        if isinstance(layer, nn.ModuleDict):
            return torch.nn.ModuleDict(self._children(layer, path))
        if isinstance(layer, nn.Sequential) and type(layer).forward is nn.Sequential.forward:
            return torch.nn.Sequential(collections.OrderedDict(self._children(layer, path)))
        if isinstance(layer, _graph.TracedModule):
            return self._graph_module(layer, path)
        self.problems.append(
            f"{path or '<root>'} ({type(layer).__name__}) has its own forward, which jaxnet "
            "cannot translate to torch: write its torch twin and load "
            "model.state_dict(params, buffers) into it"
        )
        return None

    def _graph_module(self, layer: _graph.TracedModule, path: str) -> Any:
        """A ``torch.fx.GraphModule`` running the traced graph, with the children,
        parameters and buffers in the jaxnet layer's (torch's) order."""
        import torch
        import torch.fx

        if layer._graphs[True] is not layer._graphs[False]:
            self.problems.append(
                f"{path or '<root>'} ({layer.short_name()}): its traced forward differs "
                "between training and eval mode (it branches on self.training); one torch "
                "graph cannot hold both"
            )
            return None
        root = torch.nn.Module()
        for name, entry in layer._entries.items():
            if isinstance(entry, Module):
                root.add_module(name, self.build(entry, f"{path}.{name}" if path else name))
            elif isinstance(entry, Buffer):
                value = torch.zeros(entry.shape, dtype=_layers.torch_dtype(entry.dtype))
                root.register_buffer(name, value, persistent=entry.persistent)
            elif isinstance(entry, Parameter):
                value = torch.zeros(entry.shape, dtype=_layers.torch_dtype(entry.dtype))
                root.register_parameter(name, torch.nn.Parameter(value))
        for step in layer._programs[True]:
            if step.constant is not None:
                setattr(root, ".".join(step.target), _tensor(np.asarray(step.constant)))
        if None in root._modules.values():
            return None
        module = torch.fx.GraphModule(root, layer._graphs[True], class_name=layer.short_name())
        # GraphModule copies only what the graph uses, in graph order: restore the record.
        for registry in ("_modules", "_parameters", "_buffers"):
            getattr(module, registry).clear()
            getattr(module, registry).update(getattr(root, registry))
        module._non_persistent_buffers_set = set(root._non_persistent_buffers_set)
        return module
