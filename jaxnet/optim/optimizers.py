"""torch.optim's optimisers outside the Adam family, as ``optax.GradientTransformation``s.

Each function takes torch's argument names and defaults and returns an optax
transformation assembled from optax's parts, with a piece from
:mod:`jaxnet.optim.transforms` only where torch's arithmetic differs::

    opt = jaxnet.optim.SGD(0.01, momentum=0.9)     # torch: SGD(model.parameters(), 0.01, 0.9)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)  # torch: optimizer.step()

``lr`` is a float or a schedule (``step -> lr``, e.g. from :mod:`jaxnet.optim.lr_scheduler`),
read at the number of updates done so far: step 0 for the first update, exactly as a
torch scheduler stepped once after every ``optimizer.step()``. SGD's and RMSprop's
``momentum`` take a schedule the same way. Invalid hyperparameters raise at
construction, before anything is traced: ``TypeError`` for one that is not a number,
``ValueError`` for one out of range. NaN is out of every range (torch refuses NaN in the
same checks, except SGD's, which let a NaN ``lr``, ``momentum``, ``dampening`` or
``weight_decay`` through to NaN parameters).

Every numeric hyperparameter may also be a JAX array, traced or not, as
``optax.inject_hyperparams`` passes them (``optax.inject_hyperparams(SGD)(lr=0.1,
momentum=0.9)``, a sweep under ``jit`` and ``vmap``): see :mod:`jaxnet.optim.base` for why
an array never takes a constant's shortcut (no momentum buffer for a zero ``momentum``),
and :mod:`jaxnet._checks` for what is checked when it is traced (its kind, not its range).

torch's kernel options ``foreach``, ``fused``, ``capturable`` and ``differentiable`` are
accepted (``None`` or a bool) and have no effect: the update is one XLA computation,
always fused, differentiable and capturable. Complex parameters step as their real view
and float16/bfloat16 ones in float32 arithmetic (see :func:`jaxnet.optim.base.as_torch_steps`).

Shared order of operations (torch's): ``maximize`` negates the gradient first, then
``weight_decay`` adds ``weight_decay * param`` (L2, coupled), then the optimiser's
scaling, then ``-lr``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from jaxnet._checks import check_lr, check_non_negative, check_not_nan, check_real, is_traced, shown
from jaxnet.optim import transforms
from jaxnet.optim.base import (
    TorchOptimizer,
    check_kernel_flags,
    check_non_negative_or_schedule,
    check_pair,
    check_unit_interval,
    constant_zero,
    l2,
    negate,
    scale_by_lr,
    torch_optimizer,
)
from jaxnet.optim.transforms import ScalarOrSchedule


def SGD(
    lr: optax.ScalarOrSchedule = 1e-3,
    momentum: ScalarOrSchedule = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    *,
    foreach: bool | None = None,
    differentiable: bool = False,
    fused: bool | None = None,
) -> TorchOptimizer:
    """Stochastic gradient descent with momentum (``torch.optim.SGD``).

    ``buf = g`` on the first step, then ``buf = momentum * buf + (1 - dampening) * g``;
    the step is ``-lr * buf`` (``-lr * (g + momentum * buf)`` with ``nesterov``).
    ``momentum`` may be a schedule (OneCycleLR's or CyclicLR's momentum cycling).
    """
    hyperparameters = dict(locals())
    check_lr("SGD", lr)
    check_non_negative_or_schedule("SGD", momentum=momentum)
    check_non_negative("SGD", weight_decay=weight_decay)
    check_not_nan("SGD", dampening=dampening)
    check_kernel_flags("SGD", foreach=foreach, differentiable=differentiable, fused=fused)
    no_momentum = not callable(momentum) and not is_traced(momentum) and momentum <= 0
    if nesterov and (no_momentum or (not is_traced(dampening) and dampening != 0)):
        raise ValueError(
            f"SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
            f"momentum={shown(momentum)!r}, dampening={shown(dampening)!r}"
        )
    if constant_zero(momentum):
        velocity = None
    elif constant_zero(dampening) and not callable(momentum):
        # optax.trace's zero-started buffer equals torch's buf = g here
        velocity = optax.trace(decay=momentum, nesterov=nesterov)
    else:
        velocity = transforms.momentum(momentum, dampening, nesterov)
    return torch_optimizer(
        "SGD",
        hyperparameters,
        negate(maximize),
        l2(weight_decay),
        velocity,
        scale_by_lr(lr),
    )


def RMSprop(
    lr: optax.ScalarOrSchedule = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: ScalarOrSchedule = 0.0,
    centered: bool = False,
    maximize: bool = False,
    *,
    capturable: bool = False,
    foreach: bool | None = None,
    differentiable: bool = False,
) -> TorchOptimizer:
    """RMSprop (``torch.optim.RMSprop``): ``g / (sqrt(v) + eps)``, eps outside the root.

    ``v`` is the moving average of ``g²`` with decay ``alpha`` (minus the squared moving
    average of ``g`` when ``centered``); with ``momentum`` (a float or a schedule) the
    scaled gradients are accumulated in a buffer before ``-lr``.
    """
    hyperparameters = dict(locals())
    check_lr("RMSprop", lr)
    check_non_negative_or_schedule("RMSprop", momentum=momentum)
    check_non_negative("RMSprop", eps=eps, weight_decay=weight_decay)
    check_unit_interval("RMSprop", "alpha", alpha, closed=True)
    check_kernel_flags(
        "RMSprop", capturable=capturable, foreach=foreach, differentiable=differentiable
    )
    scale = optax.scale_by_stddev if centered else optax.scale_by_rms
    if constant_zero(momentum):
        velocity = None
    elif callable(momentum):
        velocity = transforms.momentum(momentum)
    else:
        velocity = optax.trace(decay=momentum)
    return torch_optimizer(
        "RMSprop",
        hyperparameters,
        negate(maximize),
        l2(weight_decay),
        scale(decay=alpha, eps=eps, eps_in_sqrt=False),
        velocity,
        scale_by_lr(lr),
    )


def Adagrad(
    lr: optax.ScalarOrSchedule = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    *,
    foreach: bool | None = None,
    differentiable: bool = False,
    fused: bool | None = None,
) -> TorchOptimizer:
    """Adagrad (``torch.optim.Adagrad``): ``g / (sqrt(sum g²) + eps)``, eps outside the root.

    The step size of update ``t`` (from 0) is ``lr(t) / (1 + t * lr_decay)``.
    """
    hyperparameters = dict(locals())
    check_lr("Adagrad", lr)
    check_non_negative(
        "Adagrad",
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        initial_accumulator_value=initial_accumulator_value,
        eps=eps,
    )
    check_kernel_flags("Adagrad", foreach=foreach, differentiable=differentiable, fused=fused)
    if not constant_zero(lr_decay):
        schedule = lr if callable(lr) else optax.constant_schedule(lr)
        lr = _decayed(schedule, lr_decay)
    return torch_optimizer(
        "Adagrad",
        hyperparameters,
        negate(maximize),
        l2(weight_decay),
        transforms.scale_by_adagrad(initial_accumulator_value, eps),
        scale_by_lr(lr),
    )


def _decayed(schedule: optax.Schedule, lr_decay: float) -> optax.Schedule:
    """torch Adagrad's ``clr = lr / (1 + (step - 1) * lr_decay)``, torch's step from 1."""
    return lambda count: schedule(count) / (1 + count * lr_decay)


def Adadelta(
    lr: optax.ScalarOrSchedule = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    foreach: bool | None = None,
    *,
    capturable: bool = False,
    maximize: bool = False,
    differentiable: bool = False,
) -> TorchOptimizer:
    """Adadelta (``torch.optim.Adadelta``): ``optax.scale_by_adadelta``, which is torch's
    ``sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g``, then ``-lr``."""
    hyperparameters = dict(locals())
    check_lr("Adadelta", lr)
    check_unit_interval("Adadelta", "rho", rho, closed=True)
    check_non_negative("Adadelta", eps=eps, weight_decay=weight_decay)
    check_kernel_flags(
        "Adadelta", foreach=foreach, capturable=capturable, differentiable=differentiable
    )
    return torch_optimizer(
        "Adadelta",
        hyperparameters,
        negate(maximize),
        l2(weight_decay),
        optax.scale_by_adadelta(rho=rho, eps=eps),
        scale_by_lr(lr),
    )


def ASGD(
    lr: optax.ScalarOrSchedule = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0.0,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> TorchOptimizer:
    """Averaged SGD (``torch.optim.ASGD``); see :func:`jaxnet.optim.transforms.asgd`.

    As in torch, the step uses ``eta``, which starts at ``lr`` and is recomputed from the
    current ``lr`` after every step; the running average ``ax`` is kept in the state.
    """
    hyperparameters = dict(locals())
    check_lr("ASGD", lr)
    check_non_negative("ASGD", weight_decay=weight_decay, lambd=lambd, alpha=alpha)
    check_not_nan("ASGD", t0=t0)
    check_kernel_flags(
        "ASGD", foreach=foreach, differentiable=differentiable, capturable=capturable
    )
    return torch_optimizer(
        "ASGD",
        hyperparameters,
        negate(maximize),
        l2(weight_decay),
        transforms.asgd(lr, lambd, alpha, t0),
    )


def Rprop(
    lr: float = 1e-2,
    etas: Sequence[float] = (0.5, 1.2),
    step_sizes: Sequence[float] = (1e-6, 50.0),
    *,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> TorchOptimizer:
    """Resilient backpropagation (``torch.optim.Rprop``); see
    :func:`jaxnet.optim.transforms.rprop`.

    ``lr`` is only the initial step size (torch reads it once, when the state is
    created), so it is a float here, not a schedule.
    """
    hyperparameters = dict(locals())
    check_lr("Rprop", lr, schedule_ok=False)
    check_pair("Rprop", "etas", etas, "etaminus", "etaplus")
    check_pair("Rprop", "step_sizes", step_sizes, "min", "max")
    for i, value in enumerate((*etas, *step_sizes)):
        check_real("Rprop", f"{'etas' if i < 2 else 'step_sizes'}[{i % 2}]", value)
    if not any(map(is_traced, etas)) and not 0.0 < etas[0] < 1.0 < etas[1]:
        raise ValueError(
            f"Rprop: etas={tuple(map(shown, etas))!r} must satisfy 0 < etaminus < 1 < etaplus"
        )
    check_non_negative("Rprop", **{f"step_sizes[{i}]": s for i, s in enumerate(step_sizes)})
    check_kernel_flags(
        "Rprop", capturable=capturable, foreach=foreach, differentiable=differentiable
    )
    return torch_optimizer(
        "Rprop",
        hyperparameters,
        negate(maximize),
        transforms.rprop(lr, tuple(etas), tuple(step_sizes)),
    )


def Adafactor(
    lr: optax.ScalarOrSchedule = 1e-2,
    beta2_decay: float = -0.8,
    eps: Sequence[float | None] = (None, 1e-3),
    d: float = 1.0,
    weight_decay: float = 0.0,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
) -> TorchOptimizer:
    """Adafactor as torch implements it (``torch.optim.Adafactor``); see
    :func:`jaxnet.optim.transforms.adafactor`. ``weight_decay`` is decoupled
    (``param *= 1 - lr * weight_decay``). Complex parameters are refused, as in torch."""
    hyperparameters = dict(locals())
    check_lr("Adafactor", lr)
    check_real("Adafactor", "beta2_decay", beta2_decay)
    if not is_traced(beta2_decay) and not beta2_decay <= 0:
        raise ValueError(f"Adafactor: beta2_decay={shown(beta2_decay)!r} must be <= 0")
    check_pair("Adafactor", "eps", eps, "eps1", "eps2")
    if eps[0] is not None:
        check_non_negative("Adafactor", **{"eps[0]": eps[0]})
    check_non_negative("Adafactor", **{"eps[1]": eps[1]}, weight_decay=weight_decay)
    check_real("Adafactor", "d", d)
    if not is_traced(d) and not d >= 1:
        raise ValueError(f"Adafactor: clipping threshold d={shown(d)!r} must be >= 1")
    check_kernel_flags("Adafactor", foreach=foreach)
    optimizer = torch_optimizer(
        "Adafactor",
        hyperparameters,
        negate(maximize),
        transforms.adafactor(lr, beta2_decay, tuple(eps), d, weight_decay),
    )

    def init_fn(params):
        for leaf in jax.tree.leaves(params):
            if jnp.iscomplexobj(leaf):
                raise TypeError(
                    f"Adafactor: complex parameters are not supported, got {leaf.dtype}"
                )
        return optimizer.init(params)

    return TorchOptimizer(
        optax.GradientTransformation(init_fn, optimizer.update), optimizer.name, optimizer.groups
    )
