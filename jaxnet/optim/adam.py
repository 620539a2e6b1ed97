"""torch.optim's Adam family (Adam, AdamW, Adamax, NAdam, RAdam) as optax transformations.

Conventions as in :mod:`jaxnet.optim.optimizers` (``lr`` a float or a schedule, kernel
flags accepted without effect, checks at construction). ``betas[0]`` may also be a
schedule (``step -> beta1``), read at the number of updates done so far, for
OneCycleLR's and CyclicLR's momentum cycling. ``weight_decay`` is L2 (added to the
gradient) unless decoupled (AdamW, or ``decoupled_weight_decay=True``), where the step
gains ``-lr * weight_decay * param``, torch's ``param *= 1 - lr * weight_decay``.

Under ``optax.inject_hyperparams`` every number may arrive as a (traced) JAX array, and
``betas`` as a 1-d array of two (a tuple is kept static by optax): see
:mod:`jaxnet.optim.base` for how an array is stepped and :mod:`jaxnet._checks` for what is
checked when it is traced.
"""

from __future__ import annotations

from collections.abc import Sequence

import optax

from jaxnet._checks import check_lr, check_non_negative
from jaxnet.optim import adam_transforms
from jaxnet.optim.base import (
    KERNEL_FLAGS,
    TorchOptimizer,
    check_betas,
    check_kernel_flags,
    l2,
    negate,
    scale_by_lr,
    torch_optimizer,
)
from jaxnet.optim.transforms import ScalarOrSchedule

Betas = Sequence[ScalarOrSchedule]


def _adam_family(
    name: str,
    hyperparameters: dict,
    scaling: optax.GradientTransformation,
    decoupled: bool,
) -> TorchOptimizer:
    """maximize, then L2 or the decoupled decay around ``scaling``, then ``-lr``."""
    h = hyperparameters
    check_lr(name, h["lr"])
    check_non_negative(name, eps=h["eps"], weight_decay=h["weight_decay"])
    check_kernel_flags(name, **{k: h[k] for k in KERNEL_FLAGS if k in h})
    weight_decay = h["weight_decay"]
    return torch_optimizer(
        name,
        h,
        negate(h["maximize"]),
        None if decoupled else l2(weight_decay),
        scaling,
        l2(weight_decay) if decoupled else None,
        scale_by_lr(h["lr"]),
    )


def _checked_betas(name: str, betas: Betas) -> tuple[ScalarOrSchedule, float]:
    check_betas(name, betas)
    return betas[0], betas[1]


def Adam(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: Betas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    *,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
    decoupled_weight_decay: bool = False,
) -> TorchOptimizer:
    """Adam (``torch.optim.Adam``); ``weight_decay`` is L2 unless ``decoupled_weight_decay``.

    ``amsgrad`` follows torch: the maximum of the raw second moment, bias-corrected
    afterwards (see :func:`jaxnet.optim.adam_transforms.scale_by_adam`).
    """
    return _adam("Adam", dict(locals()), decoupled_weight_decay)


def AdamW(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: Betas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    maximize: bool = False,
    *,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> TorchOptimizer:
    """Adam with decoupled weight decay (``torch.optim.AdamW``).

    The step is ``-lr * (adam(g) + weight_decay * param)``, torch's
    ``param *= 1 - lr * weight_decay`` followed by the Adam step. The default
    ``weight_decay`` is torch's ``1e-2``, not ``optax.adamw``'s ``1e-4``.
    """
    return _adam("AdamW", dict(locals()), True)


def _adam(name: str, hyperparameters: dict, decoupled: bool) -> TorchOptimizer:
    h = hyperparameters
    b1, b2 = _checked_betas(name, h["betas"])
    if callable(b1) or h["amsgrad"]:
        scaling = adam_transforms.scale_by_adam(b1, b2, h["eps"], h["amsgrad"])
    else:  # optax's Adam is torch's for a constant beta1
        scaling = optax.scale_by_adam(b1=b1, b2=b2, eps=h["eps"])
    return _adam_family(name, h, scaling, decoupled)


def Adamax(
    lr: optax.ScalarOrSchedule = 2e-3,
    betas: Betas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> TorchOptimizer:
    """Adamax, Adam with the infinity norm (``torch.optim.Adamax``): ``optax.scale_by_adamax``
    for a constant ``beta1``, :func:`jaxnet.optim.adam_transforms.scale_by_adamax` for a
    schedule."""
    h = dict(locals())
    b1, b2 = _checked_betas("Adamax", betas)
    if callable(b1):
        scaling = adam_transforms.scale_by_adamax(b1, b2, eps)
    else:
        scaling = optax.scale_by_adamax(b1=b1, b2=b2, eps=eps)
    return _adam_family("Adamax", h, scaling, False)


def NAdam(
    lr: optax.ScalarOrSchedule = 2e-3,
    betas: Betas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> TorchOptimizer:
    """NAdam with momentum decay (``torch.optim.NAdam``); see
    :func:`jaxnet.optim.adam_transforms.scale_by_nadam`."""
    h = dict(locals())
    b1, b2 = _checked_betas("NAdam", betas)
    check_non_negative("NAdam", momentum_decay=momentum_decay)
    scaling = adam_transforms.scale_by_nadam(b1, b2, eps, momentum_decay)
    return _adam_family("NAdam", h, scaling, decoupled_weight_decay)


def RAdam(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: Betas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> TorchOptimizer:
    """Rectified Adam (``torch.optim.RAdam``); see
    :func:`jaxnet.optim.adam_transforms.scale_by_radam`."""
    h = dict(locals())
    b1, b2 = _checked_betas("RAdam", betas)
    scaling = adam_transforms.scale_by_radam(b1, b2, eps)
    return _adam_family("RAdam", h, scaling, decoupled_weight_decay)
