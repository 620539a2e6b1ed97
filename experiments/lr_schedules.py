"""Learning-rate schedules (seeds 000, 001): jaxnet's pure step -> lr functions against PyTorch's.

Every scheduler of ``jaxnet.optim.lr_scheduler`` (StepLR, MultiStepLR, ConstantLR,
ExponentialLR, PolynomialLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, LinearLR,
OneCycleLR, CyclicLR, LambdaLR, MultiplicativeLR, SequentialLR, ChainedScheduler),
``vmap``-ed over all steps at once (every schedule in one jitted call), against
``torch.optim.lr_scheduler`` stepped once per iteration on a dummy SGD optimizer:
``optimizer.param_groups[0]['lr']``, read before each ``optimizer.step();
scheduler.step()``, is the lr of that update. The momentum OneCycleLR and CyclicLR cycle
(their schedules' ``momentum``) is read from ``param_groups[0]['momentum']`` the same way.
ReduceLROnPlateau, driven by a metric that stops improving, runs as jaxnet's pure state
machine in one jitted ``lax.scan`` against torch's ``scheduler.step(metric)``.

Seed 000's ``deform.update_learning_rate(iteration)``: deformable 3D Gaussians' log-linear
decay ``get_expon_lr_func(lr_init, lr_final, lr_delay_steps, lr_delay_mult, max_steps)``,
written out in NumPy as in that code base and applied by a small model class that sets
its torch optimizer's ``param_group['lr']`` every iteration, as the seed does; against
``jaxnet.optim.lr_scheduler.get_expon_lr_func``. Shown with the deformation
network's settings (``lr_init = 0.00016 · spatial_lr_scale 5``, ``lr_final = 1.6e-6``,
40 000 steps, no delay) and with a warm-up delay (``lr_delay_steps = 2 500``,
``lr_delay_mult = 0.01``, mip-NeRF's), which starts at ``lr_init · lr_delay_mult``.

    python -m experiments.lr_schedules
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from jaxnet.optim import lr_scheduler as sched

LR = 0.1
TOLERANCE = {"float32": 1e-6, "float64": 1e-12}  # max |jaxnet − torch|, lr <= 0.1


def seed000_settings(fast: bool) -> dict[str, dict[str, float]]:
    """``get_expon_lr_func`` arguments: the deformation network's, and with a warm-up delay."""
    scale = 100 if fast else 1
    deform = {
        "lr_init": 0.00016 * 5,
        "lr_final": 0.0000016,
        "lr_delay_mult": 0.01,
        "max_steps": 40_000 // scale,
    }
    return {
        "get_expon_lr_func (seed 000 deform)": deform,
        "get_expon_lr_func with delay": {**deform, "lr_delay_steps": 2_500 // scale},
    }


def torch_schedulers(steps: int) -> dict[str, tuple[Callable, str]]:
    """name -> (``optimizer -> torch scheduler``, the param-group key it is read from);
    the jaxnet twins are in ``jaxnet_schedules``."""
    import torch

    S = torch.optim.lr_scheduler
    step, warmup = steps // 5, steps // 10

    def one_cycle(o):
        return S.OneCycleLR(o, max_lr=LR, total_steps=steps, three_phase=True)

    def cyclic(o):
        return S.CyclicLR(o, LR / 10, LR, step_size_up=step // 2, mode="triangular2")

    schedulers = {
        "StepLR": lambda o: S.StepLR(o, step_size=step, gamma=0.5),
        "MultiStepLR": lambda o: S.MultiStepLR(
            o, milestones=[2 * step, 3 * step, 4 * step], gamma=0.3
        ),
        "ConstantLR": lambda o: S.ConstantLR(o, factor=0.4, total_iters=step),
        "ExponentialLR": lambda o: S.ExponentialLR(o, gamma=0.1 ** (2 / steps)),
        "PolynomialLR": lambda o: S.PolynomialLR(o, total_iters=3 * steps // 4, power=2.0),
        "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=3 * steps // 4, eta_min=0.005),
        "CosineAnnealingWarmRestarts": lambda o: S.CosineAnnealingWarmRestarts(
            o, T_0=warmup, T_mult=2, eta_min=0.002
        ),
        "LinearLR": lambda o: S.LinearLR(o, start_factor=0.25, total_iters=steps // 2),
        "OneCycleLR": one_cycle,
        "CyclicLR": cyclic,
        "LambdaLR": lambda o: S.LambdaLR(o, lambda k: 1 / (1 + 20 * k / steps)),
        "MultiplicativeLR": lambda o: S.MultiplicativeLR(o, lambda k: 1 - 0.5 / (k + 10)),
        "SequentialLR": lambda o: S.SequentialLR(
            o,
            [
                S.LinearLR(o, start_factor=0.1, total_iters=warmup),
                S.CosineAnnealingLR(o, T_max=steps - warmup),
            ],
            milestones=[warmup],
        ),
        "ChainedScheduler": lambda o: S.ChainedScheduler(
            [S.ConstantLR(o, factor=0.5, total_iters=warmup), S.ExponentialLR(o, gamma=0.97)]
        ),
    }
    return {
        **{name: (make, "lr") for name, make in schedulers.items()},
        "OneCycleLR momentum": (one_cycle, "momentum"),
        "CyclicLR momentum": (cyclic, "momentum"),
    }


def jaxnet_schedules(steps: int) -> dict[str, Callable]:
    """The same schedules, each a pure function ``step -> lr`` (or ``step -> momentum``)."""
    step, warmup = steps // 5, steps // 10
    one_cycle = sched.OneCycleLR(LR, total_steps=steps, three_phase=True)
    cyclic = sched.CyclicLR(LR / 10, LR, step_size_up=step // 2, mode="triangular2")
    return {
        "StepLR": sched.StepLR(LR, step_size=step, gamma=0.5),
        "MultiStepLR": sched.MultiStepLR(LR, milestones=[2 * step, 3 * step, 4 * step], gamma=0.3),
        "ConstantLR": sched.ConstantLR(LR, factor=0.4, total_iters=step),
        "ExponentialLR": sched.ExponentialLR(LR, gamma=0.1 ** (2 / steps)),
        "PolynomialLR": sched.PolynomialLR(LR, total_iters=3 * steps // 4, power=2.0),
        "CosineAnnealingLR": sched.CosineAnnealingLR(LR, T_max=3 * steps // 4, eta_min=0.005),
        "CosineAnnealingWarmRestarts": sched.CosineAnnealingWarmRestarts(
            LR, T_0=warmup, T_mult=2, eta_min=0.002
        ),
        "LinearLR": sched.LinearLR(LR, start_factor=0.25, total_iters=steps // 2),
        "OneCycleLR": one_cycle,
        "CyclicLR": cyclic,
        # the step is an int array: multiply by a float so x64 keeps float64
        "LambdaLR": sched.LambdaLR(LR, lambda k: 1 / (1 + k * (20 / steps))),
        "MultiplicativeLR": sched.MultiplicativeLR(LR, lambda k: 1 - 0.5 / (k + 10.0)),
        "SequentialLR": sched.SequentialLR(
            [
                sched.LinearLR(LR, start_factor=0.1, total_iters=warmup),
                sched.CosineAnnealingLR(LR, T_max=steps - warmup),
            ],
            milestones=[warmup],
        ),
        "ChainedScheduler": sched.ChainedScheduler(
            [sched.ConstantLR(LR, factor=0.5, total_iters=warmup), sched.ExponentialLR(LR, 0.97)]
        ),
        "OneCycleLR momentum": one_cycle.momentum,
        "CyclicLR momentum": cyclic.momentum,
    }


PLATEAU = {"mode": "min", "factor": 0.5, "patience": 3, "threshold": 0.01, "cooldown": 2}


def plateau_metrics(steps: int) -> np.ndarray:
    """A validation loss that improves, then stalls with a little noise."""
    k = np.arange(steps)
    noise = 0.01 * np.sin(1.7 * k)
    return np.maximum(1.0 / (1 + 0.2 * k), 0.3) + noise


# ------------------------------------------------------------------ jaxnet


def run_jaxnet(steps: int, seed000: dict[str, dict]) -> dict[str, np.ndarray]:
    """Every schedule at steps ``0 … n-1`` (``n = max_steps + 1`` for seed 000's), all in
    one compiled call."""
    schedules = {
        **jaxnet_schedules(steps),
        **{name: sched.get_expon_lr_func(**kw) for name, kw in seed000.items()},
    }
    lengths = {
        name: seed000[name]["max_steps"] + 1 if name in seed000 else steps for name in schedules
    }

    @jax.jit
    def evaluate(k):  # (n,) int32 steps -> {name: (n,) lrs}
        return {name: jax.vmap(schedule)(k) for name, schedule in schedules.items()}

    curves = evaluate(jnp.arange(max(lengths.values()), dtype=jnp.int32))
    ours = {name: np.asarray(curves[name][:n]) for name, n in lengths.items()}
    return {**ours, "ReduceLROnPlateau": plateau_lrs(steps)}


def plateau_lrs(steps: int) -> np.ndarray:
    """ReduceLROnPlateau's lr at each iteration: read, then ``update(state, metric)``."""
    plateau = sched.ReduceLROnPlateau(LR, **PLATEAU)

    def iteration(state, metric):
        return plateau.update(state, metric), plateau.get_last_lr(state)

    @jax.jit
    def run(metrics):
        return jax.lax.scan(iteration, plateau.init(), metrics)[1]

    return np.asarray(run(jnp.asarray(plateau_metrics(steps), jnp.float32)))


# ------------------------------------------------------------------- torch


def get_expon_lr_func(lr_init, lr_final, lr_delay_steps=0, lr_delay_mult=1.0, max_steps=1000000):
    """The original helper (deformable 3D Gaussians / Plenoxels), in NumPy."""

    def helper(step):
        if step < 0 or (lr_init == 0.0 and lr_final == 0.0):
            # Disable this parameter
            return 0.0
        if lr_delay_steps > 0:
            # A kind of reverse cosine decay.
            delay_rate = lr_delay_mult + (1 - lr_delay_mult) * np.sin(
                0.5 * np.pi * np.clip(step / lr_delay_steps, 0, 1)
            )
        else:
            delay_rate = 1.0
        t = np.clip(step / max_steps, 0, 1)
        log_lerp = np.exp(np.log(lr_init) * (1 - t) + np.log(lr_final) * t)
        return delay_rate * log_lerp

    return helper


class DeformModel:
    """Seed 000's pattern: a model owning a torch optimizer and its per-iteration lr rule."""

    def __init__(self, params, schedule_args: dict[str, float]):
        import torch

        groups = [{"params": params, "lr": schedule_args["lr_init"], "name": "deform"}]
        self.optimizer = torch.optim.Adam(groups, lr=0.0, eps=1e-15)
        self.deform_scheduler_args = get_expon_lr_func(**schedule_args)

    def update_learning_rate(self, iteration):
        for param_group in self.optimizer.param_groups:
            if param_group["name"] == "deform":
                lr = self.deform_scheduler_args(iteration)
                param_group["lr"] = lr
                return lr


def torch_scheduler_lrs(make_scheduler: Callable, steps: int, key: str = "lr") -> np.ndarray:
    """``param_groups[0][key]`` at each of ``steps`` iterations: read, then
    ``optimizer.step(); scheduler.step()`` (OneCycleLR refuses a step past its last)."""
    import torch

    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=LR, momentum=0.9)
    scheduler = make_scheduler(optimizer)
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0][key])
        optimizer.step()
        if len(values) < steps:
            scheduler.step()
    return np.array(values)


def torch_plateau_lrs(steps: int) -> np.ndarray:
    """torch's ReduceLROnPlateau on the same metrics: read, then ``scheduler.step(metric)``."""
    import torch

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **PLATEAU)
    lrs = []
    for metric in plateau_metrics(steps).astype(np.float32):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(float(metric))
    return np.array(lrs)


def torch_seed000_lrs(schedule_args: dict[str, float]) -> np.ndarray:
    """The optimizer's lr after ``deform.update_learning_rate(iteration)``, for iterations
    ``0 … max_steps``. The seed calls it after ``backward``, ``step`` and ``zero_grad``;
    the lr depends on the iteration alone, so the loop leaves those out."""
    import torch

    deform = DeformModel([torch.nn.Parameter(torch.ones(3))], schedule_args)
    lrs = []
    for iteration in range(schedule_args["max_steps"] + 1):
        deform.update_learning_rate(iteration)
        lrs.append(deform.optimizer.param_groups[0]["lr"])
    return np.array(lrs, dtype=np.float64)


def run_torch(steps: int, seed000: dict[str, dict]) -> dict[str, np.ndarray]:
    curves = {
        name: torch_scheduler_lrs(make, steps, key)
        for name, (make, key) in torch_schedulers(steps).items()
    }
    curves.update({name: torch_seed000_lrs(kw) for name, kw in seed000.items()})
    curves["ReduceLROnPlateau"] = torch_plateau_lrs(steps)
    return curves


# -------------------------------------------------------------------- plots


def plot(path: Path, ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> None:
    """Small multiples, one per schedule: jaxnet's line, PyTorch's markers on top."""
    _common.plot_backend()
    import matplotlib.pyplot as plt

    cols = 5
    rows = math.ceil(len(ours) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, lrs) in zip(axes.flat, ours.items(), strict=False):
        ax.plot(lrs, lw=2.5, label="jaxnet")
        if name in theirs:
            every = max(1, len(lrs) // 40)
            steps = np.arange(0, len(lrs), every)
            ax.plot(steps, theirs[name][::every], "o", ms=2.5, color="black", label="PyTorch")
        if name.startswith("get_expon"):
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("momentum" if name.endswith("momentum") else "lr", fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.locator_params(axis="x", nbins=4)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(ours) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    _common.save_figure(fig, path, dpi=110)


def run(*, fast: bool = False, out: Path | None = None, with_torch: bool = True) -> dict[str, Any]:
    """Compute, compare, print and plot; returns jaxnet's figures and, with torch, ``torch_*``."""
    out = _common.output_dir(out, "lr_schedules")
    steps = 50 if fast else 200
    seed000 = seed000_settings(fast)
    ours = run_jaxnet(steps, seed000)
    theirs = run_torch(steps, seed000) if with_torch else {}
    dtype = str(next(iter(ours.values())).dtype)
    report: dict[str, Any] = {"dtype": dtype, "steps": steps, "schedules": list(ours)}

    print(
        f"jaxnet schedules in {dtype} (vmap over the steps)"
        + (
            f"; PyTorch schedulers stepped per iteration; agree when max |Δ| <= "
            f"{TOLERANCE[dtype]:g}"
            if theirs
            else ""
        )
    )
    print(
        f"  {'schedule':38s}{'steps':>7s}{'lr[0]':>12s}{'lr[-1]':>12s}"
        + (f"{'max |Δ|':>12s}  agrees" if theirs else "")
    )
    for name, lrs in ours.items():
        line = f"  {name:38s}{len(lrs):>7d}{lrs[0]:>12.4e}{lrs[-1]:>12.4e}"
        if theirs:
            diff = float(np.max(np.abs(lrs.astype(np.float64) - theirs[name])))
            report.setdefault("torch_max_diff", {})[name] = diff
            line += f"{diff:>12.2e}  {'yes' if diff <= TOLERANCE[dtype] else 'NO'}"
        print(line)

    for name, kw in seed000.items():
        lrs = ours[name]
        marks = sorted({0, kw.get("lr_delay_steps", 0), kw["max_steps"] // 2, kw["max_steps"]})
        figures = {f"lr_at_{k}": float(lrs[k]) for k in marks}
        report[name] = figures
        print(f"\n{name}: {kw}")
        if kw.get("lr_delay_steps", 0) > 0:
            first = f"lr_init · lr_delay_mult = {kw['lr_init'] * kw['lr_delay_mult']:.6e}"
        else:
            first = f"lr_init = {kw['lr_init']:.6e}"
        print(f"  expected: lr[0] = {first}, lr[max_steps] = lr_final = {kw['lr_final']:.6e}")
        if theirs:
            report[f"torch_{name}"] = {f"lr_at_{k}": float(theirs[name][k]) for k in marks}
        for k in marks:
            line = f"  iteration {k:>6d}  jaxnet {lrs[k]:.6e}"
            if theirs:
                line += f"  PyTorch update_learning_rate {theirs[name][k]:.6e}"
            print(line)

    report["plot"] = str(out / "lr_schedules.png")
    plot(Path(report["plot"]), ours, theirs)
    print(f"\nplot {report['plot']}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _common.parser(__doc__, fast="fewer steps (for CI)").parse_args(argv)
    return run(fast=args.fast, out=args.out, with_torch=not args.no_torch)


if __name__ == "__main__":
    main()
