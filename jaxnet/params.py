"""Parameter pytrees under torch's names: ``named_parameters``, ``state_dict``, loading.

PyTorch equivalents: ``Module.named_parameters()``, ``Module.state_dict()``,
``Module.load_state_dict()``, ``sum(p.numel() for p in module.parameters())``.

jaxnet params are nested dicts; the dotted path of each leaf is the key torch's
``state_dict`` has for the same architecture (``params['0']['weight']`` is
``'0.weight'``), in torch's layout. So a real torch state dict loads without renaming
or transposing, and back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxnet.nn.module import Params

# Within a layer torch registers weight before bias; JAX's tree utilities sort dict keys,
# which would put 'bias' first and '10' before '2'. This key restores torch's order.
_FIRST_NAMES = {"weight": 0, "bias": 1}


def _torch_order(name: str) -> tuple:
    parts = []
    for part in name.split("."):
        if re.fullmatch(r"\d+", part):
            parts.append((0, int(part), ""))
        else:
            parts.append((1, _FIRST_NAMES.get(part, 2), part))
    return tuple(parts)


def _flatten(params: Params) -> dict[str, Any]:
    flat = traverse_util.flatten_dict(params, sep=".") if params else {}
    return dict(sorted(flat.items(), key=lambda item: _torch_order(item[0])))


def named_parameters(params: Params) -> list[tuple[str, jax.Array]]:
    """``(name, array)`` pairs in torch's order (``Module.named_parameters()``).

    Torch's order is registration order; jaxnet restores it from the names alone:
    numeric children in numeric order, ``weight`` before ``bias``, other names
    alphabetically. Tied parameters appear once, under their first position, as in torch.
    """
    return list(_flatten(params).items())


def _aliases(model: Any) -> dict[str, str]:
    """Positions of tied layers beyond their first, mapped to the first (prefix -> prefix)."""
    first_path: dict[int, str] = {}
    aliases: dict[str, str] = {}

    def walk(layer: Any, path: str) -> None:
        if id(layer) in first_path:
            aliases[path] = first_path[id(layer)]
            return
        first_path[id(layer)] = path
        for name, child in layer.children() if hasattr(layer, "children") else ():
            walk(child, f"{path}.{name}" if path else name)

    walk(model, "")
    return aliases


def _alias_names(flat: Mapping[str, Any], model: Any) -> dict[str, str]:
    """Every state_dict key torch adds for tied layers, mapped to the stored name.

    An alias repeats every key under its first position, including keys that are
    themselves aliases (a tied block holding a tied layer), so this runs to a fixed point.
    """
    names: dict[str, str] = {}
    aliases = _aliases(model)
    grew = True
    while grew:
        grew = False
        for alias, first in aliases.items():
            for name in [*flat, *names]:
                key = alias + name[len(first) :]
                if name.startswith(first + ".") and key not in flat and key not in names:
                    names[key] = names.get(name, name)
                    grew = True
    return names


def fill_tied_keys(params: Params, state_dict: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """``state_dict`` with every tied layer's keys filled in from the one of its positions
    that is present (``safetensors.torch.save_model`` stores each shared tensor once, and
    ``safetensors.torch.load_model`` accepts that)."""
    full = dict(state_dict)
    groups: dict[str, list[str]] = {}
    for alias, first in _alias_names(_flatten(params), model).items():
        groups.setdefault(first, [first]).append(alias)
    for keys in groups.values():
        present = [key for key in keys if key in full]
        if present:
            full.update({key: full[present[0]] for key in keys if key not in full})
    return full


def state_dict(params: Params, model: Any = None) -> dict[str, np.ndarray]:
    """A flat ``{torch_name: numpy array}`` dict (``Module.state_dict()``).

    Pass ``model`` to also get the entries torch lists for tied layers at their later
    positions (torch's ``state_dict`` repeats them; ``named_parameters`` does not), so the
    result loads into the torch module with ``strict=True``.
    """
    flat = {name: np.asarray(value) for name, value in _flatten(params).items()}
    if model is not None:
        for alias, name in _alias_names(flat, model).items():
            flat[alias] = flat[name]
        flat = dict(sorted(flat.items(), key=lambda item: _torch_order(item[0])))
    return flat


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; torch itself is not imported
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def load_state_dict(
    params: Params, state_dict: Mapping[str, Any], strict: bool = True, model: Any = None
) -> Params:
    """New params with values from a torch-named ``state_dict`` (``Module.load_state_dict``).

    ``params`` is the template: every key present must have its shape and dtype. Values
    may be numpy arrays or torch tensors. With ``strict=True`` (torch's default) missing
    and unexpected keys are errors; with ``strict=False`` missing keys keep the template's
    value and unexpected ones are ignored, as in torch. Keys torch lists for tied layers
    at later positions are expected when ``model`` is given, and are missing keys under
    ``strict=True`` as in torch; they must hold the same value as their first position
    (torch would keep the last one), and with ``strict=False`` any of them loads the tied
    parameter. Every problem is reported in one ``ValueError``; nothing loads if there
    is any.
    """
    template = _flatten(params)
    # Every key torch's state_dict has, mapped to the stored name it loads into.
    sources = {name: name for name in template}
    if model is not None:
        sources.update(_alias_names(template, model))
    problems: list[str] = []
    loaded: dict[str, np.ndarray] = {}
    for key in sorted(sources, key=_torch_order):
        name, target = sources[key], template[sources[key]]
        if key not in state_dict:
            if strict:
                problems.append(f"missing key {key!r}")
            continue
        value = _to_numpy(state_dict[key])
        if value.shape != tuple(target.shape) or value.dtype != target.dtype:
            problems.append(
                f"{key!r}: expected {target.dtype}{list(target.shape)}, "
                f"got {value.dtype}{list(value.shape)}"
            )
        elif name not in loaded:
            loaded[name] = value
        elif not np.array_equal(value, loaded[name], equal_nan=True):
            problems.append(f"{key!r} is tied to {name!r} but holds a different value")
    if strict:
        problems += [f"unexpected key {key!r}" for key in state_dict if key not in sources]
    if problems:
        raise ValueError("load_state_dict: " + "; ".join(problems))
    merged = {tuple(name.split(".")): loaded.get(name, value) for name, value in template.items()}
    return jax.tree.map(jnp.asarray, traverse_util.unflatten_dict(merged))


def count_parameters(params: Params) -> int:
    """Total number of scalars (``sum(p.numel() for p in module.parameters())``)."""
    return sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params))
