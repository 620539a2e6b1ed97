"""Port torchvision's ResNet-18 with jaxnet.from_torch: compare every layer, time both.

Builds a randomly initialised ``torchvision.models.resnet18``, converts it with
``jaxnet.from_torch`` (one call: structure, names and weights), prints the
``jaxnet.compare`` table (every layer's output and parameter gradients beside torch's, in
eval mode) and writes it as Markdown, then times inference and one SGD training step
(forward, backward, update, BatchNorm statistics) in both frameworks. The two are timed
in interleaved rounds (each round runs both, in alternating order); the figures are
medians and the speed-up is the median of the per-round ratios, called unreliable when
the machine was busy.

    python -m experiments.port_from_torch [--fast] [--out DIR]

torchvision's PyPI wheel links CUDA; against a CPU-only torch its C++ operators do not
load and ``import torchvision`` fails. The model code does not need them: when the import
fails, the operator schemas are declared first (``experiments/_torchvision.py``).
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

import jaxnet
from experiments import _common
from experiments._torchvision import import_torchvision
from experiments.mnist_mlp import cores_in_use, load_average, speedup_figure
from jaxnet import optim
from jaxnet.nn import functional as F

LR, MOMENTUM = 0.1, 0.9


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_rounds(contenders: dict[str, Any], rounds: int, repeats: int) -> dict[str, list[float]]:
    """Per round, each contender's median time over ``repeats`` calls, the contenders in
    the rotated order of ``_common.round_order`` (each warmed up once first)."""
    for fn in contenders.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        for name in _common.round_order(list(contenders), r):
            seconds[name].append(_median_seconds(contenders[name], repeats))
    return seconds


def run(size: int, batch: int, rounds: int, repeats: int, seed: int, out: Path) -> dict[str, Any]:
    import torch

    torchvision = import_torchvision()
    torch.manual_seed(seed)
    module = torchvision.models.resnet18(weights=None)
    start = time.perf_counter()
    model, params, buffers = jaxnet.from_torch(module)
    convert_seconds = time.perf_counter() - start

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, 1000, batch)
    comparison = jaxnet.compare(module, model, params, x, buffers=buffers, grads=True)
    print(comparison)

    # inference: eval mode, no gradients
    infer = jax.jit(lambda p, b, x: model.apply(p, x, buffers=b, training=False)[0])
    eval_module = copy.deepcopy(module).eval()
    tx = torch.from_numpy(x)

    def torch_infer():
        with torch.no_grad():
            eval_module(tx)

    # one SGD step: training mode, BatchNorm statistics updated
    sgd = optim.SGD(lr=LR, momentum=MOMENTUM)

    def loss_fn(p, b):
        y, new_b = model.apply(p, x, buffers=b, training=True)
        return F.cross_entropy(y, labels), new_b

    @jax.jit
    def step(p, b, s):
        (_, new_b), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, b)
        updates, s = sgd.update(grads, s, p)
        return optax.apply_updates(p, updates), new_b, s

    state = {"p": params, "b": buffers, "s": sgd.init(params)}

    def jaxnet_step():
        state["p"], state["b"], state["s"] = step(state["p"], state["b"], state["s"])
        jax.block_until_ready(state["p"])

    train_module = copy.deepcopy(module).train()
    opt = torch.optim.SGD(train_module.parameters(), lr=LR, momentum=MOMENTUM)
    tlabels = torch.from_numpy(labels)

    def torch_step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(train_module(tx), tlabels).backward()
        opt.step()

    loads = [load_average()]
    timings = {
        "inference": timed_rounds(
            {"jaxnet": lambda: jax.block_until_ready(infer(params, buffers, x)),
             "torch": torch_infer}, rounds, repeats),
        "train step": timed_rounds({"jaxnet": jaxnet_step, "torch": torch_step}, rounds, repeats),
    }  # fmt: skip
    loads.append(load_average())
    report: dict[str, Any] = {
        "image_size": size, "batch": batch, "rounds": rounds, "repeats": repeats,
        "convert_seconds": convert_seconds, "compare_ok": comparison.ok,
        "first_mismatch": comparison.first_mismatch, "load_average": loads,
        "machine": _common.machine_info(),
    }  # fmt: skip
    lines = [
        f"\nResNet-18, batch {batch} of {size}x{size} images, float32, {rounds} interleaved "
        f"rounds (median of {repeats} calls each); from_torch took {convert_seconds:.2f} s",
        "| what | jaxnet (ms) | torch (ms) | speed-up (torch / jaxnet) |",
        "| --- | --- | --- | --- |",
    ]
    for what, seconds in timings.items():
        speedup, unreliable = speedup_figure(
            seconds["jaxnet"], seconds["torch"], loads, cores_in_use()
        )
        ours, theirs = statistics.median(seconds["jaxnet"]), statistics.median(seconds["torch"])
        if unreliable:  # the shared figure speaks of epochs; here they are rounds
            unreliable = unreliable.replace("per-epoch", "per-round")
        figure = f"{speedup:.2f}x" + (f" (unreliable: {unreliable})" if unreliable else "")
        lines.append(f"| {what} | {1e3 * ours:.1f} | {1e3 * theirs:.1f} | {figure} |")
        report[what] = {"jaxnet_s": seconds["jaxnet"], "torch_s": seconds["torch"],
                        "speedup": speedup, "unreliable": unreliable}  # fmt: skip
    timing_table = "\n".join(lines)
    print(timing_table)
    (out / "compare.md").write_text(
        f"# ResNet-18 ported with jaxnet.from_torch\n\n{comparison.to_markdown()}\n{timing_table}\n"
    )
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {out / 'compare.md'} and {out / 'report.json'}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = _common.parser(
        __doc__, fast="64x64 images and 3 timing rounds of 2 calls (a smoke run)", no_torch=False
    )
    p.add_argument("--batch", type=int, default=2, help="images per batch (default 2)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.batch < 2:
        p.error(f"--batch {args.batch} must be at least 2 (BatchNorm needs two per channel)")
    size, rounds, repeats = (64, 3, 2) if args.fast else (224, 7, 5)
    out = _common.output_dir(args.out, "port_from_torch")
    return run(size, args.batch, rounds, repeats, args.seed, out)


if __name__ == "__main__":
    main()
