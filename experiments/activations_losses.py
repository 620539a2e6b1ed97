"""Activations, losses and perceptron gradients (seed 001): formula, jax.grad and torch autograd.

Activations step, sigmoid, tanh and ReLU with their gradients ``0``, ``σ(1 − σ)``,
``1 − tanh²`` and ``1[x > 0]``; MSE and softmax cross-entropy with their gradients
``2(p − t)/n`` and ``(softmax − onehot)/N``; the perceptron with sigmoid output and
``E = ½ Σ (o − t)²``, whose hand-derived gradient is ``dE/dw = (o − t)·o(1 − o)·x``
(one output) and ``dE/dW[k, j] = (o_k − t_k)·o_k(1 − o_k)·x_j`` (several outputs).
Each gradient is computed three ways: the formula, ``jax.grad`` of the jaxnet function,
and ``backward()`` in PyTorch. (``F.mse_loss`` on the perceptron's output is ``2E``:
the course's derivation uses the ½.)

PyTorch has no step function; the original is ``torch.heaviside(x, 0)``, whose
``backward`` is not implemented — the step is not differentiable, and jaxnet's
``F.step`` has gradient 0 everywhere.

    python -m experiments.activations_losses
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from jaxnet.nn import functional as F

# name -> (jaxnet activation, its derivative as a formula of (value, input))
ACTIVATIONS = {
    "step": (F.step, lambda y, x: np.zeros_like(x)),
    "sigmoid": (F.sigmoid, lambda y, x: y * (1 - y)),
    "tanh": (F.tanh, lambda y, x: 1 - y**2),
    "relu": (F.relu, lambda y, x: (x > 0).astype(x.dtype)),
}
N_CLASSES, N_INPUTS, N_OUTPUTS = 5, 10, 2


def inputs(fast: bool) -> dict[str, np.ndarray]:
    """Every input both styles share, float32, from one seeded generator."""
    rng = np.random.default_rng(0)
    n = 8 if fast else 64
    return {
        "x": np.linspace(-4, 4, 41 if fast else 161).astype(np.float32),  # holds 0
        "pred": rng.standard_normal((n, N_CLASSES)).astype(np.float32),
        "target": rng.standard_normal((n, N_CLASSES)).astype(np.float32),
        "labels": rng.integers(0, N_CLASSES, n).astype(np.int32),
        "p_x": rng.standard_normal(N_INPUTS).astype(np.float32),
        "p_w": rng.standard_normal(N_INPUTS).astype(np.float32),
        "p_W": rng.standard_normal((N_OUTPUTS, N_INPUTS)).astype(np.float32),  # [out, in]
        "p_t": np.array([1.0, 0.0], np.float32),
    }


def hand_loss_grads(data: dict[str, np.ndarray], reduction: str) -> dict[str, np.ndarray]:
    """``d mse / d pred = 2(p − t)/n`` and ``d cross_entropy / d logits = (softmax − onehot)/N``."""
    pred, target, labels = data["pred"], data["target"], data["labels"]
    softmax = np.exp(pred - pred.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    onehot = np.eye(N_CLASSES, dtype=np.float32)[labels]
    mean = reduction == "mean"
    return {
        "mse": 2 * (pred - target) / (pred.size if mean else 1),
        "cross_entropy": (softmax - onehot) / (len(labels) if mean else 1),
    }


def hand_perceptron_grads(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The course's derivation for ``E = ½ Σ (o − t)²``, ``o = σ(w·x)`` or ``σ(W x)``."""
    x, w, big_w, t = data["p_x"], data["p_w"], data["p_W"], data["p_t"]
    o = 1 / (1 + np.exp(-(w @ x)))
    o_multi = 1 / (1 + np.exp(-(big_w @ x)))  # (out,)
    delta = (o_multi - t) * o_multi * (1 - o_multi)  # (out,)
    return {"single": (o - t[0]) * o * (1 - o) * x, "multi": np.outer(delta, x)}  # (out, in)


# ------------------------------------------------------------------ jaxnet


@jax.jit
def jaxnet_gradients(data: dict[str, jax.Array]) -> dict[str, Any]:
    """Every value and ``jax.grad`` gradient of the jaxnet half, as one compiled call."""
    out: dict[str, Any] = {}
    for name, (fn, _) in ACTIVATIONS.items():
        out[name] = (fn(data["x"]), jax.grad(lambda x, fn=fn: jnp.sum(fn(x)))(data["x"]))
    for reduction in ("mean", "sum"):
        for name, fn, target in (
            ("mse", F.mse_loss, data["target"]),
            ("cross_entropy", F.cross_entropy, data["labels"]),
        ):
            loss_fn = functools.partial(fn, target=target, reduction=reduction)
            out[f"{name}_{reduction}"] = jax.value_and_grad(loss_fn)(data["pred"])

    def energy(o, t):
        return 0.5 * F.mse_loss(o, t, reduction="sum")  # ½ Σ (o − t)²

    p_x, p_t = data["p_x"], data["p_t"]
    single = jax.grad(lambda w: energy(F.sigmoid(jnp.dot(w, p_x))[None], p_t[:1]))
    multi = jax.grad(lambda big_w: energy(F.sigmoid(big_w @ p_x), p_t))
    out["single"], out["multi"] = single(data["p_w"]), multi(data["p_W"])
    return out


def run_jaxnet(data: dict[str, np.ndarray]) -> dict[str, Any]:
    out = jax.tree.map(np.asarray, jaxnet_gradients(data))
    res: dict[str, Any] = {"values": {}, "grads": {}, "formula_diff": {}}
    for name, (_, formula) in ACTIVATIONS.items():
        value, grad = res["values"][name], res["grads"][name] = out[name]
        res["formula_diff"][name] = _common.max_abs_diff(grad, formula(value, data["x"]))
    res["losses"], res["loss_grads"], res["loss_hand_diff"] = {}, {}, {}
    for reduction in ("mean", "sum"):
        hand = hand_loss_grads(data, reduction)
        for name in ("mse", "cross_entropy"):
            key = f"{name}_{reduction}"
            loss, grad = out[key]
            res["losses"][key], res["loss_grads"][key] = float(loss), grad
            res["loss_hand_diff"][key] = _common.max_abs_diff(grad, hand[name])
    res["perceptron_grads"] = {key: out[key] for key in ("single", "multi")}
    hand = hand_perceptron_grads(data)
    res["perceptron_hand_diff"] = {
        k: _common.max_abs_diff(out[k], hand[k]) for k in ("single", "multi")
    }
    return res


# ------------------------------------------------------------------- torch


def run_torch(data: dict[str, np.ndarray]) -> dict[str, Any]:
    """The originals: ``requires_grad``, ``y.sum().backward()``, ``x.grad``."""
    import torch
    import torch.nn.functional as TF

    activations = {
        "step": lambda x: torch.heaviside(x, torch.zeros((), dtype=x.dtype)),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
    }
    res: dict[str, Any] = {"values": {}, "grads": {}, "formula_diff": {}}
    for name, fn in activations.items():
        x = torch.tensor(data["x"], requires_grad=True)
        y = fn(x)
        res["values"][name] = y.detach().numpy()
        try:
            y.sum().backward()
        except RuntimeError as err:  # heaviside: "derivative ... is not implemented"
            res["step_error"] = str(err).splitlines()[0]
            continue
        res["grads"][name] = x.grad.numpy()
        res["formula_diff"][name] = _common.max_abs_diff(
            x.grad, ACTIVATIONS[name][1](res["values"][name], data["x"])
        )

    res["losses"], res["loss_grads"], res["loss_hand_diff"] = {}, {}, {}
    target, labels = torch.tensor(data["target"]), torch.tensor(data["labels"]).long()
    for reduction in ("mean", "sum"):
        hand = hand_loss_grads(data, reduction)
        for name, fn, y in (
            ("mse", TF.mse_loss, target),
            ("cross_entropy", TF.cross_entropy, labels),
        ):
            pred = torch.tensor(data["pred"], requires_grad=True)
            loss = fn(pred, y, reduction=reduction)
            loss.backward()
            key = f"{name}_{reduction}"
            res["losses"][key], res["loss_grads"][key] = loss.item(), pred.grad.numpy()
            res["loss_hand_diff"][key] = _common.max_abs_diff(pred.grad, hand[name])

    # the course's perceptron: x [1, 10], w [1, 10] or [2, 10], o = σ(x @ w.t())
    x = torch.tensor(data["p_x"])[None]  # (1, in)
    t = torch.tensor(data["p_t"])[None]  # (1, out)
    grads = {}
    for name, w0, target in (("single", data["p_w"][None], t[:, :1]), ("multi", data["p_W"], t)):
        w = torch.tensor(w0, requires_grad=True)
        o = torch.sigmoid(x @ w.t())
        loss = 0.5 * TF.mse_loss(o, target, reduction="sum")
        loss.backward()
        grads[name] = w.grad.numpy().reshape(np.shape(data["p_w" if name == "single" else "p_W"]))
    hand = hand_perceptron_grads(data)
    res["perceptron_grads"] = grads
    res["perceptron_hand_diff"] = {k: _common.max_abs_diff(v, hand[k]) for k, v in grads.items()}
    return res


# -------------------------------------------------------------------- plots


def plot(path: Path, data: dict[str, np.ndarray], ours: dict, theirs: dict) -> None:
    _common.plot_backend()
    import matplotlib.pyplot as plt

    x = data["x"]
    fig, (ax_value, ax_grad) = plt.subplots(1, 2, figsize=(11, 4))
    for name in ACTIVATIONS:
        (line,) = ax_value.plot(x, ours["values"][name], label=name)
        ax_grad.plot(x, ours["grads"][name], color=line.get_color(), label=f"{name}' (jax.grad)")
        if name in theirs.get("grads", {}):
            ax_grad.plot(x[::4], theirs["grads"][name][::4], "x", color=line.get_color(), ms=5)
    ax_value.set(xlabel="x", title="activations")
    ax_grad.set(xlabel="x", title="gradients (lines: jaxnet, x: PyTorch backward)")
    for ax in (ax_value, ax_grad):
        ax.grid(alpha=0.3)
        ax.legend()
    _common.save_figure(fig, path)


def run(*, fast: bool = False, out: Path | None = None, with_torch: bool = True) -> dict[str, Any]:
    """Compare, print and plot; returns jaxnet's figures and, with torch, ``torch_*``."""
    out = _common.output_dir(out, "activations_losses")
    data = inputs(fast)
    ours = run_jaxnet(data)
    theirs = run_torch(data) if with_torch else {}

    def cell(section: str, key: str, fmt: str = ".2e") -> str:
        return format(theirs[section][key], fmt) if key in theirs.get(section, {}) else "-"

    print("activation gradients: max |autodiff − formula| in each style; |Δ|: jaxnet vs PyTorch")
    print(f"  {'':9s}{'PyTorch':>12s}{'jaxnet':>12s}{'|Δ grad|':>12s}{'|Δ value|':>12s}")
    report: dict[str, Any] = {}
    for name in ACTIVATIONS:
        report[f"{name}_formula_diff"] = ours["formula_diff"][name]
        if name in theirs.get("grads", {}):
            report[f"torch_{name}_formula_diff"] = theirs["formula_diff"][name]
            report[f"torch_vs_jaxnet_{name}_grad_diff"] = _common.max_abs_diff(
                ours["grads"][name], theirs["grads"][name]
            )
        if theirs:
            report[f"torch_vs_jaxnet_{name}_value_diff"] = _common.max_abs_diff(
                ours["values"][name], theirs["values"][name]
            )
        grad_gap, value_gap = (
            format(report[f"torch_vs_jaxnet_{name}_{what}_diff"], ".2e")
            if f"torch_vs_jaxnet_{name}_{what}_diff" in report
            else "-"
            for what in ("grad", "value")
        )
        print(f"  {name:9s}{cell('formula_diff', name):>12s}{ours['formula_diff'][name]:>12.2e}"
              f"{grad_gap:>12s}{value_gap:>12s}")  # fmt: skip
    if theirs:
        report["torch_step_error"] = theirs["step_error"]
        print(f"  torch.heaviside backward: {theirs['step_error']}")
    print("  jaxnet F.step: gradient 0 everywhere (not differentiable at 0, flat elsewhere)")

    print("\nlosses: value, and max |autodiff − hand formula| of the gradient")
    print(f"  {'':19s}{'PyTorch':>12s}{'jaxnet':>12s}{'hand PyTorch':>14s}{'hand jaxnet':>13s}")
    for key, loss in ours["losses"].items():
        report[f"{key}_loss"] = loss
        report[f"{key}_hand_diff"] = ours["loss_hand_diff"][key]
        if theirs:
            report[f"torch_{key}_loss"] = theirs["losses"][key]
            report[f"torch_{key}_hand_diff"] = theirs["loss_hand_diff"][key]
            report[f"torch_vs_jaxnet_{key}_grad_diff"] = _common.max_abs_diff(
                ours["loss_grads"][key], theirs["loss_grads"][key]
            )
        hand_gap = ours["loss_hand_diff"][key]
        print(f"  {key:19s}{cell('losses', key, '.6f'):>12s}{loss:>12.6f}"
              f"{cell('loss_hand_diff', key):>14s}{hand_gap:>13.2e}")  # fmt: skip

    print("\nperceptron, E = ½ Σ (o − t)²: max |autodiff − hand-derived gradient|")
    for key, label in (("single", "one output, dE/dw"), ("multi", f"{N_OUTPUTS} outputs, dE/dW")):
        report[f"perceptron_{key}_hand_diff"] = ours["perceptron_hand_diff"][key]
        line = f"  {label:22s} jaxnet {ours['perceptron_hand_diff'][key]:.2e}"
        if theirs:
            report[f"torch_perceptron_{key}_hand_diff"] = theirs["perceptron_hand_diff"][key]
            report[f"torch_vs_jaxnet_perceptron_{key}_grad_diff"] = _common.max_abs_diff(
                ours["perceptron_grads"][key], theirs["perceptron_grads"][key]
            )
            line += (f"  PyTorch {theirs['perceptron_hand_diff'][key]:.2e}  jaxnet vs PyTorch "
                     f"{report[f'torch_vs_jaxnet_perceptron_{key}_grad_diff']:.2e}")  # fmt: skip
        print(line)

    report["plot"] = str(out / "activations.png")
    plot(Path(report["plot"]), data, ours, theirs)
    print(f"plot {report['plot']}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _common.parser(__doc__, fast="fewer points and samples (for CI)").parse_args(argv)
    return run(fast=args.fast, out=args.out, with_torch=not args.no_torch)


if __name__ == "__main__":
    main()
