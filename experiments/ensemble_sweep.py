"""A learning-rate sweep of N seed MLPs in one vmapped compiled call, against N PyTorch runs.

Trains N copies of the seed's 784-256-64-10 MLP (MSE on one-hot targets, SGD momentum
0.9, batch 64 by default), each with its own initial key and learning rate, on the same batches
of MNIST-shaped data: jaxnet runs all of them as one ``jax.vmap`` of its compiled train
loop (``jaxnet.ensemble``); PyTorch trains them one after another. The two alternate
over a few parts of the epoch, so both see the same machine load. Prints both wall
times, the speed-up, and how far each member is from the same member trained alone
with ``jaxnet.train`` (every member is checked); writes ``ensemble_sweep.json`` and, with
PyTorch, ``ensemble_sweep.png`` (the time of each part, jaxnet against PyTorch) to the
output directory.

    python -m experiments.ensemble_sweep            # N = 16, 60000 // 64 = 937 batches of 64
                                                    # (59 968 examples, about one epoch)
    python -m experiments.ensemble_sweep --fast     # N = 4, 4 steps (CI)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from experiments import _common, benchmark
from jaxnet import ensemble, nn, optim, train
from jaxnet.nn import functional as F

NET = nn.MLP(784, [256, 64], 10)


def loss_fn(params, batch):
    return F.mse_loss(NET.apply(params, batch[0]), batch[1])


# One optimiser for every member; each member's lr lives in its optimiser state.
SWEEP_OPT = optax.inject_hyperparams(optim.SGD)(lr=0.01, momentum=benchmark.MOMENTUM)
STEP = train.train_step(loss_fn)


def jaxnet_sweep(keys, lrs, data, index_batches):
    """``run(chunk)`` trains every member on the chunk's index batches in one call;
    ``states()`` returns the trained states."""
    loop = jax.jit(ensemble.train_loop(STEP), donate_argnums=0)
    holder = {"states": ensemble.create(NET, keys, SWEEP_OPT, {"lr": lrs})}

    def per_member(chunk) -> jax.Array:  # every member trains on the same batches
        return jnp.broadcast_to(jnp.asarray(chunk), (len(keys), *np.shape(chunk)))

    compiled = {  # ahead of time, outside the timing
        len(chunk): loop.lower(holder["states"], data, per_member(chunk)).compile()
        for chunk in index_batches
    }

    def run(chunk: jax.Array) -> None:
        holder["states"], _ = compiled[len(chunk)](holder["states"], data, per_member(chunk))
        jax.block_until_ready(holder["states"])

    return run, lambda: holder["states"]


def torch_sweep(initial: list[dict], lrs, x, y):
    """``run(chunk)`` trains the N PyTorch models one after another on the chunk."""
    import torch

    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    members = []
    for params, lr in zip(initial, lrs, strict=True):
        model = _common.torch_mlp(benchmark.SIZES)
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})
        opt = torch.optim.SGD(model.parameters(), lr=float(lr), momentum=benchmark.MOMENTUM)
        members.append((model, opt))

    def run(chunk: np.ndarray) -> None:
        order = [torch.from_numpy(i) for i in chunk]
        for model, opt in members:
            for idx in order:
                loss = torch.nn.functional.mse_loss(model(xs[idx]), ys[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()

    return run


def timed(run, chunk) -> float:
    tic = time.perf_counter()
    run(chunk)
    return time.perf_counter() - tic


def plot(path: Path, jax_seconds: list[float], torch_seconds: list[float]) -> None:
    """Bars of each part's wall time, jaxnet's vmapped sweep next to PyTorch's."""
    _common.plot_backend()
    import matplotlib.pyplot as plt

    x = np.arange(len(jax_seconds))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(x - 0.2, jax_seconds, 0.4, label="jaxnet, vmapped")
    ax.bar(x + 0.2, torch_seconds, 0.4, label="PyTorch, sequential")
    ax.set_xticks(x, [f"part {i + 1}" for i in x])
    ax.set(ylabel="seconds", title="Learning-rate sweep: wall time of each part")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    _common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = _common.parser(__doc__, fast="N = 4 and a few steps (for CI)")
    p.add_argument("--members", type=int, default=None, help="ensemble size (default 16)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--chunks", type=int, default=4, help="the sweeps alternate in parts (4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = p.parse_args(argv)
    for flag, value in (("--members", args.members), ("--batch", args.batch)):
        if value is not None and value < 1:
            p.error(f"{flag} {value} must be at least 1")
    members = args.members or (4 if args.fast else 16)
    batch = args.batch
    steps = 4 if args.fast else 60_000 // batch  # whole batches of MNIST's 60 000 examples
    if not 1 <= args.chunks <= steps:
        p.error(f"--chunks {args.chunks} must be between 1 and the {steps} steps of the epoch")
    out = _common.output_dir(args.out, "ensemble_sweep")
    x, y = benchmark.mnist_shaped(batch, steps)
    data = jax.device_put((x, y))
    index_batches = jnp.asarray(
        np.random.default_rng(0).permutation(steps * batch).reshape(steps, batch), jnp.int32
    )
    keys = jax.random.split(jax.random.key(0), members)
    lrs = jnp.geomspace(1e-3, 1e-1, members).astype(jnp.float32)

    chunks = np.array_split(np.array(index_batches), args.chunks)  # writable, for torch
    device_chunks = [jnp.asarray(c) for c in chunks]  # placed once, outside the timing
    run_jax, trained = jaxnet_sweep(keys, lrs, data, device_chunks)
    run_torch = None
    if not args.no_torch:
        initial = [NET.state_dict(NET.init(k)) for k in keys]
        run_torch = torch_sweep(initial, np.asarray(lrs), x, y)
    # The two sweeps alternate chunk by chunk, so both see the same machine load.
    jax_seconds, torch_seconds = [], []
    parts = tqdm(
        zip(chunks, device_chunks, strict=True),
        total=len(chunks),
        desc="sweep parts",
        unit="part",
        disable=args.no_progress,
        leave=False,
    )
    for chunk, device_chunk in parts:
        jax_seconds.append(timed(run_jax, device_chunk))
        if run_torch is not None:
            torch_seconds.append(timed(run_torch, chunk))
    states = trained()
    seconds = sum(jax_seconds)
    flops = members * steps * benchmark.mlp_flops(batch)
    report = {
        "members": members,
        "batch": batch,
        "steps": steps,
        "examples": steps * batch,
        "learning_rates": [float(lr) for lr in lrs],
        "jaxnet_seconds": seconds,
        "jaxnet_part_seconds": jax_seconds,
        "jaxnet_gflops": flops / seconds / 1e9,
    }
    # Every member against the same member trained alone with jaxnet.train.
    gaps = []
    for i in range(members):
        opt = optim.SGD(float(lrs[i]), momentum=benchmark.MOMENTUM)
        alone = train.TrainState.create(NET.init(keys[i]), opt, keys[i])
        alone, _ = jax.jit(train.train_loop(STEP))(alone, data, index_batches)
        member = jax.tree.map(lambda a, i=i: a[i], states.params)
        pairs = zip(jax.tree.leaves(member), jax.tree.leaves(alone.params), strict=True)
        gaps.append(max(_common.max_abs_diff(a, b) for a, b in pairs))
    report["member_max_diff"] = gaps
    report["max_member_diff"] = max(gaps)
    print(f"jaxnet: {members} members x {steps} steps, vmapped: {seconds:.2f} s "
          f"({report['jaxnet_gflops']:.3g} GFLOP/s)")  # fmt: skip
    print(f"  largest parameter difference to the member trained alone, per member: "
          f"{', '.join(f'{g:.1e}' for g in gaps)}")  # fmt: skip
    if run_torch is not None:
        ratios = [t / j for t, j in zip(torch_seconds, jax_seconds, strict=True)]
        report.update(
            torch_seconds=sum(torch_seconds),
            torch_part_seconds=torch_seconds,
            torch_gflops=flops / sum(torch_seconds) / 1e9,
            speedup=sum(torch_seconds) / seconds,
            part_speedups=ratios,
        )
        print(f"PyTorch: {members} sequential trainings: {sum(torch_seconds):.2f} s "
              f"({report['torch_gflops']:.3g} GFLOP/s)")  # fmt: skip
        print(f"  speed-up of the vmapped sweep: {report['speedup']:.2f}x "
              f"(per chunk: {', '.join(f'{r:.2f}x' for r in ratios)})")  # fmt: skip
        plot(out / "ensemble_sweep.png", jax_seconds, torch_seconds)
        report["plot"] = str(out / "ensemble_sweep.png")
    report_path = out / "ensemble_sweep.json"
    report_path.write_text(json.dumps(report, indent=1))
    print(f"wrote {report_path}" + (f" and {report['plot']}" if "plot" in report else ""))
    report["report"] = str(report_path)
    return report


if __name__ == "__main__":
    main()
