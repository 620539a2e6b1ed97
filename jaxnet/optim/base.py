"""What every jaxnet optimiser shares: the returned type, how complex and half-precision
parameters are stepped, and the argument checks torch makes at construction.

PyTorch equivalent: ``torch.optim.Optimizer``'s bookkeeping (``defaults``,
``param_groups``) and the ``view_as_real`` every torch optimiser applies to a complex
parameter.

Constants and data. A hyperparameter given as a Python or NumPy number is a constant of
the optimiser: a zero ``weight_decay`` adds no term and a zero ``momentum`` keeps no
buffer, as in torch. One given as a JAX array, which is what ``optax.inject_hyperparams``
passes (concrete arrays to ``init``, traced ones to ``update`` under ``jit``), is data: the
optimiser takes the path that is correct for every value, so its state has the same
structure whatever the value and a traced value steps as the same concrete one would.
Checks follow :mod:`jaxnet._checks`: a concrete value is checked in full, a traced one for
its kind only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet._checks import check_non_negative, check_real, is_traced, shown

# torch's kernel options: jaxnet's update is one XLA computation, always fused, always
# differentiable (it is a JAX function) and always capturable (it runs under jit), so
# these select nothing. They are accepted so that a torch call ports unchanged.
KERNEL_FLAGS = ("foreach", "fused", "capturable", "differentiable")


class ParamGroup(NamedTuple):
    """One of torch's ``param_groups``: its ``optax.multi_transform`` label (``None`` for
    a single group of all parameters), ``members(params) -> {dotted name: in the group}``
    (``None``: all), and its torch hyperparameters (floats or schedules)."""

    label: str | None
    members: Callable[[Any], dict[str, bool]] | None
    hyperparameters: Mapping[str, Any]


class TorchOptimizer(optax.GradientTransformation):
    """An ``optax.GradientTransformation`` that also records torch's class name and its
    parameter groups, for :func:`jaxnet.optim.torch_state_dict` and
    :func:`jaxnet.optim.load_torch_state_dict`. It is used as any optax transformation.
    """

    name: str
    groups: tuple[ParamGroup, ...]

    def __new__(
        cls,
        transform: optax.GradientTransformation,
        name: str = "",
        groups: tuple[ParamGroup, ...] = (),
    ) -> TorchOptimizer:
        self = super().__new__(cls, transform.init, transform.update)
        self.name = name
        self.groups = groups
        return self


def torch_optimizer(
    name: str, hyperparameters: Mapping[str, Any], *parts: optax.GradientTransformation | None
) -> TorchOptimizer:
    """``optax.chain`` of ``parts`` (``None`` skipped), stepping complex and half-precision
    parameters as torch does, recorded as torch's ``name`` with one parameter group."""
    transform = optax.chain(*(part for part in parts if part is not None))
    group = ParamGroup(None, None, dict(hyperparameters))
    return TorchOptimizer(as_torch_steps(transform), name, (group,))


def as_torch_steps(transform: optax.GradientTransformation) -> optax.GradientTransformation:
    """``transform`` applied as torch applies its optimisers to special dtypes.

    * A complex parameter is stepped as its real view (``torch.view_as_real``: real and
      imaginary parts as a trailing axis of 2), so moments are kept per part, never of
      ``|g|²``. Its gradient is the one ``jax.grad`` returns, ``∂L/∂x - i ∂L/∂y``, the
      conjugate of torch's ``p.grad``; the real view of torch's gradient is therefore
      ``(re g, -im g)``. State for a complex parameter is kept in the real view.
    * A float16 or bfloat16 parameter is stepped in float32 arithmetic, its state kept in
      its own dtype, as torch's fused kernels (``fused=True``) do. torch's default
      for-loop kernel computes in float16, where Adam's ``eps=1e-8`` rounds to 0 and a
      zero gradient steps to NaN.
    """

    def init_fn(params):
        return transform.init(_real_view(params))

    def update_fn(updates, state, params=None):
        grads = jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, updates)
        real_params = None if params is None else _upcast(_real_view(params))
        wide_state = _upcast(state)
        steps, wide_state = transform.update(_upcast(_real_view(grads)), wide_state, real_params)
        steps = jax.tree.map(_from_real_view, steps, updates)
        return steps, optax.tree.cast_like(wide_state, state)

    return optax.GradientTransformation(init_fn, update_fn)


_HALF = (jnp.float16, jnp.bfloat16)


def _upcast(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.astype(jnp.float32) if x.dtype in _HALF else x, tree)


def _real_view(tree: Any) -> Any:
    return jax.tree.map(
        lambda x: jnp.stack([x.real, x.imag], -1) if jnp.iscomplexobj(x) else x, tree
    )


def _from_real_view(step: jax.Array, like: jax.Array) -> jax.Array:
    if jnp.iscomplexobj(like):
        step = jax.lax.complex(step[..., 0], step[..., 1])
    return step.astype(like.dtype)


def negate(maximize: bool) -> optax.GradientTransformation | None:
    """torch's ``maximize``: the gradient negated before anything else."""
    return optax.scale(-1.0) if maximize else None


def constant_zero(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy number equal to 0: a constant that lets an
    optimiser drop a part and its state. A JAX array is data (see the module docstring)
    and is never a constant zero, even a concrete one."""
    return not isinstance(value, jax.Array) and not callable(value) and value == 0


def l2(weight_decay: Any) -> optax.GradientTransformation | None:
    """``weight_decay * param`` added to the gradient (or to the step, when decoupled);
    nothing for a constant zero."""
    return None if constant_zero(weight_decay) else optax.add_decayed_weights(weight_decay)


def scale_by_lr(lr: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """``-lr`` as a schedule even when constant, so that every optimiser's state counts
    its steps (torch's ``state['step']``, which :mod:`jaxnet.optim.torch_state` reads
    and writes)."""
    return optax.scale_by_learning_rate(lr if callable(lr) else optax.constant_schedule(lr))


def check_kernel_flags(owner: str, **flags: Any) -> None:
    """torch's kernel selectors: ``None`` or a bool (they have no effect in jaxnet)."""
    for name, value in flags.items():
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{owner}: {name} must be a bool or None, got {type(value).__name__}")


def check_non_negative_or_schedule(owner: str, **values: Any) -> None:
    """Real numbers >= 0, or schedules (callables, not checked)."""
    check_non_negative(owner, **{k: v for k, v in values.items() if not callable(v)})


def check_unit_interval(owner: str, name: str, value: Any, closed: bool = False) -> None:
    """A real number in ``[0, 1)`` (``[0, 1]`` if ``closed``); a schedule is not checked,
    nor a traced value's range."""
    if callable(value):
        return
    check_real(owner, name, value)
    if is_traced(value):
        return
    if not (0 <= value <= 1 if closed else 0 <= value < 1):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{owner}: {name}={shown(value)!r} must be in {interval}")


def check_pair(owner: str, name: str, value: Any, first: str, second: str) -> None:
    """A pair ``(first, second)``: ``TypeError`` for another kind, ``ValueError`` for
    another length."""
    if isinstance(value, str) or not (isinstance(value, Sequence) or np.ndim(value) == 1):
        raise TypeError(
            f"{owner}: {name} must be a pair ({first}, {second}), got {type(value).__name__}"
        )
    if len(value) != 2:
        raise ValueError(f"{owner}: {name} must be a pair ({first}, {second}), got {value!r}")


def check_betas(owner: str, betas: Sequence[Any]) -> None:
    """``betas = (beta1, beta2)`` in ``[0, 1)``; ``beta1`` may be a schedule."""
    check_pair(owner, "betas", betas, "beta1", "beta2")
    if callable(betas[1]):
        raise TypeError(f"{owner}: betas[1] must be a float; only betas[0] takes a schedule")
    for i, beta in enumerate(betas):
        check_unit_interval(owner, f"betas[{i}]", beta)
