"""torch's ``optimizer.state_dict()`` into a jaxnet optimiser state, and back.

PyTorch equivalent: ``optimizer.load_state_dict(sd)`` and ``optimizer.state_dict()``.
torch keys its state by parameter index: the parameters of group 0 in order, then those
of group 1, ...; within a jaxnet group the order is that of the ``(name, array)`` list
the caller passes, ``named_parameters(model, params)`` (torch's order for the
same model). So a torch run resumes in jaxnet, and the reverse::

    named = net.named_parameters(params)   # torch's order: model.named_parameters()
    state = optim.load_torch_state_dict(opt, opt.init(params), torch_opt.state_dict(), named)
    torch_opt.load_state_dict(optim.torch_state_dict(opt, state, named))

torch's per-parameter tensors (``exp_avg``, ``momentum_buffer``, ...) map to the optax
state fields named in :data:`FIELDS`; its per-parameter ``step`` to every ``count`` of the
group's state (torch's SGD records no step: pass ``step=`` when the state counts one, e.g.
for an ``lr`` schedule or ``dampening``). A complex parameter's state is torch's complex
tensor, jaxnet's real view. Exported hyperparameters are the values at the current step
(a schedule's value, as a torch scheduler leaves ``param_group['lr']``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxnet.optim.base import ParamGroup, TorchOptimizer

# torch's state key -> the jaxnet state field that holds it, per optimiser.
_ADAM = {"exp_avg": "mu", "exp_avg_sq": "nu", "max_exp_avg_sq": "nu_max"}
FIELDS: dict[str, dict[str, str]] = {
    "SGD": {"momentum_buffer": "trace"},
    "Adam": _ADAM,
    "AdamW": _ADAM,
    "RMSprop": {"square_avg": "nu", "grad_avg": "mu", "momentum_buffer": "trace"},
    "Adagrad": {"sum": "sum_of_squares"},
    "Adadelta": {"square_avg": "e_g", "acc_delta": "e_x"},
    "Adamax": {"exp_avg": "mu", "exp_inf": "nu"},
    "NAdam": {"exp_avg": "mu", "exp_avg_sq": "nu", "mu_product": "mu_product"},
    "RAdam": {"exp_avg": "mu", "exp_avg_sq": "nu"},
    "ASGD": {"eta": "eta", "mu": "mu", "ax": "ax"},
    "Rprop": {"prev": "prev", "step_size": "step_size"},
    "Adafactor": {"row_var": "row_var", "col_var": "col_var", "variance": "variance"},
}
_NO_STEP = ("SGD",)  # torch's SGD keeps no step in its state


def load_torch_state_dict(
    optimizer: TorchOptimizer,
    state: Any,
    torch_state_dict: Mapping[str, Any],
    named_params: Sequence[tuple[str, Any]],
    step: int | None = None,
) -> Any:
    """``state`` (from ``optimizer.init(params)``) with torch's state loaded into it.

    ``named_params`` is ``named_parameters(model, params)``'s list of ``(name, array)``
    in torch's order (``model.named_parameters()``), which torch's indices refer to.
    """
    fields = _fields_of(optimizer, "load_torch_state_dict")
    torch_groups = torch_state_dict["param_groups"]
    groups = _groups(optimizer, named_params)
    if len(torch_groups) != len(groups):
        raise ValueError(
            f"load_torch_state_dict: torch has {len(torch_groups)} parameter groups, "
            f"{optimizer.name} has {len(groups)} with parameters"
        )
    torch_state = torch_state_dict["state"]
    for (group, names), torch_group in zip(groups, torch_groups, strict=True):
        indices = list(torch_group["params"])
        if len(indices) != len(names):
            raise ValueError(
                f"load_torch_state_dict: torch's group has {len(indices)} parameters, "
                f"jaxnet's {len(names)} ({', '.join(names)})"
            )
        per_name = {
            n: torch_state[i] for n, i in zip(names, indices, strict=True) if i in torch_state
        }
        if not per_name:
            continue
        sub = _group_state(state, group)
        for torch_key, field in fields.items():
            values = {n: s[torch_key] for n, s in per_name.items() if s.get(torch_key) is not None}
            if values:
                sub = _replace_field(sub, field, lambda tree, v=values: _load_tree(tree, v))
        first = next(iter(per_name.values()))
        count = step if "step" not in first else int(to_numpy(first["step"]))
        if count is None and _find_field(sub, "count"):
            raise ValueError(
                f"load_torch_state_dict: torch's {optimizer.name} records no step; pass step="
            )
        if count is not None:
            sub = _replace_field(sub, "count", lambda c, n=count: jnp.full_like(c, n))
        state = _set_group_state(state, group, sub)
    return state


def torch_state_dict(
    optimizer: TorchOptimizer, state: Any, named_params: Sequence[tuple[str, Any]]
) -> dict[str, Any]:
    """A ``state_dict`` that ``torch_optimizer.load_state_dict`` takes (torch tensors);
    ``named_params`` as for :func:`load_torch_state_dict`."""
    import torch

    fields = _fields_of(optimizer, "torch_state_dict")
    out_state: dict[int, dict[str, Any]] = {}
    out_groups = []
    index = 0
    for group, names in _groups(optimizer, named_params):
        sub = _group_state(state, group)
        counts = _find_field(sub, "count")
        count = int(counts[0]) if counts else 0
        stepped = count > 0 or not counts  # without a count, the buffers are torch's
        per_param: dict[str, dict[str, Any]] = {n: {} for n in names}
        if count and optimizer.name not in _NO_STEP:
            for entry in per_param.values():
                entry["step"] = torch.tensor(float(count))
        for torch_key, field in fields.items():
            for tree in _find_field(sub, field):
                for name, value in _export_tree(tree, named_params).items():
                    if name in per_param and stepped:
                        per_param[name][torch_key] = torch.from_numpy(np.array(value))
        for name in names:
            if per_param[name]:
                out_state[index] = per_param[name]
            index += 1
        hyper = {k: _value_at(v, count) for k, v in group.hyperparameters.items()}
        out_groups.append({**hyper, "params": list(range(index - len(names), index))})
    return {"state": out_state, "param_groups": out_groups}


def _fields_of(optimizer: Any, owner: str) -> dict[str, str]:
    if not isinstance(optimizer, TorchOptimizer) or optimizer.name not in FIELDS:
        raise TypeError(
            f"{owner}: expected a jaxnet.optim optimiser, got {type(optimizer).__name__}"
        )
    return FIELDS[optimizer.name]


def _groups(
    optimizer: TorchOptimizer, named_params: Sequence[tuple[str, Any]]
) -> list[tuple[ParamGroup, list[str]]]:
    """The groups with parameters, each with its names in torch's order."""
    order = [name for name, _ in named_params]
    params = traverse_util.unflatten_dict({tuple(n.split(".")): a for n, a in named_params})
    out = []
    for group in optimizer.groups:
        member = group.members(params) if group.members else dict.fromkeys(order, True)
        names = [n for n in order if member.get(n)]
        if names:
            out.append((group, names))
    return out


def _group_state(state: Any, group: ParamGroup) -> Any:
    return state if group.label is None else state.inner_states[group.label].inner_state


def _set_group_state(state: Any, group: ParamGroup, sub: Any) -> Any:
    if group.label is None:
        return sub
    inner = dict(state.inner_states)
    inner[group.label] = inner[group.label]._replace(inner_state=sub)
    return state._replace(inner_states=inner)


def _find_field(state: Any, field: str) -> list[Any]:
    """The values of the NamedTuple fields called ``field`` in an optax state (chains are
    tuples of NamedTuples; params-shaped dicts inside are not searched)."""
    found = []
    if hasattr(state, "_fields"):
        for name, value in zip(state._fields, state, strict=True):
            found.extend([value] if name == field else _find_field(value, field))
    elif isinstance(state, tuple):
        for value in state:
            found.extend(_find_field(value, field))
    return found


def _replace_field(state: Any, field: str, fn: Callable[[Any], Any]) -> Any:
    if hasattr(state, "_fields"):
        return type(state)(
            *(
                fn(value) if name == field else _replace_field(value, field, fn)
                for name, value in zip(state._fields, state, strict=True)
            )
        )
    if isinstance(state, tuple):
        return tuple(_replace_field(value, field, fn) for value in state)
    return state


def to_numpy(value: Any) -> np.ndarray:
    """A copy of a torch tensor (or array) as a NumPy array: torch steps its state in
    place, and JAX may share a NumPy array's memory."""
    return np.array(value.detach().cpu().numpy() if hasattr(value, "detach") else value)


def _is_slot(x: Any) -> bool:
    return x is None or isinstance(x, optax.MaskedNode)


def _name(path: Any) -> str:
    return jax.tree_util.keystr(path, simple=True, separator=".")


def _load_tree(tree: Any, values: Mapping[str, Any]) -> Any:
    """A state field (a params-shaped tree, or one scalar for all) with torch's values."""
    if isinstance(tree, jax.Array) and tree.ndim == 0:  # one scalar for the group
        return jnp.asarray(to_numpy(next(iter(values.values()))), tree.dtype)

    def load(path, leaf):
        name = _name(path)
        if _is_slot(leaf) or name not in values:
            return leaf
        value = to_numpy(values[name])
        if np.iscomplexobj(value):
            value = np.stack([value.real, value.imag], -1)
        if value.shape != leaf.shape:
            raise ValueError(
                f"load_torch_state_dict: {name} has shape {value.shape} in torch's state, "
                f"{leaf.shape} in jaxnet's"
            )
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(load, tree, is_leaf=_is_slot)


def _export_tree(tree: Any, named_params: Sequence[tuple[str, Any]]) -> dict[str, np.ndarray]:
    """``{name: numpy value}`` of a state field; a scalar field is given to every name."""
    if isinstance(tree, jax.Array) and tree.ndim == 0:
        return {name: np.asarray(tree) for name, _ in named_params}
    dtypes = {name: np.asarray(p).dtype for name, p in named_params}
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_slot)[0]:
        name = _name(path)
        if _is_slot(leaf):
            continue
        value = np.asarray(leaf)
        if np.issubdtype(dtypes.get(name, value.dtype), np.complexfloating):
            value = (value[..., 0] + 1j * value[..., 1]).astype(dtypes[name])
        out[name] = value
    return out


def _value_at(value: Any, count: int) -> Any:
    if callable(value):
        return float(value(count))
    if isinstance(value, tuple) and any(callable(v) for v in value):
        return tuple(_value_at(v, count) for v in value)
    return value
