"""torch.optim's optimisers as ``optax.GradientTransformation``s.

Each function takes torch's argument names and defaults and returns an optax
transformation assembled from optax's parts, with a piece from
:mod:`jaxnet.optim.transforms` only where torch's arithmetic differs::

    opt = jaxnet.optim.SGD(0.01, momentum=0.9)     # torch: SGD(model.parameters(), 0.01, 0.9)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)  # torch: optimizer.step()

``lr`` is a float or a schedule (``step -> lr``, e.g. from :mod:`jaxnet.optim.lr_scheduler`),
read at the number of updates done so far: step 0 for the first update, exactly as a
torch scheduler stepped once after every ``optimizer.step()``. Invalid hyperparameters
raise at construction, before anything is traced: ``TypeError`` for one that is not a
number, ``ValueError`` for one out of range. NaN is out of every range (torch refuses
NaN in the same checks, except SGD's, which let a NaN ``lr``, ``momentum``,
``dampening`` or ``weight_decay`` through to NaN parameters).

Shared order of operations (torch's): ``maximize`` negates the gradient first, then
``weight_decay`` adds ``weight_decay * param`` (L2, coupled; AdamW decouples it), then
the optimiser's scaling, then ``-lr``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optax

from jaxnet._checks import check_lr, check_non_negative, check_not_nan, check_real
from jaxnet.optim import transforms


def SGD(
    lr: optax.ScalarOrSchedule = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """Stochastic gradient descent with momentum (``torch.optim.SGD``).

    ``buf = g`` on the first step, then ``buf = momentum * buf + (1 - dampening) * g``;
    the step is ``-lr * buf`` (``-lr * (g + momentum * buf)`` with ``nesterov``).
    """
    check_lr("SGD", lr)
    check_non_negative("SGD", momentum=momentum, weight_decay=weight_decay)
    check_not_nan("SGD", dampening=dampening)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(
            f"SGD: nesterov=True needs momentum > 0 and dampening = 0, got {momentum=}, "
            f"{dampening=}"
        )
    if momentum == 0:
        velocity = None
    elif dampening == 0:  # optax.trace's zero-started buffer equals torch's buf = g here
        velocity = optax.trace(decay=momentum, nesterov=nesterov)
    else:
        velocity = transforms.dampened_trace(momentum, dampening)
    return _chain(_negate(maximize), _l2(weight_decay), velocity, optax.scale_by_learning_rate(lr))


def Adam(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """Adam (``torch.optim.Adam``); ``weight_decay`` is L2, added to the gradient.

    ``amsgrad`` follows torch: the maximum of the raw second moment, bias-corrected
    afterwards (see :func:`jaxnet.optim.transforms.scale_by_amsgrad`).
    """
    check_lr("Adam", lr)
    check_non_negative("Adam", eps=eps, weight_decay=weight_decay)
    _check_betas("Adam", betas)
    return _chain(
        _negate(maximize),
        _l2(weight_decay),
        _scale_by_adam(betas, eps, amsgrad),
        optax.scale_by_learning_rate(lr),
    )


def AdamW(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """Adam with decoupled weight decay (``torch.optim.AdamW``).

    The step is ``-lr * (adam(g) + weight_decay * param)``, torch's
    ``param *= 1 - lr * weight_decay`` followed by the Adam step. The default
    ``weight_decay`` is torch's ``1e-2``, not ``optax.adamw``'s ``1e-4``.
    """
    check_lr("AdamW", lr)
    check_non_negative("AdamW", eps=eps, weight_decay=weight_decay)
    _check_betas("AdamW", betas)
    return _chain(
        _negate(maximize),
        _scale_by_adam(betas, eps, amsgrad),
        _l2(weight_decay),
        optax.scale_by_learning_rate(lr),
    )


def RMSprop(
    lr: optax.ScalarOrSchedule = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """RMSprop (``torch.optim.RMSprop``): ``g / (sqrt(v) + eps)``, eps outside the root.

    ``v`` is the moving average of ``g²`` with decay ``alpha`` (minus the squared moving
    average of ``g`` when ``centered``); with ``momentum`` the scaled gradients are
    accumulated in a zero-started buffer before ``-lr``.
    """
    check_lr("RMSprop", lr)
    check_non_negative("RMSprop", eps=eps, weight_decay=weight_decay, momentum=momentum)
    check_real("RMSprop", "alpha", alpha)
    if not 0 <= alpha <= 1:
        raise ValueError(f"RMSprop: {alpha=} must be in [0, 1]")
    scale = optax.scale_by_stddev if centered else optax.scale_by_rms
    return _chain(
        _negate(maximize),
        _l2(weight_decay),
        scale(decay=alpha, eps=eps, eps_in_sqrt=False),
        optax.trace(decay=momentum) if momentum > 0 else None,
        optax.scale_by_learning_rate(lr),
    )


def Adagrad(
    lr: optax.ScalarOrSchedule = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """Adagrad (``torch.optim.Adagrad``): ``g / (sqrt(sum g²) + eps)``, eps outside the root.

    The step size of update ``t`` (from 0) is ``lr(t) / (1 + t * lr_decay)``.
    """
    check_lr("Adagrad", lr)
    check_non_negative(
        "Adagrad",
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        initial_accumulator_value=initial_accumulator_value,
        eps=eps,
    )
    if lr_decay != 0:
        schedule = lr if callable(lr) else optax.constant_schedule(lr)
        lr = _decayed(schedule, lr_decay)
    return _chain(
        _negate(maximize),
        _l2(weight_decay),
        transforms.scale_by_adagrad(initial_accumulator_value, eps),
        optax.scale_by_learning_rate(lr),
    )


def _decayed(schedule: optax.Schedule, lr_decay: float) -> optax.Schedule:
    """torch Adagrad's ``clr = lr / (1 + (step - 1) * lr_decay)``, torch's step from 1."""
    return lambda count: schedule(count) / (1 + count * lr_decay)


def _scale_by_adam(
    betas: Sequence[float], eps: float, amsgrad: bool
) -> optax.GradientTransformation:
    b1, b2 = betas
    if amsgrad:
        return transforms.scale_by_amsgrad(b1, b2, eps)
    return optax.scale_by_adam(b1=b1, b2=b2, eps=eps)


def _negate(maximize: bool) -> optax.GradientTransformation | None:
    return optax.scale(-1.0) if maximize else None


def _l2(weight_decay: float) -> optax.GradientTransformation | None:
    return optax.add_decayed_weights(weight_decay) if weight_decay else None


def _chain(*parts: optax.GradientTransformation | None) -> optax.GradientTransformation:
    return optax.chain(*(part for part in parts if part is not None))


def _check_betas(optimizer: str, betas: Sequence[float]) -> None:
    if isinstance(betas, str) or not (isinstance(betas, Sequence) or np.ndim(betas) == 1):
        raise TypeError(
            f"{optimizer}: betas must be a pair (beta1, beta2), got {type(betas).__name__}"
        )
    if len(betas) != 2:
        raise ValueError(f"{optimizer}: betas must be a pair (beta1, beta2), got {betas!r}")
    for i, beta in enumerate(betas):
        check_real(optimizer, f"betas[{i}]", beta)
        if not 0 <= beta < 1:
            raise ValueError(f"{optimizer}: betas[{i}]={beta!r} must be in [0, 1)")
