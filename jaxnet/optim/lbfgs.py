"""L-BFGS (``torch.optim.LBFGS``) in functional form: a step takes the loss function.

PyTorch::

    opt = torch.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe")
    def closure():
        opt.zero_grad(); loss = loss_fn(model); loss.backward(); return loss
    loss = opt.step(closure)

jaxnet::

    opt = optim.LBFGS(line_search_fn="strong_wolfe")
    state = opt.init(params)
    params, state, loss = opt.step(loss_fn, params, state)   # loss_fn(params) -> scalar

A faithful port of torch's algorithm (two-loop recursion, ``_strong_wolfe`` and
``_cubic_interpolate``, every stopping rule and torch's defaults, ``max_eval =
max_iter * 5 // 4``). It is a host-side Python loop, as torch's is: the loss and its
gradient are one jitted function of the flat parameter vector (compiled once per loss
function and parameter layout), and the decisions between evaluations run in Python on
float64 scalars. It is therefore not jittable. The parameters are flattened as torch
flattens them: each parameter in order, a complex one as its real view.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxnet._checks import check_lr, check_non_negative, check_positive_int


class LbfgsState(NamedTuple):
    """torch LBFGS's ``state``: counters, the last direction ``d`` and step ``t``, the
    curvature history, and the previous gradient and loss (``None`` before the first
    step)."""

    func_evals: int = 0
    n_iter: int = 0
    d: jax.Array | None = None
    t: float | None = None
    old_dirs: tuple[jax.Array, ...] = ()
    old_stps: tuple[jax.Array, ...] = ()
    ro: tuple[float, ...] = ()
    H_diag: float | None = None
    prev_flat_grad: jax.Array | None = None
    prev_loss: float | None = None


class LbfgsOptimizer(NamedTuple):
    """``init(params) -> state`` and ``step(loss_fn, params, state) -> (params, state,
    loss)``; ``loss`` is the loss before the step, as torch's ``step`` returns it."""

    init: Callable[[Any], LbfgsState]
    step: Callable[[Callable, Any, LbfgsState], tuple[Any, LbfgsState, jax.Array]]


def LBFGS(
    lr: float = 1.0,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> LbfgsOptimizer:
    """L-BFGS with torch's arguments and defaults (``torch.optim.LBFGS``)."""
    check_lr("LBFGS", lr, schedule_ok=False)
    check_positive_int("LBFGS", max_iter=max_iter, history_size=history_size)
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    check_positive_int("LBFGS", max_eval=max_eval)
    check_non_negative("LBFGS", tolerance_grad=tolerance_grad, tolerance_change=tolerance_change)
    if line_search_fn not in (None, "strong_wolfe"):
        raise ValueError(
            f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}"
        )
    lr = float(lr)

    def step(loss_fn, params, state):
        flat, unflatten = _flatten(params)
        objective = _objective(loss_fn, unflatten)

        def evaluate(x):
            loss, grad = objective(x)
            return float(loss), grad

        orig_loss, flat_grad = objective(flat)
        loss = float(orig_loss)
        current_evals, func_evals, n_iter = 1, state.func_evals + 1, state.n_iter
        if _max_abs(flat_grad) <= tolerance_grad:
            return params, state._replace(func_evals=func_evals), orig_loss

        d, t, h_diag = state.d, state.t, state.H_diag
        old_dirs, old_stps, ro = list(state.old_dirs), list(state.old_stps), list(state.ro)
        prev_flat_grad, prev_loss = state.prev_flat_grad, state.prev_loss
        x = flat
        n = 0
        while n < max_iter:
            n += 1
            n_iter += 1
            if n_iter == 1:
                d, old_dirs, old_stps, ro, h_diag = -flat_grad, [], [], [], 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(jnp.dot(y, s))
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(jnp.dot(y, y))
                d = _two_loop(flat_grad, old_dirs, old_stps, ro, h_diag)
            prev_flat_grad, prev_loss = flat_grad, loss
            first = n_iter == 1
            t = min(1.0, 1.0 / float(jnp.sum(jnp.abs(flat_grad)))) * lr if first else lr
            gtd = float(jnp.dot(flat_grad, d))
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    lambda x0, t, d: evaluate(x0 + t * d),
                    x,
                    t,
                    d,
                    loss,
                    flat_grad,
                    gtd,
                    max_ls=max_eval - current_evals,
                )
                x = x + t * d
                opt_cond = _max_abs(flat_grad) <= tolerance_grad
            else:
                x = x + t * d
                if n != max_iter:
                    loss, flat_grad = evaluate(x)
                    opt_cond = _max_abs(flat_grad) <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            func_evals += ls_func_evals

            if (
                n == max_iter
                or current_evals >= max_eval
                or opt_cond
                or _max_abs(d * t) <= tolerance_change
                or abs(loss - prev_loss) < tolerance_change
            ):
                break

        new_state = LbfgsState(
            func_evals,
            n_iter,
            d,
            t,
            tuple(old_dirs),
            tuple(old_stps),
            tuple(ro),
            h_diag,
            prev_flat_grad,
            prev_loss,
        )
        return unflatten(x), new_state, orig_loss

    return LbfgsOptimizer(lambda params: LbfgsState(), step)


def _two_loop(flat_grad, old_dirs, old_stps, ro, h_diag):
    """The L-BFGS direction: ``-H g`` by torch's two-loop recursion."""
    al = [0.0] * len(old_dirs)
    q = -flat_grad
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = float(jnp.dot(old_stps[i], q)) * ro[i]
        q = q - al[i] * old_dirs[i]
    r = q * h_diag
    for i in range(len(old_dirs)):
        be_i = float(jnp.dot(old_dirs[i], r)) * ro[i]
        r = r + (al[i] - be_i) * old_stps[i]
    return r


def _max_abs(x: jax.Array) -> float:
    return float(jnp.max(jnp.abs(x)))


def _flatten(params: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """The flat real vector torch's LBFGS works on, and the way back to ``params``."""
    leaves, treedef = jax.tree.flatten(params)
    is_complex = [jnp.iscomplexobj(leaf) for leaf in leaves]
    real = [
        jnp.stack([x.real, x.imag], -1) if c else x for x, c in zip(leaves, is_complex, strict=True)
    ]
    flat, unravel = ravel_pytree(real)

    def unflatten(x):
        parts = unravel(x)
        leaves = [
            jax.lax.complex(p[..., 0], p[..., 1]) if c else p
            for p, c in zip(parts, is_complex, strict=True)
        ]
        return jax.tree.unflatten(treedef, leaves)

    return flat, _Unflatten(unflatten, (treedef, tuple((x.shape, x.dtype) for x in leaves)))


class _Unflatten:
    """``unflatten`` with a hashable key (the parameter layout), for :func:`_objective`'s
    cache."""

    def __init__(self, fn: Callable, key: tuple) -> None:
        self.fn, self.key = fn, key

    def __call__(self, x: jax.Array) -> Any:
        return self.fn(x)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Unflatten) and self.key == other.key


@functools.lru_cache(maxsize=32)
def _objective(loss_fn: Callable, unflatten: _Unflatten) -> Callable:
    """``x -> (loss, dloss/dx)`` compiled once per loss function and parameter layout."""
    return jax.jit(jax.value_and_grad(lambda x: loss_fn(unflatten(x))))


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """torch's ``_cubic_interpolate``: the minimiser of the cubic through two points."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """torch's ``_strong_wolfe`` line search, line for line (losses and directional
    derivatives as Python floats)."""
    d_norm = _max_abs(d)
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = float(jnp.dot(g_new, d))

    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(
            t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step)
        )
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(jnp.dot(g_new, d))
        ls_iter += 1

    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(
            bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
        )
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(jnp.dot(g_new, d))
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new

    t = bracket[low_pos]
    return bracket_f[low_pos], bracket_g[low_pos], t, ls_func_evals
