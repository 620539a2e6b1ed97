"""The layer protocol: structure registered at construction, pure ``init`` and ``apply``.

PyTorch equivalent: ``torch.nn.Module``. As in torch, a layer's constructor assigns its
sub-layers, parameters and buffers as attributes and they are recorded in assignment
order (torch's ``Module.__setattr__``)::

    class Block(nn.Module):
        def __init__(self):
            self.hidden = nn.Linear(20, 256)                          # a sub-layer
            self.scale = nn.Parameter((256,), nn.init.ones)           # a parameter
            self.out = nn.Linear(256, 10)

        def forward(self, scope, x):
            h = F.relu(self.hidden(scope, x)) * scope.scale
            return self.out(scope, h)

Unlike torch, the layer holds no arrays: a :class:`Parameter` or :class:`Buffer` is a
declaration (shape, initialiser, dtype). Everything else is derived from the record:

* ``init(key)`` makes the parameters, a nested dict keyed by torch's names
  (``{'hidden': {'weight', 'bias'}, 'scale', 'out': {...}}``), one key per entry split
  from ``key``; ``init_buffers()`` makes the buffers (running statistics) the same way;
* ``named_modules``, ``named_parameters``, ``state_dict`` and ``load_state_dict`` list
  torch's names in torch's order (see :mod:`jaxnet.params`);
* tying: the same layer object registered at several positions has one set of
  parameters, under its first position, and ``jax.grad`` sums the gradients of its uses.

``apply(params, x)`` runs ``forward`` as a pure function of the parameters. What a torch
module keeps hidden is an argument: ``apply(params, x, buffers=..., key=...,
training=...)`` (torch's ``model.train()`` / ``model.eval()``, its global RNG, its
in-place running statistics) returns ``(y, new_buffers)`` when ``buffers`` is given.
Inside ``forward`` the :class:`Scope` gives a layer its parameters and buffers
(``scope.weight``), the mode (``scope.training``), a PRNG key derived from the call's key
and the layer's path (``scope.rng()``), and runs a sub-layer (``self.hidden(scope, x)``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxnet._immutable import Immutable

Params = dict[str, Any]
Initializer = Callable[[Any, tuple[int, ...], Any], jax.Array]


class Parameter:
    """A trainable array declared in a constructor (``torch.nn.Parameter``).

    ``init(key, shape, dtype)`` makes its value (any :mod:`jaxnet.nn.init` function, or a
    ``functools.partial`` of one). The array itself lives in the params pytree.
    """

    __slots__ = ("dtype", "init", "shape")

    def __init__(self, shape: tuple[int, ...], init: Initializer, dtype: Any = jnp.float32):
        if not callable(init):
            raise TypeError(f"Parameter: init must be a function (key, shape, dtype), got {init!r}")
        self.shape = tuple(int(n) for n in shape)
        self.init = init
        self.dtype = jax.dtypes.canonicalize_dtype(dtype)  # int64 is int32 without x64

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype})"


class Buffer(Parameter):
    """Non-trainable state declared in a constructor (``torch.nn.Buffer``, ``register_buffer``).

    Buffers (running statistics) live in their own pytree beside the params: never
    differentiated, never seen by an optimiser. ``init(None, shape, dtype)`` makes the
    initial value (no key: buffers start deterministic). A buffer with
    ``persistent=False`` is left out of ``state_dict``, as in torch.
    """

    __slots__ = ("persistent",)

    def __init__(
        self,
        shape: tuple[int, ...],
        init: Initializer,
        dtype: Any = jnp.float32,
        persistent: bool = True,
    ):
        super().__init__(shape, init, dtype)
        self.persistent = persistent


class Module(Immutable):
    """Base class of jaxnet layers (``torch.nn.Module``, without the state).

    A subclass assigns its hyperparameters, sub-layers (:class:`Module`,
    :class:`ModuleList`, :class:`ModuleDict`), :class:`Parameter` and :class:`Buffer`
    declarations in ``__init__`` and writes ``forward(scope, *inputs)``. Once the
    constructor returns the layer is frozen: assigning an attribute raises
    ``AttributeError``. Calling ``super().__init__()`` is allowed and not needed.
    """

    immutable_hint = (
        "parameters live in the params pytree, hyperparameters are fixed at construction"
    )

    # --- the record -------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        self.refuse_if_frozen()
        entries = self._entries
        if isinstance(value, (Module, Parameter)):
            entries[name] = value  # a re-assignment keeps its first position, as in torch
        elif name in entries:
            del entries[name]  # ``self.bias = None`` after a declaration: no entry
        else:
            _refuse_plain_container(self, name, value)
        object.__setattr__(self, name, value)

    @property
    def _entries(self) -> dict[str, Module | Parameter]:
        """Sub-layers, parameters and buffers in assignment order (torch's ``_modules``,
        ``_parameters`` and ``_buffers`` in one record)."""
        if "_entries_" not in self.__dict__:
            object.__setattr__(self, "_entries_", {})
        return self.__dict__["_entries_"]

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-layers as ``(name, layer)`` (``Module.named_children``)."""
        return ((n, e) for n, e in self._entries.items() if isinstance(e, Module))

    def children(self) -> Iterator[Module]:
        """Direct sub-layers (``Module.children``)."""
        return (child for _, child in self.named_children())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Every layer of the tree with its dotted path (``Module.named_modules``).

        A layer registered at several positions (tied) is listed once, at its first
        position, which is also where its parameters live.
        """
        for path, module in _layout(self).positions:
            if _layout(self).canonical[path] == path:
                yield _join(prefix, path), module

    def modules(self) -> Iterator[Module]:
        """Every layer of the tree, tied layers once (``Module.modules``)."""
        return (module for _, module in self.named_modules())

    # --- making parameters and buffers -------------------------------------------------

    def init(self, key: jax.Array) -> Params:
        """Fresh parameters for the whole tree, keyed by torch's names.

        ``key`` is split into one key per parameter and sub-layer entry, in registration
        order; a sub-layer's entry holds its own ``init`` (so a layer that overrides
        ``init`` decides its subtree). Entries with no parameters are left out; a tied
        layer's later positions take no entry.
        """
        return _make_tree(self, key, set())

    def init_buffers(self) -> Params:
        """Fresh buffers for the whole tree (``running_mean`` ...), keyed as ``init``'s
        params; ``{}`` for a model without buffers."""
        return _make_buffers(self, set())

    # --- running -----------------------------------------------------------------------

    def forward(self, scope: Scope, *inputs: Any, **kwargs: Any) -> Any:
        """The computation (``Module.forward``): read parameters from ``scope``, run
        sub-layers as ``self.child(scope, x)``."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def apply(
        self,
        params: Params,
        *inputs: Any,
        buffers: Params | None = None,
        key: jax.Array | None = None,
        training: bool = True,
        **kwargs: Any,
    ) -> Any:
        """The forward pass as a pure function: ``y``, or ``(y, new_buffers)`` if
        ``buffers`` is given.

        PyTorch equivalent: ``torch.func.functional_call(module, (params, buffers),
        inputs)`` in ``module.train()`` (``training=True``, torch's default) or
        ``module.eval()`` mode. ``key`` seeds the random layers (Dropout) in training mode;
        each gets its own key from ``key`` and its path. ``training`` must be a Python
        bool (under ``jax.jit``, close over it or mark it static).
        """
        if not isinstance(training, bool):
            raise TypeError(
                f"{self.short_name()}.apply: training must be a Python bool, got "
                f"{type(training).__name__} (under jax.jit, mark it static: "
                "jax.jit(net.apply, static_argnames='training'))"
            )
        _check_tree("params", self, params, _layout(self).parameters)
        if buffers is not None:
            _check_tree("buffers", self, buffers, _layout(self).buffers)
        call = _Call(self, params, buffers, key, training)
        y = self.forward(Scope(self, "", call), *inputs, **kwargs)
        return y if buffers is None else (y, call.new_buffers())

    def __call__(self, scope: Scope, *inputs: Any, **kwargs: Any) -> Any:
        """Run this layer as a sub-layer inside its parent's ``forward``."""
        if not isinstance(scope, Scope):
            shape = getattr(scope, "shape", None)
            got = type(scope).__name__ + ("" if shape is None else f" of shape {tuple(shape)}")
            raise TypeError(
                f"{self.short_name()}: run a layer on its own with .apply(params, x), not "
                "layer(x) as in torch; layer(scope, x) runs a sub-layer inside its parent's "
                f"forward. Got {got} as the first argument instead of a Scope"
            )
        return self.forward(scope.enter(self), *inputs, **kwargs)

    # --- torch's names -----------------------------------------------------------------

    def named_parameters(self, params: Params) -> list[tuple[str, jax.Array]]:
        """``(name, array)`` in torch's order (``Module.named_parameters``), tied once."""
        from jaxnet import params as params_lib

        return params_lib.named_parameters(self, params)

    def named_buffers(self, buffers: Params) -> list[tuple[str, jax.Array]]:
        """``(name, array)`` in torch's order (``Module.named_buffers``), tied once."""
        from jaxnet import params as params_lib

        return params_lib.named_buffers(self, buffers)

    def state_dict(self, params: Params, buffers: Params | None = None) -> dict[str, Any]:
        """Torch's ``state_dict`` as NumPy arrays (``Module.state_dict``); see
        :func:`jaxnet.params.state_dict`."""
        from jaxnet import params as params_lib

        return params_lib.state_dict(self, params, buffers)

    def load_state_dict(
        self,
        state_dict: Mapping[str, Any],
        strict: bool = True,
        *,
        params: Params | None = None,
        buffers: Params | None = None,
    ) -> Any:
        """New params and buffers from a torch ``state_dict`` (``Module.load_state_dict``);
        see :func:`jaxnet.params.load_state_dict`."""
        from jaxnet import params as params_lib

        return params_lib.load_state_dict(
            self, state_dict, strict=strict, params=params, buffers=buffers
        )

    # --- display -----------------------------------------------------------------------

    def short_name(self) -> str:
        """The name error messages give the layer (``Linear(784 -> 256)``)."""
        return type(self).__name__

    def extra_repr(self) -> str:
        """The hyperparameters shown in ``repr`` (``Module.extra_repr``)."""
        return ""

    def __repr__(self) -> str:
        lines = [
            f"  ({name}): " + repr(child).replace("\n", "\n  ")
            for name, child in self.named_children()
        ]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(lines) + "\n)" if lines else ")")


class ModuleList(Module):
    """Sub-layers keyed ``"0"``, ``"1"``, … (``torch.nn.ModuleList``).

    A container, not a layer: it has no ``forward``. Its parent runs the entries as
    ``for layer in self.layers: x = layer(scope, x)``.
    """

    def __init__(self, modules: Any = ()):
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"ModuleList: entry {i} is {type(module).__name__}, not a Module")
            setattr(self, str(i), module)

    def __getitem__(self, index: int) -> Module:
        return list(self.children())[index]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Module]:
        return self.children()


class ModuleDict(Module):
    """Sub-layers under string keys, in insertion order (``torch.nn.ModuleDict``).

    A container, not a layer: its parent runs ``self.heads[name](scope, x)``.
    """

    def __init__(self, modules: Mapping[str, Module] | None = None):
        for name, module in (modules or {}).items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"ModuleDict: key {name!r} must be a non-empty str without '.'")
            if not isinstance(module, Module):
                raise TypeError(f"ModuleDict: {name!r} is {type(module).__name__}, not a Module")
            setattr(self, name, module)

    def __getitem__(self, name: str) -> Module:
        return self._entries[name]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def keys(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self) -> Iterator[tuple[str, Module]]:
        return self.named_children()

    def values(self) -> Iterator[Module]:
        return self.children()


_CONTAINERS = (ModuleList, ModuleDict)


def _refuse_plain_container(owner: Module, name: str, value: Any) -> None:
    """A list or dict of layers would go unregistered (torch's silent trap): refuse it."""
    items = value.values() if isinstance(value, Mapping) else value
    if isinstance(value, (list, tuple, Mapping)) and any(isinstance(v, Module) for v in items):
        kind = "ModuleDict" if isinstance(value, Mapping) else "ModuleList"
        raise TypeError(
            f"{type(owner).__name__}.{name}: a plain {type(value).__name__} of layers is not "
            f"registered; wrap it: self.{name} = nn.{kind}(...)"
        )


# --- the layout of a tree: positions, ties, declarations ---------------------------------


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


class _Layout:
    """Derived once per root layer: every position (tied ones included, as torch's
    ``state_dict`` walks them), each position's first position, and the declared
    parameters and buffers under their stored (first-position) names."""

    def __init__(self, root: Module):
        self.positions: list[tuple[str, Module]] = []
        self.canonical: dict[str, str] = {}
        first: dict[int, str] = {}

        def walk(path: str, module: Module) -> None:
            self.positions.append((path, module))
            if id(module) in first:
                base = first[id(module)]
                self.canonical[path] = base
            else:
                first[id(module)] = path
                self.canonical[path] = path
            for name, child in module.named_children():
                walk(_join(path, name), child)

        walk("", root)
        self.parameters: dict[str, Parameter] = {}
        self.buffers: dict[str, Buffer] = {}
        self.owners: dict[str, Module] = {}  # stored name -> the layer declaring it
        for path, module in self.positions:
            if self.canonical[path] != path:
                continue
            for name, entry in module._entries.items():
                if isinstance(entry, Parameter):
                    self.owners[_join(path, name)] = module
                if isinstance(entry, Buffer):
                    self.buffers[_join(path, name)] = entry
                elif isinstance(entry, Parameter):
                    self.parameters[_join(path, name)] = entry

    def resolve(self, path: str) -> str:
        """The stored name of a dotted key at any position (``'4.weight'`` -> ``'2.weight'``)."""
        head, _, leaf = path.rpartition(".")
        return _join(self.canonical.get(head, head), leaf)


def _layout(module: Module) -> _Layout:
    if "_layout_" not in module.__dict__:
        object.__setattr__(module, "_layout_", _Layout(module))
    return module.__dict__["_layout_"]


def _call_table(module: Module) -> dict[int, str]:
    """Each sub-layer ``forward`` may call, by identity, with its path relative to
    ``module``; containers are transparent (``layers.0``). The first position wins."""
    if "_call_table_" not in module.__dict__:
        table: dict[int, str] = {}

        def add(prefix: str, owner: Module) -> None:
            for name, child in owner.named_children():
                table.setdefault(id(child), _join(prefix, name))
                if isinstance(child, _CONTAINERS):
                    add(_join(prefix, name), child)

        add("", module)
        object.__setattr__(module, "_call_table_", table)
    return module.__dict__["_call_table_"]


def _make_tree(module: Module, key: jax.Array, seen: set[int]) -> Params:
    seen.add(id(module))
    entries = [
        (name, entry) for name, entry in module._entries.items() if not isinstance(entry, Buffer)
    ]
    keys = jax.random.split(key, max(len(entries), 1))
    tree: Params = {}
    for entry_key, (name, entry) in zip(keys, entries, strict=False):
        if isinstance(entry, Parameter):
            tree[name] = _make_array(module, name, entry, entry_key)
        elif id(entry) not in seen:
            if type(entry).init is Module.init:
                subtree = _make_tree(entry, entry_key, seen)
            else:  # the layer decides its subtree
                subtree = entry.init(entry_key)
                seen.update(id(m) for m in entry.modules())
            if subtree:
                tree[name] = subtree
    return tree


def _make_buffers(module: Module, seen: set[int]) -> Params:
    seen.add(id(module))
    tree: Params = {}
    for name, entry in module._entries.items():
        if isinstance(entry, Buffer):
            tree[name] = _make_array(module, name, entry, None)
        elif isinstance(entry, Module) and id(entry) not in seen:
            subtree = _make_buffers(entry, seen)
            if subtree:
                tree[name] = subtree
    return tree


def _make_array(module: Module, name: str, entry: Parameter, key: Any) -> jax.Array:
    value = entry.init(key, entry.shape, entry.dtype)
    if jnp.shape(value) != entry.shape or jnp.result_type(value) != entry.dtype:
        raise ValueError(
            f"{module.short_name()}: the init of {name!r} made {jnp.result_type(value)}"
            f"{list(jnp.shape(value))}, declared {entry.dtype}{list(entry.shape)}"
        )
    return value


def _check_tree(what: str, root: Module, tree: Any, declared: Mapping[str, Parameter]) -> None:
    """``tree`` holds exactly the declared arrays with their shapes, or one ``ValueError``
    names every difference (and says so when params and buffers were swapped)."""
    if not isinstance(tree, Mapping):
        raise TypeError(
            f"{root.short_name()}: {what} must be a dict of arrays keyed by torch's names, "
            f"got {type(tree).__name__}"
        )
    flat = traverse_util.flatten_dict(dict(tree), sep=".") if tree else {}
    if flat.keys() == declared.keys() and all(
        jnp.shape(flat[name]) == spec.shape for name, spec in declared.items()
    ):
        return
    owners = _layout(root).owners

    def of(name: str) -> str:
        return f"{name!r} ({owners[name].short_name()})"

    problems = [f"missing {of(name)}" for name in declared if name not in flat]
    problems += [f"unexpected {name!r}" for name in flat if name not in declared]
    problems += [
        f"{of(name)} expected shape {spec.shape}, got shape {tuple(jnp.shape(flat[name]))}"
        for name, spec in declared.items()
        if name in flat and jnp.shape(flat[name]) != spec.shape
    ]
    layout = _layout(root)
    other = "buffers" if what == "params" else "params"
    other_names = layout.buffers if what == "params" else layout.parameters
    hint = ""
    if flat and set(flat) <= set(other_names):
        hint = f" (these are the model's {other}: pass them as {other}=...)"
    raise ValueError(
        f"{root.short_name()}: {what} do not match the model: " + "; ".join(problems) + hint
    )


# --- one forward pass ---------------------------------------------------------------


class _Call:
    """What one ``apply`` shares between its layers: the trees, the key, the mode, and
    the buffers written so far."""

    def __init__(
        self, root: Module, params: Params, buffers: Params | None, key: Any, training: bool
    ):
        self.layout = _layout(root)
        self.params = params
        self.buffers = (
            None if buffers is None else traverse_util.flatten_dict(dict(buffers), sep=".")
        )
        self.key = key
        self.training = training
        self.draws: dict[str, int] = {}

    def new_buffers(self) -> Params:
        if not self.buffers:
            return {}
        return traverse_util.unflatten_dict(self.buffers, sep=".")


class Scope:
    """A layer's view of one forward pass (what ``forward`` receives).

    PyTorch equivalent: ``self`` inside ``forward``. ``scope.weight`` (or
    ``scope["weight"]``) is this layer's parameter or buffer, ``scope.training`` the
    mode, ``scope.rng()`` a PRNG key, ``scope.update(running_mean=...)`` records new
    buffer values; ``child(scope, x)`` runs a registered sub-layer.
    """

    __slots__ = ("_call", "_module", "_path")

    def __init__(self, module: Module, path: str, call: _Call):
        self._module = module
        self._path = path
        self._call = call

    @property
    def path(self) -> str:
        """This layer's dotted position (where its parameters are stored)."""
        return self._call.layout.canonical[self._path]

    @property
    def training(self) -> bool:
        """``Module.training``: the ``training`` argument of ``apply``."""
        return self._call.training

    def enter(self, child: Module) -> Scope:
        """The scope of a registered sub-layer of this layer."""
        relative = _call_table(self._module).get(id(child))
        if relative is None:
            raise ValueError(
                f"{child.short_name()} is not a registered sub-layer of "
                f"{self._module.short_name()}{self._where()}: assign it as an attribute in "
                "the constructor"
            )
        return Scope(child, _join(self._path, relative), self._call)

    def _where(self) -> str:
        return f" at {self.path!r}" if self.path else ""

    def __getitem__(self, name: str) -> jax.Array:
        entry = self._module._entries.get(name)
        if not isinstance(entry, Parameter):
            raise KeyError(
                f"{self._module.short_name()}{self._where()} has no parameter or buffer {name!r}"
            )
        stored = _join(self.path, name)
        if not isinstance(entry, Buffer):
            node: Any = self._call.params
            for part in stored.split("."):
                node = node[part]
            return node
        return self._buffers()[stored]

    def __getattr__(self, name: str) -> jax.Array:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(err.args[0]) from None

    def update(self, **values: jax.Array) -> None:
        """Record new values of this layer's buffers (the in-place update of torch's
        ``running_mean.mul_(...).add_(...)``); later reads in the same pass see them."""
        for name, value in values.items():
            entry = self._module._entries.get(name)
            if not isinstance(entry, Buffer):
                raise KeyError(f"{self._module.short_name()}{self._where()} has no buffer {name!r}")
            self._buffers()[_join(self.path, name)] = value

    def _buffers(self) -> dict[str, jax.Array]:
        """The pass's buffers by stored name (refused if ``apply`` got none)."""
        if self._call.buffers is None:
            raise ValueError(
                f"{self._module.short_name()}{self._where()} has buffers (running statistics): "
                "pass buffers=model.init_buffers() (or trained ones) to apply"
            )
        return self._call.buffers

    def rng(self) -> jax.Array:
        """A fresh PRNG key for this layer: ``apply``'s key folded with the layer's path
        and the number of keys it has drawn in this pass (a layer used twice draws two)."""
        call = self._call
        if call.key is None:
            raise ValueError(
                f"{self._module.short_name()}{self._where()} is random in training mode and "
                "apply got no key: pass key=jax.random.key(...) (a new one each step), or "
                "training=False"
            )
        draws = call.draws.get(self.path, 0)
        call.draws[self.path] = draws + 1
        key = jax.random.fold_in(call.key, zlib.crc32(self.path.encode()))
        return jax.random.fold_in(key, draws)
