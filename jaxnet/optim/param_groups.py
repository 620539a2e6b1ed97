"""torch's parameter groups, ``[{"params": ..., "lr": ..., "weight_decay": ...}, ...]``.

PyTorch equivalent::

    torch.optim.AdamW([{"params": biases_and_norms, "weight_decay": 0.0},
                       {"params": the_rest}], lr=1e-3, weight_decay=0.1)

jaxnet::

    optim.param_groups(optim.AdamW, [{"params": ["*.bias", "norm*"], "weight_decay": 0.0}],
                       lr=1e-3, weight_decay=0.1)

A group's ``"params"`` chooses parameters by their dotted torch name (the
``named_parameters`` name, e.g. ``'0.bias'``): a ``fnmatch`` pattern, a list of patterns,
or a predicate ``(name, array) -> bool``. Parameters no group chooses form a last group
with the defaults (torch would need them listed; most scripts list "the rest" anyway).
Each group is its own optimiser with its own hyperparameters and schedules, joined by
``optax.multi_transform``; a parameter chosen by two groups is an error, as in torch.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import optax

from jaxnet.optim.base import ParamGroup, TorchOptimizer

Selector = str | Sequence[str] | Callable[[str, Any], bool]


def param_groups(
    optimizer: Callable[..., TorchOptimizer],
    groups: Sequence[Mapping[str, Any]],
    **defaults: Any,
) -> TorchOptimizer:
    """``optimizer`` (e.g. ``jaxnet.optim.AdamW``) with torch-style parameter groups.

    ``defaults`` are ``optimizer``'s keyword arguments for every group; each group's own
    entries override them. Invalid hyperparameters raise here, group by group.
    """
    if isinstance(groups, Mapping) or not isinstance(groups, Sequence):
        raise TypeError(
            f"param_groups: groups must be a list of dicts, got {type(groups).__name__}"
        )
    selects = []
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"param_groups: groups[{i}] must be a dict with a 'params' entry")
        selects.append(_selector(group["params"], i))
    parts = [{**defaults, **{k: v for k, v in g.items() if k != "params"}} for g in groups]
    transforms = {str(i): optimizer(**kwargs) for i, kwargs in enumerate([*parts, defaults])}
    rest = str(len(groups))

    def labels(params):
        def label(path, leaf):
            name = jax.tree_util.keystr(path, simple=True, separator=".")
            chosen = [str(i) for i, select in enumerate(selects) if select(name, leaf)]
            if len(chosen) > 1:
                raise ValueError(
                    f"param_groups: parameter {name!r} is chosen by groups "
                    f"{', '.join(chosen)}; each parameter belongs to one group"
                )
            return chosen[0] if chosen else rest

        return jax.tree_util.tree_map_with_path(label, params)

    records = tuple(
        ParamGroup(label, _member_of(labels, label), transforms[label].groups[0].hyperparameters)
        for label in transforms
    )
    first = transforms["0"] if groups else transforms[rest]
    return TorchOptimizer(optax.multi_transform(transforms, labels), first.name, records)


def _selector(params: Selector, index: int) -> Callable[[str, Any], bool]:
    if callable(params):
        return params
    patterns = [params] if isinstance(params, str) else params
    if not isinstance(patterns, Sequence) or not all(isinstance(p, str) for p in patterns):
        raise TypeError(
            f"param_groups: groups[{index}]['params'] must be a name pattern, a list of "
            f"patterns or a predicate (name, array) -> bool, got {type(params).__name__}"
        )
    return lambda name, leaf: any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _member_of(labels: Callable, label: str) -> Callable[[Any], dict[str, bool]]:
    """``params -> {name: in this group}``, for reading and writing torch's state."""

    def member(params):
        flat = jax.tree_util.tree_flatten_with_path(labels(params))[0]
        return {jax.tree_util.keystr(p, simple=True, separator="."): v == label for p, v in flat}

    return member
