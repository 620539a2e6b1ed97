"""``jaxnet.from_torch``: a torch module as a jaxnet model with the same names, loaded.

The torch module tree is walked once:

* a layer of the table (:func:`jaxnet.interop._layers.torch_to_jaxnet`) becomes the jaxnet
  layer built from its attributes;
* ``Sequential``, ``ModuleList`` and ``ModuleDict`` become their jaxnet containers;
* any other module (a custom ``nn.Module``, torchvision's ``BasicBlock``, ``ResNet`` ...)
  is traced with ``torch.fx``, every child a leaf, and becomes a
  :class:`jaxnet.interop._graph.TracedModule` whose children are its converted children
  and whose forward runs the traced graph. It is traced in training and in eval mode;
  when the graphs differ (the forward branches on ``self.training``) the jaxnet layer
  runs the one of the mode it is called in.

Every problem (an unsupported layer or op, a forward fx cannot trace, a parameter
shared between two different layers) is collected over the whole tree and reported in
one :class:`ConversionError`; nothing is returned half-converted. The weights then load
through the model's own ``load_state_dict``, bit for bit.
"""

from __future__ import annotations

import copy
import os
import traceback
from collections.abc import Sequence
from typing import Any

from jaxnet import nn
from jaxnet.interop import _graph, _layers
from jaxnet.nn.module import Buffer, Module, Parameter, Params


class ConversionError(ValueError):
    """A torch module jaxnet cannot convert; ``problems`` lists every reason, each with the
    module's path and, for ops, the torch source line."""

    def __init__(self, what: str, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"from_torch cannot convert {what}: {len(self.problems)} problem(s), nothing was "
            f"converted:\n{lines}"
        )


_HAND_CONVERSION = (
    "torch.fx runs forward on symbolic tensors, so Python control flow that depends on "
    "tensor values or shapes (`if x.sum() > 0:`, `for row in x:`, `len(x)`) cannot be "
    "traced. Convert this module by hand: write a jaxnet Module with the same forward and "
    "build its children with jaxnet.from_torch(child) (e.g. jaxnet.from_torch(module.{child}))"
)


def from_torch(
    module: Any, example_inputs: Sequence[Any] | None = None
) -> tuple[Module, Params, Params]:
    """``(model, params, buffers)``: the jaxnet twin of a ``torch.nn.Module`` with its
    weights loaded bit-exactly.

    The model has torch's structure and names: ``model.state_dict(params, buffers)``
    equals ``module.state_dict()``. A module used at several positions stays one (tied)
    layer. ``example_inputs`` (arrays or tensors), if given, are run through both models
    in eval mode and every layer is compared (:func:`jaxnet.compare`); a difference beyond
    float tolerance raises ``ValueError`` with the comparison table.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    converter = _Converter()
    model = converter.convert(module, "")
    problems = converter.problems + _shared_parameter_problems(module)
    if problems:
        raise ConversionError(type(module).__name__, problems)
    loaded = model.load_state_dict(module.state_dict())
    if example_inputs is not None:
        _check_outputs(module, model, loaded.params, loaded.buffers, example_inputs)
    return model, loaded.params, loaded.buffers


def _describe(path: str, module: Any) -> str:
    return f"{path or '<root>'} ({type(module).__name__})"


class _Converter:
    """One walk over a torch tree: the converted layers by torch identity (ties stay
    ties) and the problems found."""

    def __init__(self) -> None:
        self.memo: dict[int, Module | None] = {}
        self.problems: list[str] = []

    def convert(self, module: Any, path: str) -> Module | None:
        if id(module) not in self.memo:
            self.memo[id(module)] = self._convert(module, path)
        return self.memo[id(module)]

    def _children(self, module: Any, path: str) -> dict[str, Module | None]:
        return {
            name: self.convert(child, f"{path}.{name}" if path else name)
            for name, child in module._modules.items()  # every position, tied ones too
            if child is not None
        }

    def _convert(self, module: Any, path: str) -> Module | None:
        import torch

        make = _layers.lookup(_layers.torch_to_jaxnet(), module, torch.nn.Module)
        if make is not None:
            try:
                return make(module)
            except (TypeError, ValueError) as err:
                self.problems.append(f"{_describe(path, module)}: {err}")
                return None
        if isinstance(module, torch.nn.ModuleList | torch.nn.ModuleDict):
            children = self._children(module, path)
            if None in children.values():
                return None
            if isinstance(module, torch.nn.ModuleList):
                return nn.ModuleList(list(children.values()))
            return nn.ModuleDict(children)
        own_state = any(True for _ in module.parameters(recurse=False)) or any(
            True for _ in module.buffers(recurse=False)
        )
        if (
            isinstance(module, torch.nn.Sequential)
            and type(module).forward is torch.nn.Sequential.forward
            and not own_state
        ):
            children = self._children(module, path)
            if None in children.values():
                return None
            if list(children) == [str(i) for i in range(len(children))]:
                return nn.Sequential(*children.values())
            return _layers.NamedSequential(children)
        if type(module).__module__.startswith("torch."):
            self.problems.append(
                f"{_describe(path, module)}: unsupported layer torch {type(module).__qualname__}"
            )
            return None
        return self._traced(module, path)

    def _traced(self, module: Any, path: str) -> Module | None:
        graphs = self._trace(module, path)
        if graphs is None:
            return None
        where = _describe(path, module)
        found: list[str] = []
        programs = {
            mode: _graph.compile_graph(g, graphs["root"], found, where)
            for mode, g in graphs.items()
            if mode != "root"
        }
        self.problems += list(dict.fromkeys(found))
        entries: dict[str, Module | Parameter | None] = {}
        non_persistent = getattr(module, "_non_persistent_buffers_set", set())
        for name, param in module.named_parameters(recurse=False):
            entries[name] = Parameter(
                tuple(param.shape), _Constant(param), _layers.jax_dtype(param.dtype)
            )
        for name, buf in module.named_buffers(recurse=False):
            entries[name] = Buffer(
                tuple(buf.shape),
                _Constant(buf),
                _np_dtype(buf),
                persistent=name not in non_persistent,
            )
        entries.update(self._children(module, path))
        clashes = [name for name in entries if hasattr(_graph.TracedModule, name)]
        for name in clashes:
            self.problems.append(
                f"{where}: the name {name!r} is a method of jaxnet.nn.Module; rename it in torch"
            )
        if found or clashes or None in entries.values():
            return None
        cls = type(type(module).__name__, (_graph.TracedModule,), {"__module__": __name__})
        graphs.pop("root")
        return cls(type(module).__name__, entries, programs, graphs)

    def _trace(self, module: Any, path: str) -> dict[Any, Any] | None:
        """fx graphs of ``module``'s forward in training (``True``) and eval (``False``)
        mode (one graph when they agree), and under ``"root"`` the module they were traced
        on: a shallow copy, where fx stores the tensor constants it meets."""
        import torch.fx

        class ChildrenAsLeaves(torch.fx.Tracer):
            def __init__(self, root: Any):
                super().__init__()
                self.record_stack_traces = True
                self.traced_root = root

            def is_leaf_module(self, m: Any, qualname: str) -> bool:
                return m is not self.traced_root

        root = copy.copy(module)
        modes = [(m, m.training) for m in module.modules()]
        graphs: dict[Any, Any] = {"root": root}
        try:
            for mode in (True, False):
                root.train(mode)
                graphs[mode] = ChildrenAsLeaves(root).trace(root)
        except Exception as err:  # fx raises TraceError, TypeError, RuntimeError ...
            child = next((name for name, _ in module.named_children()), "<child>")
            self.problems.append(
                f"{_describe(path, module)}: torch.fx cannot trace its forward "
                f"({type(err).__name__}: {err}){_error_location(err)}. "
                + _HAND_CONVERSION.format(child=child)
            )
            return None
        finally:
            for m, training in modes:
                m.training = training
        if str(graphs[True]) == str(graphs[False]):
            graphs[False] = graphs[True]
        return graphs


class _Constant:
    """An initialiser returning the value a custom torch parameter or buffer had when it
    was converted (torch's initialisation code is not convertible)."""

    def __init__(self, tensor: Any):
        from jaxnet.params import to_numpy

        self.value = to_numpy(tensor)

    def __call__(self, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        import jax.numpy as jnp

        return jnp.asarray(self.value, dtype)

    def __repr__(self) -> str:
        return f"<value converted from torch, {self.value.dtype}{list(self.value.shape)}>"


def _np_dtype(tensor: Any) -> Any:
    from jaxnet.params import to_numpy

    return to_numpy(tensor.reshape(-1)[:0]).dtype


def _error_location(err: BaseException) -> str:
    """`` at file.py:LINE: code``: the innermost frame of ``err`` outside torch."""
    import torch

    torch_dir = os.path.dirname(torch.__file__)
    here = os.path.dirname(__file__)
    frames = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if torch_dir not in f.filename and here not in f.filename
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at {os.path.basename(frame.filename)}:{frame.lineno}: {frame.line}"


def _shared_parameter_problems(module: Any) -> list[str]:
    """Parameters shared by two different layers (``b.weight = a.weight``): jaxnet ties
    whole layers only."""
    owners: dict[int, list[tuple[str, Any]]] = {}
    for path, sub in module.named_modules(remove_duplicate=True):
        for name, param in sub.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append((f"{path}.{name}" if path else name, sub))
    return [
        f"the parameter {names[0][0]!r} is shared with "
        + ", ".join(repr(n) for n, _ in names[1:])
        + " (different layers): jaxnet ties whole layers, not single parameters; "
        "tie the layer itself (use one module at both places)"
        for names in owners.values()
        if len(names) > 1
    ]


def _check_outputs(
    module: Any, model: Module, params: Params, buffers: Params, inputs: Sequence[Any]
) -> None:
    from jaxnet.interop._compare import compare

    result = compare(module, model, params, *inputs, buffers=buffers, grads=False, training=False)
    if not result.ok:
        raise ValueError(
            f"from_torch: the converted {type(module).__name__} differs from torch on the "
            f"example inputs, first at {result.first_mismatch!r}:\n{result}"
        )
