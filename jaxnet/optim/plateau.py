"""``torch.optim.lr_scheduler.ReduceLROnPlateau`` as a pure state machine.

Torch's scheduler reads a metric once an epoch (``scheduler.step(val_loss)``) and
multiplies the optimizer's lr by ``factor`` after ``patience`` epochs without
improvement. Here the bookkeeping is an immutable :class:`PlateauState` of JAX scalars
(it can live in a jitted train state), the step is the pure
``ReduceLROnPlateau.update(state, metric) -> state``, and the lr is
``lr * state.scale``. The optimiser follows it without recompiling through
:func:`scale_by_plateau`, an optax transformation (placed after the optimiser) that
multiplies the updates by the scale held in its own state; :func:`update_plateau` steps
that state from the metric::

    plateau = ReduceLROnPlateau(0.1, mode="min", patience=5)
    opt = optax.chain(jaxnet.optim.SGD(0.1, momentum=0.9), scale_by_plateau(plateau))
    opt_state = opt.init(params)
    for epoch in range(epochs):
        ...                                            # jitted steps: opt.update(...)
        opt_state = update_plateau(opt_state, val_loss)  # torch: scheduler.step(val_loss)

Every torch optimiser's update is proportional to its lr, so scaling the update is
scaling the lr.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxnet._checks import check_lr, check_non_negative, check_real


class PlateauState(NamedTuple):
    """What torch's ReduceLROnPlateau keeps between epochs, as JAX scalars.

    ``scale`` multiplies the lr (1 at the start; one entry per param group when the
    plateau has several lrs); ``best`` is the best metric so far; ``num_bad_epochs`` and
    ``cooldown_counter`` are torch's counters.
    """

    scale: jax.Array
    best: jax.Array
    num_bad_epochs: jax.Array
    cooldown_counter: jax.Array


@dataclasses.dataclass(frozen=True)
class ReduceLROnPlateau:
    """Reduce the lr when a metric stops improving (``lr_scheduler.ReduceLROnPlateau``).

    Counts epochs: :meth:`update` is torch's ``scheduler.step(metric)``, called once an
    epoch with the evaluation metric. ``lr`` is the lr it reduces: a float, one float
    per param group (then ``min_lr`` may be one per group too), or a schedule (then pass
    the step to :meth:`update` and :meth:`get_last_lr`: the plateau scales the schedule,
    as torch's scales whatever lr another scheduler left). The arguments are torch's:

    - ``mode``: ``'min'`` (a lower metric is better) or ``'max'``;
    - ``threshold``, ``threshold_mode``: a metric is better than ``best`` when below
      ``best * (1 - threshold)`` (``'rel'``) or ``best - threshold`` (``'abs'``), above
      ``best * (1 + threshold)`` or ``best + threshold`` in ``'max'`` mode;
    - after more than ``patience`` epochs without a better metric the lr becomes
      ``max(lr * factor, min_lr)``, unless that lowers it by ``eps`` or less; then
      ``cooldown`` epochs pass in which bad epochs are not counted.

    ``0 <= factor < 1`` (torch refuses ``factor >= 1``), ``patience`` and ``cooldown``
    ints >= 0, ``threshold``, ``min_lr`` and ``eps`` >= 0.
    """

    lr: float | Sequence[float] | Callable[[jax.typing.ArrayLike], jax.Array]
    mode: Literal["min", "max"] = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: int = 0
    min_lr: float | Sequence[float] = 0.0
    eps: float = 1e-8

    def __post_init__(self):
        owner = "ReduceLROnPlateau"
        if isinstance(self.lr, Sequence) and not isinstance(self.lr, str):
            object.__setattr__(self, "lr", tuple(self.lr))
            for i, lr in enumerate(self.lr):
                check_lr(owner, lr, name=f"lr[{i}]", schedule_ok=False)
        else:
            check_lr(owner, self.lr)
        if self.mode not in ("min", "max"):
            raise ValueError(f"{owner}: mode must be 'min' or 'max', got {self.mode!r}")
        if self.threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"{owner}: threshold_mode must be 'rel' or 'abs', got {self.threshold_mode!r}"
            )
        check_real(owner, "factor", self.factor)
        if not 0 <= self.factor < 1:
            raise ValueError(f"{owner}: factor={self.factor!r} must be in [0, 1)")
        for name in ("patience", "cooldown"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{owner}: {name}={value!r} must be an int >= 0")
            if value < 0:
                raise ValueError(f"{owner}: {name}={value!r} must be an int >= 0")
        check_non_negative(owner, threshold=self.threshold, eps=self.eps)
        if isinstance(self.min_lr, Sequence) and not isinstance(self.min_lr, str):
            object.__setattr__(self, "min_lr", tuple(self.min_lr))
            groups = len(self.lr) if isinstance(self.lr, tuple) else None
            if groups != len(self.min_lr):
                raise ValueError(
                    f"{owner}: expected one min_lr per lr ({groups or 'a single lr'}), "
                    f"got {len(self.min_lr)} min_lrs"
                )
            check_non_negative(owner, **{f"min_lr[{i}]": m for i, m in enumerate(self.min_lr)})
        else:
            check_non_negative(owner, min_lr=self.min_lr)

    def init(self) -> PlateauState:
        """The state before the first epoch: scale 1, no best metric yet."""
        worst = jnp.inf if self.mode == "min" else -jnp.inf
        shape = (len(self.lr),) if isinstance(self.lr, tuple) else ()
        zero = jnp.zeros((), jnp.int32)
        return PlateauState(jnp.ones(shape, _float()), jnp.asarray(worst, _float()), zero, zero)

    def update(
        self, state: PlateauState, metric: jax.typing.ArrayLike, step: Any = None
    ) -> PlateauState:
        """One epoch's metric in, the next state out (torch: ``scheduler.step(metric)``).

        Pure and jittable; ``step`` is the schedule's step when ``lr`` is a schedule.
        """
        current = jnp.asarray(metric, _float())
        if current.shape != ():
            raise ValueError(
                f"ReduceLROnPlateau.update: metric must be a scalar, got shape {current.shape}"
            )
        sign = 1.0 if self.mode == "max" else -1.0
        if self.threshold_mode == "rel":
            better = sign * current > sign * state.best * (1 + sign * self.threshold)
        else:
            better = sign * current > sign * state.best + self.threshold
        best = jnp.where(better, current, state.best)
        bad = jnp.where(better, 0, state.num_bad_epochs + 1)
        in_cooldown = state.cooldown_counter > 0
        cooldown = jnp.where(in_cooldown, state.cooldown_counter - 1, state.cooldown_counter)
        bad = jnp.where(in_cooldown, 0, bad)  # bad epochs in cooldown are not counted
        reduce = bad > self.patience
        base = self._base_lr(step)
        old = base * state.scale
        new = jnp.maximum(old * self.factor, jnp.asarray(self.min_lr, _float()))
        lowered = reduce & (old - new > self.eps)
        scale = jnp.where(lowered, new / jnp.where(base > 0, base, 1.0), state.scale)
        return PlateauState(
            scale,
            best,
            jnp.where(reduce, 0, bad).astype(jnp.int32),
            jnp.where(reduce, self.cooldown, cooldown).astype(jnp.int32),
        )

    def get_last_lr(self, state: PlateauState, step: Any = None) -> jax.Array:
        """The lr now (torch: ``scheduler.get_last_lr()``): ``lr * state.scale``."""
        return self._base_lr(step) * state.scale

    def _base_lr(self, step: Any) -> jax.Array:
        if callable(self.lr):
            if step is None:
                raise TypeError(
                    "ReduceLROnPlateau: lr is a schedule; pass the step to know its value"
                )
            return jnp.asarray(self.lr(step), _float())
        return jnp.asarray(self.lr, _float())


@struct.dataclass
class PlateauScaleState:
    """:func:`scale_by_plateau`'s state: the update count, the plateau and its settings."""

    count: jax.Array
    plateau: PlateauState
    config: ReduceLROnPlateau = struct.field(pytree_node=False)


def scale_by_plateau(plateau: ReduceLROnPlateau) -> optax.GradientTransformation:
    """Multiply the updates by the plateau's lr scale; place it after the optimiser.

    ``optax.chain(jaxnet.optim.Adam(1e-3), scale_by_plateau(plateau))`` follows torch's
    ``Adam`` with a ``ReduceLROnPlateau``: the scale is a value in the optimiser state,
    so a reduction changes no compiled code. Step it with :func:`update_plateau`. The
    plateau's ``lr`` must be the optimiser's (a float or the same schedule): it decides
    ``min_lr`` and ``eps``. For per-group ``min_lr``, give each param group its own
    plateau (their counters see the same metrics, so they agree).
    """
    if not isinstance(plateau, ReduceLROnPlateau):
        raise TypeError(
            f"scale_by_plateau: expected a ReduceLROnPlateau, got {type(plateau).__name__}"
        )
    if isinstance(plateau.lr, tuple):
        raise ValueError(
            "scale_by_plateau: the plateau has one lr per param group; give each group's "
            "optimiser its own plateau"
        )

    def init(params):
        del params
        return PlateauScaleState(jnp.zeros((), jnp.int32), plateau.init(), plateau)

    def update(updates, state, params=None):
        del params
        scale = state.plateau.scale
        updates = jax.tree.map(lambda u: u * scale.astype(u.dtype), updates)
        return updates, state.replace(count=optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init, update)


def update_plateau(opt_state: Any, metric: jax.typing.ArrayLike) -> Any:
    """Step every :func:`scale_by_plateau` state in ``opt_state`` with the epoch's metric.

    torch's ``scheduler.step(metric)``; pure and jittable, and a new scale recompiles
    nothing. With a schedule as the plateau's ``lr``, the lr it judges is the
    schedule's value for the next update (torch's order: ``scheduler.step()`` for the
    schedule, then ``plateau.step(metric)``).
    """

    def step(node):
        if not isinstance(node, PlateauScaleState):
            return node
        found.append(node)
        return node.replace(plateau=node.config.update(node.plateau, metric, node.count))

    found: list[PlateauScaleState] = []
    stepped = jax.tree.map(step, opt_state, is_leaf=lambda n: isinstance(n, PlateauScaleState))
    if not found:
        raise ValueError("update_plateau: opt_state holds no scale_by_plateau state")
    return stepped


def _float() -> Any:
    """The widest float JAX has enabled (float64 under ``jax_enable_x64``, as torch's
    Python floats)."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)
