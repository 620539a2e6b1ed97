"""A jaxnet layer whose forward interprets a ``torch.fx`` graph.

:func:`compile_graph` turns a traced graph into a :class:`Program`, a tuple of steps in
which every torch target is already replaced by its jaxnet counterpart (a child path, a
parameter path, a JAX function from :mod:`jaxnet.interop._ops`); every target it cannot
replace is reported, with the line of torch source that made it, and nothing is built.
:class:`TracedModule` is the base of the classes :func:`jaxnet.from_torch` generates per
traced torch class: its registered children are the converted torch children under their
torch names, and its ``forward`` runs the program. Shapes are not fixed at trace time:
``x.size(0)`` or ``x.shape`` are read from the arrays of each call.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp

from jaxnet.interop import _ops
from jaxnet.nn.module import Module, Parameter, Scope


class Ref(NamedTuple):
    """The value of an earlier step, by its node name."""

    name: str


class Step(NamedTuple):
    """One node of the graph, ready to run.

    ``target`` is the input's name (placeholder), a tuple of attribute names (call_module,
    get_attr), or the JAX function (call_function, call_method). ``constant`` holds a
    tensor the forward used as a constant (get_attr of a plain tensor attribute).
    """

    name: str
    op: str
    target: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    label: str
    constant: Any = None


Program = tuple[Step, ...]

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<fn>\S+)\n\s*(?P<code>.*)')


def source_location(stack_trace: str | None) -> str:
    """``file.py:LINE: code`` of the innermost frame outside torch in a node's stack trace
    (``''`` when fx recorded none)."""
    import torch

    torch_dir = os.path.dirname(torch.__file__)
    frames = [m for m in _FRAME.finditer(stack_trace or "") if torch_dir not in m["file"]]
    if not frames:
        return ""
    frame = frames[-1]
    return f"{os.path.basename(frame['file'])}:{frame['line']}: {frame['code'].strip()}"


def target_name(node: Any) -> str:
    """The torch target as a user reads it: ``torch.flatten``, ``Tensor.view``, ``fc``."""
    from torch.fx.node import _get_qualified_name

    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        name = _get_qualified_name(node.target)
        return name.replace("torch.nn.functional.", "F.").replace("_operator.", "operator.")
    return str(node.target)


def _lift(value: Any) -> Any:
    """fx arguments with every ``Node`` replaced by a :class:`Ref`."""
    import torch.fx

    if isinstance(value, torch.fx.Node):
        return Ref(value.name)
    if isinstance(value, tuple | list):
        return type(value)(_lift(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _lift(v) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(_lift(value.start), _lift(value.stop), _lift(value.step))
    if isinstance(value, torch.Size):
        return tuple(value)
    if type(value).__module__.startswith("torch"):  # a dtype, device, tensor literal ...
        raise TypeError(f"the argument {value!r} (a torch object) is not supported")
    return value


def _resolve(value: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(value, Ref):
        return env[value.name]
    if isinstance(value, tuple | list):
        return type(value)(_resolve(v, env) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, env) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(
            _resolve(value.start, env), _resolve(value.stop, env), _resolve(value.step, env)
        )
    return value


def compile_graph(graph: Any, root: Any, problems: list[str], where: str) -> Program:
    """The steps of a traced ``graph`` of the torch module ``root``; every unsupported
    node is appended to ``problems`` (prefixed with ``where``) instead."""
    import torch

    functions, methods = _ops.functions(), _ops.methods()
    steps = []
    for node in graph.nodes:
        label = f"{node.op} {target_name(node)}"
        location = source_location(node.meta.get("stack_trace") or node.stack_trace)
        if location:
            label += f" ({location})"
        constant = None
        try:
            if node.op in ("placeholder", "output"):
                target = node.target
                if str(target).startswith("*"):
                    raise TypeError("variadic forward arguments (*args, **kwargs)")
            elif node.op in ("call_module", "get_attr"):
                target = tuple(node.target.split("."))
                if node.op == "get_attr":
                    value = _attribute(root, target)
                    if not isinstance(value, torch.nn.Parameter) and not _is_buffer(root, target):
                        if not isinstance(value, torch.Tensor):
                            raise TypeError(f"the attribute is a {type(value).__name__}")
                        constant = jnp.asarray(value.detach().cpu().numpy())
            elif node.op == "call_function":
                target = functions.get(node.target)
                if target is None:
                    raise TypeError("unsupported function")
                if node.target is getattr and node.args[1] not in _ops.ATTRIBUTES:
                    raise TypeError(f"unsupported tensor attribute .{node.args[1]}")
            else:
                target = methods.get(node.target)
                if target is None:
                    raise TypeError("unsupported method")
            args, kwargs = _lift(tuple(node.args)), _lift(dict(node.kwargs))
        except TypeError as err:
            problems.append(f"{where}: {label}: {err}")
            continue
        steps.append(Step(node.name, node.op, target, args, kwargs, label, constant))
    return tuple(steps)


def _attribute(root: Any, path: tuple[str, ...]) -> Any:
    value = root
    for part in path:
        value = getattr(value, part)
    return value


def _is_buffer(root: Any, path: tuple[str, ...]) -> bool:
    owner = _attribute(root, path[:-1])
    return path[-1] in getattr(owner, "_buffers", {})


class TracedModule(Module):
    """A converted torch module whose ``forward`` is its traced ``torch.fx`` graph.

    ``entries`` are the children (converted), parameters and buffers under torch's names
    and in torch's order; ``programs`` maps the mode (``training``) to the program run in
    it (the two differ only when the torch forward branches on ``self.training``);
    ``graphs`` keeps the fx graphs (for :func:`jaxnet.to_torch`).
    """

    def __init__(
        self,
        torch_class: str,
        entries: Mapping[str, Module | Parameter],
        programs: Mapping[bool, Program],
        graphs: Mapping[bool, Any],
    ):
        for name, entry in entries.items():
            setattr(self, name, entry)
        self._torch_class = torch_class
        self._programs = dict(programs)
        self._graphs = dict(graphs)

    def forward(self, scope: Scope, *inputs: Any, **kwargs: Any) -> Any:
        env: dict[str, Any] = {}
        positional = list(inputs)
        for step in self._programs[scope.training]:
            try:
                if step.op == "output":
                    return _resolve(step.args[0], env)
                env[step.name] = self._run(scope, step, env, positional, kwargs)
            except (TypeError, ValueError) as err:
                kind = TypeError if isinstance(err, TypeError) else ValueError
                where = f" at {scope.path!r}" if scope.path else ""
                raise kind(f"{self.short_name()}{where}, {step.label}: {err}") from err
        raise ValueError(f"{self.short_name()}: the traced graph has no output")

    def _run(
        self,
        scope: Scope,
        step: Step,
        env: dict[str, Any],
        positional: list[Any],
        kwargs: dict[str, Any],
    ) -> Any:
        if step.op == "placeholder":
            if positional:
                return positional.pop(0)
            if step.target in kwargs:
                return kwargs[step.target]
            if step.args:
                return step.args[0]  # the default value
            raise TypeError(f"missing the input {step.target!r}")
        if step.op == "get_attr":
            if step.constant is not None:
                return step.constant
            owner_scope, _ = self._enter(scope, step.target[:-1])
            return owner_scope[step.target[-1]]
        args, call_kwargs = _resolve(step.args, env), _resolve(step.kwargs, env)
        if step.op == "call_module":
            parent_scope, parent = self._enter(scope, step.target[:-1])
            return getattr(parent, step.target[-1])(parent_scope, *args, **call_kwargs)
        fn: Callable[..., Any] = step.target
        if isinstance(fn, _ops.Scoped):
            return fn(scope, *args, **call_kwargs)
        return fn(*args, **call_kwargs)

    def _enter(self, scope: Scope, path: tuple[str, ...]) -> tuple[Scope, Module]:
        """The scope and layer of the descendant at ``path`` (each level entered in turn)."""
        module: Module = self
        for part in path:
            module = getattr(module, part)
            scope = scope.enter(module)
        return scope, module

    def short_name(self) -> str:
        return self._torch_class

    def __repr__(self) -> str:
        return super().__repr__().replace(type(self).__name__, self._torch_class, 1)
