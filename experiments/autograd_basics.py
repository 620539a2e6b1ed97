"""Derivatives and autograd (seeds 002, 004): finite differences, .grad and jax.grad side by side.

PyTorch stores gradients on tensors: ``backward()`` *adds* into ``.grad`` and
``grad.zero_()`` clears it. In jaxnet a gradient is the return value of ``jax.grad``;
nothing is stored, so nothing accumulates and there is nothing to zero. Torch's
accumulation over two ``backward()`` calls is the explicit sum
``jaxnet.autograd.accumulate_grads`` computes.

    python -m experiments.autograd_basics
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from jaxnet import autograd


def numerical_derivative(f: Callable[[float], float], x: float, h: float) -> float:
    """The forward difference ``(f(x + h) - f(x)) / h`` of seed 002's derivative table
    (the seed writes the same expression on floats)."""
    return (f(x + h) - f(x)) / h


def seed_steps() -> list[float]:
    """Seed 002's ``h``: 0.1, then ``h = h * 0.1`` four times (its exact float values)."""
    steps, h = [], 0.1
    for _ in range(5):
        steps.append(h)
        h = h * 0.1
    return steps


STEPS = seed_steps()


def f(x):
    """Seed 002's ``u = f(x) = 5x² − 4x``; ``f'(1) = 6``."""
    return 5 * x**2 - 4 * x


def cube(x):
    return x**3  # seed 004: f'(5) = 75


def reciprocal(x):
    return 1 / x  # seed 004: f'(2) = -0.25


def regression_data():
    """A small fixed ``(X, w, b, y)`` for ``torch.autograd.grad(loss, [w])``."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w = np.array([0.5, -1.0, 2.0], np.float32)
    y = rng.standard_normal(4).astype(np.float32)
    return x, w, np.float32(0.1), y


def run_torch() -> dict[str, Any]:
    """Seed 002 and 004 as written: ``requires_grad``, ``backward()``, ``.grad``, ``zero_()``."""
    import torch

    def calculus(x, h):  # seed 002, verbatim
        return (f(x + h) - f(x)) / h

    # seed 002 calls calculus(1, h) on Python floats, which runs no torch code; here x is a
    # float64 tensor, so torch's own arithmetic computes the table
    x_one = torch.tensor(1.0, dtype=torch.float64)
    res: dict[str, Any] = {"finite_differences": [calculus(x_one, h).item() for h in STEPS]}
    x1 = torch.tensor(1.0, requires_grad=True)
    f(x1).backward()
    res["derivative"] = x1.grad.item()

    x = torch.arange(4.0)
    x.requires_grad_()
    y = 2 * torch.dot(x, x)
    y.backward()
    res["grad_dot"] = x.grad.tolist()
    x.grad.zero_()
    x.sum().backward()
    res["grad_sum"] = x.grad.tolist()
    x.grad.zero_()
    y = x * x
    u = y.detach()
    z = u * x
    z.sum().backward()
    res["u"], res["grad_detach"] = u.tolist(), x.grad.tolist()
    x.grad.zero_()
    y.sum().backward()
    res["grad_square"] = x.grad.tolist()

    for name, fn, x0 in (("cube", cube, 5.0), ("reciprocal", reciprocal, 2.0)):
        x = torch.tensor([x0], requires_grad=True)
        y = fn(x)
        y.backward(retain_graph=True)
        first = x.grad.item()
        y.backward(retain_graph=True)  # no zero_(): added to the first
        second = x.grad.item()
        x.grad.data.zero_()
        y.backward()
        res[name] = [first, second, x.grad.item()]

    xs, w0, b0, ys = (torch.tensor(a) for a in regression_data())
    w = w0.clone().requires_grad_()
    b = b0.clone().requires_grad_()
    loss = ((xs @ w + b - ys) ** 2).mean()
    (grad_w,) = torch.autograd.grad(loss, [w])  # only w; b.grad stays None
    res["grad_w"] = grad_w.tolist()
    res["b_grad_is_none"] = b.grad is None
    return res


@jax.jit
def seed_002_gradients(x: jax.Array) -> dict[str, jax.Array]:
    """Seed 002's gradients at ``x = arange(4.)``, one ``jax.grad`` each, one compiled call."""
    return {
        "grad_dot": jax.grad(lambda x: 2 * jnp.dot(x, x))(x),
        "grad_sum": jax.grad(jnp.sum)(x),  # no zeroing needed: nothing was stored
        "u": autograd.detach(x * x),
        "grad_detach": jax.grad(lambda x: (autograd.detach(x * x) * x).sum())(x),
        "grad_square": jax.grad(lambda x: (x * x).sum())(x),
    }


def run_jaxnet() -> dict[str, Any]:
    """The same figures as return values of ``jax.grad``; nothing to zero."""
    res: dict[str, Any] = {
        "finite_differences": [numerical_derivative(f, 1.0, h) for h in STEPS],
        "derivative": float(jax.grad(f)(jnp.float32(1.0))),
    }
    x = jnp.arange(4.0, dtype=jnp.float32)
    res.update({k: v.tolist() for k, v in seed_002_gradients(x).items()})

    for name, fn, x0 in (("cube", cube, 5.0), ("reciprocal", reciprocal, 2.0)):
        x = jnp.float32(x0)
        grad_fn = lambda p, _, fn=fn: jax.grad(fn)(p)  # noqa: E731
        # two backward() calls without zero_() = the sum over two (here identical) passes
        twice = autograd.accumulate_grads(grad_fn, x, jnp.zeros(2, jnp.float32))
        res[name] = [float(jax.grad(fn)(x)), float(twice), float(jax.grad(fn)(x))]

    def loss_fn(xs, w, b, ys):
        return jnp.mean((xs @ w + b - ys) ** 2)

    res["grad_w"] = jax.grad(loss_fn, argnums=1)(*map(jnp.asarray, regression_data())).tolist()
    return res


def plot(path: Path, table: list[float]) -> None:
    """The forward difference's error ``|FD − 6|`` against ``h``: truncation, then rounding.

    ``table`` is seed 002's five forward differences as this run computed them."""
    _common.plot_backend()
    import matplotlib.pyplot as plt

    hs = np.logspace(-1, -12, 45)
    errors = [abs(numerical_derivative(f, 1.0, h) - 6.0) for h in hs]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(hs, errors, "o-", ms=3, label="|(f(1+h) − f(1))/h − 6|")
    ax.loglog(hs, 5 * hs, "--", label="truncation error 5h")
    ax.loglog(STEPS, [abs(fd - 6.0) for fd in table], "s", label="seed 002's table (this run)")
    ax.set(xlabel="h", ylabel="error", title="forward difference of 5x² − 4x at x = 1")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    _common.save_figure(fig, path)


ROWS = [
    ("d/dx (5x²−4x) at 1 by autodiff", "derivative"),
    ("grad of 2·dot(x, x)", "grad_dot"),
    ("grad of x.sum() (after zeroing)", "grad_sum"),
    ("u = (x*x).detach()", "u"),
    ("grad of (u*x).sum(), u detached", "grad_detach"),
    ("grad of (x*x).sum()", "grad_square"),
    ("x³ at 5: once, twice, zeroed", "cube"),
    ("1/x at 2: once, twice, zeroed", "reciprocal"),
    ("autograd.grad(loss, [w]) / argnums", "grad_w"),
]


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.6g}" for v in value) + "]"
    return f"{value:.6g}"


def run(*, out: Path | None = None, with_torch: bool = True) -> dict[str, Any]:
    """Compute, print and plot; returns jaxnet's figures and, with torch, ``torch_*``."""
    out = _common.output_dir(out, "autograd_basics")
    ours = run_jaxnet()
    theirs = run_torch() if with_torch else {}

    print("seed 002: forward difference (f(1+h) − f(1))/h of f(x) = 5x² − 4x")
    print(f"  {'h':>8s}  {'PyTorch float64 tensor':>22s}  {'jaxnet (Python float)':>22s}")
    for i, h in enumerate(STEPS):
        original = repr(theirs["finite_differences"][i]) if theirs else "-"
        print(f"  {h:>8g}  {original:>22s}  {ours['finite_differences'][i]!r:>22s}")
    print(f"\n{'':36s}{'PyTorch':>30s}  {'jaxnet':>30s}")
    for label, key in ROWS:
        original = _fmt(theirs[key]) if theirs else "-"
        print(f"{label:36s}{original:>30s}  {_fmt(ours[key]):>30s}")
    print("jaxnet: jax.grad returns the gradient and stores nothing; torch's second backward")
    print("adds into .grad, which jaxnet spells autograd.accumulate_grads (a sum).")
    if theirs:
        print(f"torch.autograd.grad(loss, [w]) leaves b.grad None: {theirs['b_grad_is_none']}")

    report = dict(ours)
    report.update({f"torch_{key}": value for key, value in theirs.items()})
    report["plot"] = str(out / "finite_differences.png")
    plot(Path(report["plot"]), ours["finite_differences"])
    print(f"plot {report['plot']}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _common.parser(__doc__, fast="accepted for CI; nothing here is slow").parse_args(argv)
    return run(out=args.out, with_torch=not args.no_torch)


if __name__ == "__main__":
    main()
