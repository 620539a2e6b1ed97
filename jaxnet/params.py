"""Parameter and buffer pytrees under torch's names: listing, ``state_dict``, loading.

PyTorch equivalents: ``Module.named_parameters()``, ``named_buffers()``,
``state_dict()``, ``load_state_dict()``, ``sum(p.numel() for p in module.parameters())``.

jaxnet params and buffers are nested dicts; the dotted path of each leaf is the key
torch's ``state_dict`` has for the same architecture (``params['0']['weight']`` is
``'0.weight'``), in torch's layout. Names and order come from the model's registration
record (:mod:`jaxnet.nn.module`), so a real torch state dict loads without renaming or
transposing, and back. These functions are the model's methods
(``net.state_dict(params, buffers)``, ``net.load_state_dict(sd)``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxnet.nn.module import Buffer, Module, Parameter, Params, _layout


def _flat(tree: Params | None) -> dict[str, Any]:
    return traverse_util.flatten_dict(dict(tree), sep=".") if tree else {}


def named_parameters(model: Module, params: Params) -> list[tuple[str, jax.Array]]:
    """``(name, array)`` in torch's registration order (``Module.named_parameters()``);
    a tied parameter appears once, under its first position."""
    flat = _flat(params)
    return [(name, flat[name]) for name in _layout(model).parameters]


def named_buffers(model: Module, buffers: Params) -> list[tuple[str, jax.Array]]:
    """``(name, array)`` in torch's registration order (``Module.named_buffers()``)."""
    flat = _flat(buffers)
    return [(name, flat[name]) for name in _layout(model).buffers]


def _state_dict_keys(model: Module) -> dict[str, tuple[str, Any]]:
    """Every key of torch's ``state_dict`` in torch's order (a module's parameters, then
    its persistent buffers, then its children; tied layers at every position), mapped to
    ``(stored name, declaration)``."""
    layout = _layout(model)
    keys: dict[str, tuple[str, Any]] = {}
    for path, module in layout.positions:
        entries = module._entries.items()
        own = [(n, e) for n, e in entries if isinstance(e, Parameter) and not isinstance(e, Buffer)]
        own += [(n, e) for n, e in entries if isinstance(e, Buffer) and e.persistent]
        for name, entry in own:
            key = f"{path}.{name}" if path else name
            keys[key] = (layout.resolve(key), entry)
    return keys


def state_dict_spec(model: Module) -> dict[str, jax.ShapeDtypeStruct]:
    """The shape and dtype of every entry of the model's ``state_dict``, in its order,
    without making any array."""
    return {
        key: jax.ShapeDtypeStruct(entry.shape, entry.dtype)
        for key, (_, entry) in _state_dict_keys(model).items()
    }


def state_dict(model: Module, params: Params, buffers: Params | None = None) -> dict[str, Any]:
    """A flat ``{torch_name: numpy array}`` dict (``Module.state_dict()``), in torch's
    order, parameters and buffers together; a tied layer's entries are repeated at each
    of its positions, as torch repeats them, so the result loads into the torch module
    with ``strict=True``. A model with buffers needs ``buffers``."""
    values = {**_flat(params), **_flat(buffers)}
    out: dict[str, Any] = {}
    for key, (stored, entry) in _state_dict_keys(model).items():
        if stored not in values:
            what = "buffers" if isinstance(entry, Buffer) else "params"
            raise ValueError(
                f"{model.short_name()}.state_dict: {what} have no {stored!r}"
                + (" (pass buffers=...)" if buffers is None and what == "buffers" else "")
            )
        out[key] = np.asarray(values[stored])
    return out


def to_numpy(value: Any) -> np.ndarray:
    """A NumPy array of ``value``: a NumPy or JAX array, or a torch tensor of any dtype
    (bfloat16 comes back as ``jnp.bfloat16``, bit for bit); torch itself is not imported
    unless a bfloat16 tensor comes."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            import torch

            return value.view(torch.int16).numpy().view(jnp.bfloat16)
        value = value.numpy()
    return np.asarray(value)


def _convert(key: str, value: Any, entry: Any) -> tuple[np.ndarray | None, str | None]:
    """``value`` as the declaration's dtype, or a problem: shapes must match, dtypes too,
    except integer buffers (torch's int64 ``num_batches_tracked``) whose values fit."""
    array = to_numpy(value)
    want = np.dtype(entry.dtype)
    if array.shape == entry.shape and array.dtype == want:
        return array, None
    if array.shape == entry.shape and array.dtype.kind in "iu" and want.kind in "iu":
        cast = array.astype(want)
        if np.array_equal(cast, array):
            return cast, None
    return None, (
        f"{key!r}: expected {want}{list(entry.shape)}, got {array.dtype}{list(array.shape)}"
    )


class LoadedState(NamedTuple):
    """What ``load_state_dict`` returns: the new trees, and torch's
    ``_IncompatibleKeys`` (``missing_keys``, ``unexpected_keys``; empty when strict)."""

    params: Params
    buffers: Params
    missing_keys: list[str]
    unexpected_keys: list[str]


def load_state_dict(
    model: Module,
    state_dict: Mapping[str, Any],
    strict: bool = True,
    *,
    params: Params | None = None,
    buffers: Params | None = None,
) -> LoadedState:
    """New params and buffers from a torch-named ``state_dict`` (``Module.load_state_dict``).

    Values may be NumPy arrays, JAX arrays or torch tensors of any dtype torch has; each
    must have its declaration's shape and dtype (an integer buffer may come as any
    integer dtype holding the same values). With ``strict=True`` (torch's default) every
    key torch's ``state_dict`` would have must be present (a tied layer's at every
    position, holding the same value) and no other. With ``strict=False`` missing keys
    keep their value from the ``params`` / ``buffers`` templates (which must then be
    given) and unexpected keys are ignored; both are returned, as torch returns them, and
    a load that matches no key at all is refused. Every problem is reported in one
    ``ValueError``; nothing loads if there is any.
    """
    expected = _state_dict_keys(model)
    layout = _layout(model)
    problems: list[str] = []
    loaded: dict[str, np.ndarray] = {}
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    for key, (stored, entry) in expected.items():
        if key not in state_dict:
            continue
        value, problem = _convert(key, state_dict[key], entry)
        if problem:
            problems.append(problem)
        elif stored not in loaded:
            loaded[stored] = value
        elif not np.array_equal(value, loaded[stored], equal_nan=True):
            problems.append(f"{key!r} is tied to {stored!r} but holds a different value")
    if strict:
        problems += [f"missing key {key!r}" for key in missing]
        problems += [f"unexpected key {key!r}" for key in unexpected]
    elif expected and len(missing) == len(expected):
        raise ValueError(
            f"{model.short_name()}.load_state_dict: no key matches the model (expected e.g. "
            f"{next(iter(expected))!r}, got {list(state_dict)[:3]})" + _hint(expected, state_dict)
        )
    templates = {**_flat(params), **_flat(buffers)}
    non_persistent = {name: e for name, e in layout.buffers.items() if not e.persistent}
    fresh = _flat(model.init_buffers()) if non_persistent else {}
    for name in [*layout.parameters, *layout.buffers]:
        if name in loaded:
            continue
        if name in templates:
            loaded[name] = templates[name]
        elif name in non_persistent:
            loaded[name] = fresh[name]
        elif not strict:
            tree = "buffers" if name in layout.buffers else "params"
            problems.append(f"{name!r} is missing and no {tree} template was given")
    if problems:
        hint = _hint(expected, state_dict) if missing and unexpected else ""
        raise ValueError(f"{model.short_name()}.load_state_dict: " + "; ".join(problems) + hint)

    def tree(names: Mapping[str, Any]) -> Params:
        flat = {tuple(name.split(".")): jnp.asarray(loaded[name]) for name in names}
        return traverse_util.unflatten_dict(flat) if flat else {}

    return LoadedState(tree(layout.parameters), tree(layout.buffers), missing, unexpected)


def _hint(expected: Mapping[str, Any], state_dict: Mapping[str, Any]) -> str:
    """``"; " + a suggested key mapping`` when the keys differ by a prefix or a renaming."""
    from jaxnet.interop.keys import key_mapping_hint

    hint = key_mapping_hint(list(expected), list(state_dict))
    return f"; {hint}" if hint else ""


def fill_tied_keys(model: Module, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``state_dict`` with every tied layer's keys filled in from whichever of its
    positions is present (``safetensors.torch.save_model`` stores each shared tensor once,
    and ``safetensors.torch.load_model`` accepts that)."""
    full = dict(state_dict)
    groups: dict[str, list[str]] = {}
    for key, (stored, _) in _state_dict_keys(model).items():
        groups.setdefault(stored, []).append(key)
    for keys in groups.values():
        present = [key for key in keys if key in full]
        if present:
            full.update({key: full[present[0]] for key in keys if key not in full})
    return full


def count_parameters(params: Params) -> int:
    """Total number of scalars (``sum(p.numel() for p in module.parameters())``)."""
    return sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params))
