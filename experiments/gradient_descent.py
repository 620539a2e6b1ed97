"""Gradient descent (seed 001): an lr sweep on (x − 5)² and a noisy linear regression, both styles.

Part 1: ``x ← x − lr·f'(x)`` on ``f(x) = (x − 5)²``, whose curvature is ``L = f'' = 2``.
Each step multiplies the distance to the minimum by ``1 − 2·lr``: below ``1/L = 0.5``
it shrinks steadily, between ``1/L`` and ``2/L = 1`` it flips sign every step and still
shrinks (oscillation), above ``2/L`` it grows (divergence).

Part 2: noisy ``y = 2x + 1 + ε`` (N = 100, fixed seed), MSE averaged over N, gradient
descent on ``w`` and ``b`` with the hand-derived gradient
``dL/dw = 2/N Σ (wx + b − y) x``, ``dL/db = 2/N Σ (wx + b − y)`` and with autodiff.

PyTorch: ``requires_grad``, ``loss.backward()``, an update under ``torch.no_grad()``,
``grad.zero_()``. jaxnet: ``jax.grad`` inside one jitted ``lax.scan`` over the steps
(the learning-rate sweep is one ``vmap``-ed call).

    python -m experiments.gradient_descent
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common

MINIMUM = 5.0  # f(x) = (x − 5)²: the seed's "x 大概等于 5"
X0 = 0.0
LEARNING_RATES = (0.05, 0.3, 0.8, 1.05)  # slow, fast, oscillating (1/L < lr < 2/L), diverging
W_TRUE, B_TRUE, N, NOISE = 2.0, 1.0, 100, 0.5
REGRESSION_LR = 0.05


def parabola(x):
    return (x - MINIMUM) ** 2


def behaviour(trajectory) -> str:
    """How a trajectory approaches the minimum: converges, oscillates and converges, diverges."""
    err = np.asarray(trajectory, np.float64) - MINIMUM
    if abs(err[-1]) >= abs(err[0]):
        return "diverges"
    visible = err[np.abs(err) > 1e-3 * abs(err[0])]  # rounding noise at the minimum flips too
    if np.any(np.sign(visible[1:]) != np.sign(visible[:-1])):
        return "oscillates, converges"
    return "converges"


def regression_data() -> tuple[np.ndarray, np.ndarray]:
    """``N`` points of ``y = 2x + 1 + ε``, ``x ~ U(−3, 3)``, ``ε ~ N(0, 0.5²)``, seed 0."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, N).astype(np.float32)
    y = (W_TRUE * x + B_TRUE + rng.normal(0, NOISE, N)).astype(np.float32)
    return x, y


# ------------------------------------------------------------------ jaxnet


@functools.partial(jax.jit, static_argnames="steps")
def gd_trajectories(lrs: jax.Array, x0: jax.Array, steps: int) -> jax.Array:
    """``x_0 … x_steps`` of gradient descent on the parabola, one row per learning rate."""

    def one(lr):
        def step(x, _):
            x = x - lr * jax.grad(parabola)(x)
            return x, x

        _, xs = jax.lax.scan(step, x0, length=steps)
        return jnp.concatenate([x0[None], xs])  # (steps + 1,)

    return jax.vmap(one)(lrs)  # (len(lrs), steps + 1)


def mse(params, x, y):
    return jnp.mean((params["w"] * x + params["b"] - y) ** 2)


def hand_grad(params, x, y):
    """``dL/dw = 2/N Σ (wx + b − y) x`` and ``dL/db = 2/N Σ (wx + b − y)``."""
    residual = params["w"] * x + params["b"] - y  # (N,)
    return {"w": 2 * jnp.mean(residual * x), "b": 2 * jnp.mean(residual)}


@functools.partial(jax.jit, static_argnames="steps")
def fit_line(x: jax.Array, y: jax.Array, lr: float, steps: int):
    """Two descents side by side, hand-derived and autodiff gradients, from ``w = b = 0``.

    Returns both final params, both loss curves and, at each step, the largest
    difference between the two gradients at the same point.
    """

    def step(carry, _):
        by_hand, by_autodiff = carry
        g_hand = hand_grad(by_hand, x, y)
        g_auto = jax.grad(mse)(by_autodiff, x, y)
        g_check = hand_grad(by_autodiff, x, y)
        gap = jnp.maximum(jnp.abs(g_check["w"] - g_auto["w"]), jnp.abs(g_check["b"] - g_auto["b"]))
        losses = (mse(by_hand, x, y), mse(by_autodiff, x, y))
        by_hand = jax.tree.map(lambda p, g: p - lr * g, by_hand, g_hand)
        by_autodiff = jax.tree.map(lambda p, g: p - lr * g, by_autodiff, g_auto)
        return (by_hand, by_autodiff), (losses, gap)

    zero = {"w": jnp.zeros((), x.dtype), "b": jnp.zeros((), x.dtype)}
    (by_hand, by_autodiff), ((loss_hand, loss_auto), gaps) = jax.lax.scan(
        step, (zero, zero), length=steps
    )
    return by_hand, by_autodiff, loss_hand, loss_auto, gaps


def run_jaxnet(steps: int, fit_steps: int) -> dict[str, Any]:
    lrs = jnp.asarray(LEARNING_RATES, jnp.float32)
    trajectories = np.asarray(gd_trajectories(lrs, jnp.float32(X0), steps))
    x, y = regression_data()
    by_hand, by_autodiff, loss_hand, loss_auto, gaps = fit_line(
        jnp.asarray(x), jnp.asarray(y), REGRESSION_LR, fit_steps
    )
    return {
        "trajectories": trajectories.tolist(),
        "behaviour": [behaviour(t) for t in trajectories],
        "w_hand": float(by_hand["w"]),
        "b_hand": float(by_hand["b"]),
        "w_autodiff": float(by_autodiff["w"]),
        "b_autodiff": float(by_autodiff["b"]),
        "max_grad_diff": float(jnp.max(gaps)),
        "loss_hand": np.asarray(loss_hand).tolist(),
        "loss_autodiff": np.asarray(loss_auto).tolist(),
    }


# ------------------------------------------------------------------- torch


def run_torch(steps: int, fit_steps: int) -> dict[str, Any]:
    """The same descents as the seed writes them: ``backward``, ``no_grad`` update, ``zero_``."""
    import torch

    trajectories = []
    for lr in LEARNING_RATES:
        x = torch.tensor(X0, requires_grad=True)
        path = [x.item()]
        for _ in range(steps):
            parabola(x).backward()
            with torch.no_grad():
                x -= lr * x.grad
            x.grad.zero_()
            path.append(x.item())
        trajectories.append(path)

    xs, ys = (torch.from_numpy(a) for a in regression_data())
    w_hand, b_hand = torch.tensor(0.0), torch.tensor(0.0)
    w = torch.tensor(0.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    loss_hand, loss_auto, gaps = [], [], []
    for _ in range(fit_steps):
        residual = w_hand * xs + b_hand - ys
        loss_hand.append((residual**2).mean().item())
        g_w, g_b = 2 * (residual * xs).mean(), 2 * residual.mean()
        w_hand, b_hand = w_hand - REGRESSION_LR * g_w, b_hand - REGRESSION_LR * g_b

        loss = ((w * xs + b - ys) ** 2).mean()
        loss.backward()
        loss_auto.append(loss.item())
        # the hand formula at the autograd chain's own point, to compare like with like
        with torch.no_grad():
            r = w * xs + b - ys
            gaps.append(max(abs(2 * (r * xs).mean() - w.grad), abs(2 * r.mean() - b.grad)).item())
            w -= REGRESSION_LR * w.grad
            b -= REGRESSION_LR * b.grad
        w.grad.zero_()
        b.grad.zero_()
    return {
        "trajectories": trajectories,
        "behaviour": [behaviour(t) for t in trajectories],
        "w_hand": w_hand.item(),
        "b_hand": b_hand.item(),
        "w_autodiff": w.item(),
        "b_autodiff": b.item(),
        "max_grad_diff": max(gaps),
        "loss_hand": loss_hand,
        "loss_autodiff": loss_auto,
    }


# -------------------------------------------------------------------- plots


def plot(out: Path, ours: dict, theirs: dict) -> list[str]:
    _common.plot_backend()
    import matplotlib.pyplot as plt

    paths = [str(out / "lr_sweep.png"), str(out / "linear_regression.png")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, lr in enumerate(LEARNING_RATES):
        (line,) = ax.plot(
            ours["trajectories"][i], "o-", ms=3, label=f"lr={lr}: {ours['behaviour'][i]}"
        )
        if theirs:
            ax.plot(theirs["trajectories"][i], "x", color=line.get_color(), ms=6)
    ax.axhline(MINIMUM, color="k", lw=0.8)
    ax.set(xlabel="step", ylabel="x", ylim=(-15, 25),
           title="x ← x − lr·f'(x) on (x − 5)²  (lines: jaxnet, x: PyTorch)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _common.save_figure(fig, paths[0])

    x, y = regression_data()
    grid = np.linspace(-3, 3, 2)
    fig, (ax_fit, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    ax_fit.scatter(x, y, s=8, alpha=0.6, label="data")
    ax_fit.plot(grid, W_TRUE * grid + B_TRUE, "k--", label="true 2x + 1")
    ax_fit.plot(grid, ours["w_autodiff"] * grid + ours["b_autodiff"], label="jaxnet fit")
    ax_loss.semilogy(ours["loss_hand"], label="jaxnet, hand gradient")
    ax_loss.semilogy(ours["loss_autodiff"], "--", label="jaxnet, jax.grad")
    if theirs:
        ax_fit.plot(grid, theirs["w_autodiff"] * grid + theirs["b_autodiff"], ":",
                    label="PyTorch fit")  # fmt: skip
        ax_loss.semilogy(theirs["loss_autodiff"], ":", label="PyTorch, backward()")
    ax_fit.set(xlabel="x", ylabel="y", title="noisy y = 2x + 1, N = 100")
    ax_loss.set(xlabel="step", ylabel="MSE", title=f"gradient descent, lr = {REGRESSION_LR}")
    for ax in (ax_fit, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    _common.save_figure(fig, paths[1])
    return paths


def run(*, fast: bool = False, out: Path | None = None, with_torch: bool = True) -> dict[str, Any]:
    """Both parts in both styles; returns jaxnet's figures and, with torch, ``torch_*``."""
    out = _common.output_dir(out, "gradient_descent")
    steps, fit_steps = (15, 60) if fast else (30, 150)
    ours = run_jaxnet(steps, fit_steps)
    theirs = run_torch(steps, fit_steps) if with_torch else {}

    print(f"gradient descent on (x − 5)² from x = {X0}, {steps} steps; L = 2, 1/L = 0.5, 2/L = 1")
    print(f"  {'lr':>5s}  {'x_final PyTorch':>16s}  {'x_final jaxnet':>16s}  behaviour")
    for i, lr in enumerate(LEARNING_RATES):
        original = f"{theirs['trajectories'][i][-1]:16.6g}" if theirs else f"{'-':>16s}"
        print(f"  {lr:>5g}  {original}  {ours['trajectories'][i][-1]:16.6g}  "
              f"{ours['behaviour'][i]}")  # fmt: skip

    x, y = regression_data()
    lstsq_w, lstsq_b = np.polyfit(x.astype(np.float64), y.astype(np.float64), 1)
    print(f"\nlinear regression, y = {W_TRUE}x + {B_TRUE} + ε, N = {N}, lr = {REGRESSION_LR}, "
          f"{fit_steps} steps (least squares: w = {lstsq_w:.4f}, b = {lstsq_b:.4f})")  # fmt: skip
    print(f"  {'':24s}{'PyTorch':>20s}{'jaxnet':>20s}")
    for label, w_key, b_key in (
        ("hand-derived gradient", "w_hand", "b_hand"),
        ("autodiff", "w_autodiff", "b_autodiff"),
    ):
        original = f"w={theirs[w_key]:.4f} b={theirs[b_key]:.4f}" if theirs else "-"
        print(f"  {label:24s}{original:>20s}{f'w={ours[w_key]:.4f} b={ours[b_key]:.4f}':>20s}")
    original = f"{theirs['max_grad_diff']:.2e}" if theirs else "-"
    print(f"  {'max |hand − autodiff|':24s}{original:>20s}{ours['max_grad_diff']:>20.2e}")

    report = dict(ours, lstsq_w=float(lstsq_w), lstsq_b=float(lstsq_b))
    if theirs:
        report.update({f"torch_{key}": value for key, value in theirs.items()})
        gap = np.abs(np.subtract(ours["trajectories"], theirs["trajectories"]))
        report["torch_vs_jaxnet_trajectory_max_rel_diff"] = float(
            np.max(gap / np.maximum(np.abs(theirs["trajectories"]), 1.0))
        )
        report["torch_vs_jaxnet_param_max_diff"] = max(
            abs(ours[k] - theirs[k]) for k in ("w_hand", "b_hand", "w_autodiff", "b_autodiff")
        )
        print(f"PyTorch vs jaxnet: trajectories differ by at most "
              f"{report['torch_vs_jaxnet_trajectory_max_rel_diff']:.2e} (relative), fitted w, b by "
              f"{report['torch_vs_jaxnet_param_max_diff']:.2e}")  # fmt: skip
    report["plots"] = plot(out, ours, theirs)
    print("plots " + ", ".join(report["plots"]))
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _common.parser(__doc__, fast="fewer steps (for CI)").parse_args(argv)
    return run(fast=args.fast, out=args.out, with_torch=not args.no_torch)


if __name__ == "__main__":
    main()
