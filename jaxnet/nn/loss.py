"""Loss layers: ``torch.nn.MSELoss``, ``CrossEntropyLoss`` and friends, as immutable callables.

A loss layer holds the keyword arguments of its functional form, checked once at
construction, and ``criterion(input, target)`` calls the functional form with them,
as ``criterion(output, target)`` does in torch::

    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(net.apply(params, x), y)   # == F.cross_entropy(..., label_smoothing=0.1)

Each class is generated from its functional form's signature, so the arguments and
defaults are the functional form's: ``weight`` may be given positionally (torch's first
argument), everything else by keyword (torch's positional order still holds the
deprecated ``size_average`` and ``reduce``, which jaxnet does not have). As in torch,
``MSELoss`` and ``L1Loss`` take no ``weight``: the per-element weight of ``F.mse_loss``
and ``F.l1_loss`` belongs to the functional form only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from numbers import Number
from typing import Any, ClassVar

import jax

from jaxnet._immutable import Immutable
from jaxnet.nn import functional as F

# Hyperparameters that can be checked before any input is seen.
_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "reduction": F._check_reduction,
    "label_smoothing": F._check_label_smoothing,
}


class _Loss(Immutable):
    """Base of the loss layers; a subclass names its functional form, ``(_Loss, function=f)``,
    and the functional options its torch module does not take, ``functional_only=(...)``."""

    _function: ClassVar[Callable[..., jax.Array]]
    _signature: ClassVar[inspect.Signature]

    def __init_subclass__(
        cls,
        *,
        function: Callable[..., jax.Array],
        functional_only: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        hyper = list(inspect.signature(function).parameters.values())[2:]  # after input, target
        cls._function = staticmethod(function)
        cls._signature = inspect.Signature(
            [
                p.replace(kind=p.POSITIONAL_OR_KEYWORD if p.name == "weight" else p.KEYWORD_ONLY)
                for p in hyper
                if p.name not in functional_only
            ]
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{name}{self._signature}: {err}") from None
        bound.apply_defaults()
        for key, value in bound.arguments.items():
            if key in _CHECKS:
                _CHECKS[key](name, value)
            setattr(self, key, value)

    def __call__(self, input: jax.Array, target: jax.Array) -> jax.Array:
        hyper = {key: getattr(self, key) for key in self._signature.parameters}
        return self._function(input, target, **hyper)

    def __repr__(self) -> str:
        changed = (
            f"{key}={getattr(self, key)!r}"
            for key, p in self._signature.parameters.items()
            if not _is_default(getattr(self, key), p.default)
        )
        return f"{type(self).__name__}({', '.join(changed)})"


def _is_default(value: Any, default: Any) -> bool:
    """Whether an option is its default: by value for scalars, by identity for arrays."""
    return value is default or (isinstance(value, Number | str) and value == default)


class MSELoss(_Loss, function=F.mse_loss, functional_only=("weight",)):
    """``torch.nn.MSELoss``: mean squared error."""


class L1Loss(_Loss, function=F.l1_loss, functional_only=("weight",)):
    """``torch.nn.L1Loss``: mean absolute error."""


class CrossEntropyLoss(_Loss, function=F.cross_entropy):
    """``torch.nn.CrossEntropyLoss``: softmax cross-entropy of logits."""


class NLLLoss(_Loss, function=F.nll_loss):
    """``torch.nn.NLLLoss``: negative log-likelihood of log-probabilities."""


class BCELoss(_Loss, function=F.binary_cross_entropy):
    """``torch.nn.BCELoss``: binary cross-entropy of probabilities."""


class BCEWithLogitsLoss(_Loss, function=F.binary_cross_entropy_with_logits):
    """``torch.nn.BCEWithLogitsLoss``: binary cross-entropy of logits."""
