"""Train-step speed side by side: PyTorch, torch.compile, jaxnet, raw JAX, Flax NNX, Equinox.

Measures, in one process and in interleaved rounds, the seed's MNIST MLP train step
(784-256-64-10, ReLU, MSE on one-hot targets, SGD lr 0.01 momentum 0.9) at batch 64 and
512 on MNIST-shaped data, and the seed's linear-regression gradient-descent loop (100
points, 1000 steps). Prints medians, ratios to PyTorch eager (the median over rounds of the
ratio within each round) and the fraction of the machine's measured float32 matmul
throughput (the roofline) each contender reaches;
writes ``benchmark.json`` and ``benchmark.md`` to the output directory. It needs PyTorch
(no ``--no-torch``); a progress bar on stderr counts the timing rounds (``--no-progress``).

    python -m experiments.benchmark            # full run, a few minutes
    python -m experiments.benchmark --fast     # tiny configuration (the CI smoke test)
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from experiments import _common
from jaxnet import nn, optim, train
from jaxnet.nn import functional as F

SIZES = (784, 256, 64, 10)
LR, MOMENTUM = 0.01, 0.9


def mlp_flops(batch: int) -> int:
    """Matmul FLOPs of one train step: forward, weight gradients, and input gradients
    of every layer but the first (the data needs none)."""
    layers = list(itertools.pairwise(SIZES))
    forward = sum(2 * batch * i * o for i, o in layers)
    weight_grads = forward
    input_grads = sum(2 * batch * i * o for i, o in layers[1:])
    return forward + weight_grads + input_grads


def matmul_roofline(n: int = 1024, repeats: int = 20) -> float:
    """Measured float32 GFLOP/s of a large square matmul (XLA's, all cores): the fastest
    of ``repeats`` runs, i.e. what the machine can do, not what a noisy moment gave."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - tic)
    return 2 * n**3 / min(times) / 1e9


# ---- data shared by every contender ---------------------------------------------------


def mnist_shaped(batch: int, steps: int, seed: int = 0):
    """``steps`` batches of normalised-looking images and one-hot targets (host arrays)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps * batch, 784)).astype(np.float32)
    labels = rng.integers(0, 10, steps * batch)
    y = np.eye(10, dtype=np.float32)[labels]
    return x, y


# ---- contenders: each returns run(k) that does k train steps and waits for them -------


def torch_eager(x, y, batch: int, compiled: bool = False) -> Callable[[int], None]:
    import torch

    model = _common.torch_mlp(SIZES)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xs = torch.from_numpy(x).split(batch)
    ys = torch.from_numpy(y).split(batch)

    def step(xb, yb):
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    if compiled:
        step = torch.compile(step)

    def run(k: int) -> None:
        for i in range(k):
            step(xs[i % len(xs)], ys[i % len(ys)])

    return run


def jaxnet_contenders(x, y, batch: int) -> dict[str, Callable[[int], None]]:
    net = nn.MLP(784, [256, 64], 10)
    opt = optim.SGD(LR, momentum=MOMENTUM)

    def loss_fn(params, b):
        return F.mse_loss(net.apply(params, b[0]), b[1])

    params = net.init(jax.random.key(0))
    data = jax.device_put((x, y))
    steps = len(x) // batch
    batches = [
        jax.tree.map(lambda a, i=i: a[i * batch : (i + 1) * batch], data) for i in range(steps)
    ]
    index_batches = jnp.arange(steps * batch, dtype=jnp.int32).reshape(steps, batch)

    step = train.make_train_step(loss_fn, opt)
    loop = train.make_train_loop(loss_fn, opt)
    holder = {"step": train.TrainState.create(params, opt, jax.random.key(0)),
              "loop": train.TrainState.create(params, opt, jax.random.key(0))}  # fmt: skip

    def run_step(k: int) -> None:
        state = holder["step"]
        for i in range(k):
            state, _ = step(state, batches[i % steps])
        holder["step"] = jax.block_until_ready(state)

    def run_loop(k: int) -> None:  # k is a multiple of the epoch length
        state = holder["loop"]
        for _ in range(k // steps):
            state, _ = loop(state, data, index_batches)
        holder["loop"] = jax.block_until_ready(state)

    return {"jaxnet step": run_step, "jaxnet epoch": run_loop}


def raw_jax_contenders(x, y, batch: int) -> dict[str, Callable[[int], None]]:
    """The same model written by hand in JAX: no jaxnet, no optax."""
    keys = jax.random.split(jax.random.key(0), 3)
    params = []
    for key, n_in, n_out in zip(keys, SIZES[:-1], SIZES[1:], strict=True):
        bound = 1 / np.sqrt(n_in)
        kw, kb = jax.random.split(key)
        params.append((jax.random.uniform(kw, (n_out, n_in), jnp.float32, -bound, bound),
                       jax.random.uniform(kb, (n_out,), jnp.float32, -bound, bound)))  # fmt: skip

    def loss_fn(params, xb, yb):
        h = xb
        for i, (w, b) in enumerate(params):
            h = h @ w.T + b[None, :]
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        return jnp.mean((h - yb) ** 2)

    def update(carry, xb, yb):
        params, velocity = carry
        grads = jax.grad(loss_fn)(params, xb, yb)
        velocity = jax.tree.map(lambda v, g: MOMENTUM * v + g, velocity, grads)
        params = jax.tree.map(lambda p, v: p - LR * v, params, velocity)
        return params, velocity

    step = jax.jit(update, donate_argnums=0)
    xd, yd = jax.device_put(x), jax.device_put(y)
    steps = len(x) // batch

    @jax.jit
    def epoch(carry, xd, yd, index_batches):  # shuffled batches, gathered on the device
        def body(carry, indices):
            return update(carry, xd[indices], yd[indices]), None

        return jax.lax.scan(body, carry, index_batches)[0]

    batches = [(xd[i * batch : (i + 1) * batch], yd[i * batch : (i + 1) * batch])
               for i in range(steps)]  # fmt: skip
    index_batches = jnp.arange(steps * batch, dtype=jnp.int32).reshape(steps, batch)
    zeros = jax.tree.map(jnp.zeros_like, params)
    holder = {"step": (params, zeros), "loop": jax.tree.map(jnp.copy, (params, zeros))}

    def run_step(k: int) -> None:
        carry = holder["step"]
        for i in range(k):
            carry = step(carry, *batches[i % steps])
        holder["step"] = jax.block_until_ready(carry)

    def run_loop(k: int) -> None:
        carry = holder["loop"]
        for _ in range(k // steps):
            carry = epoch(carry, xd, yd, index_batches)
        holder["loop"] = jax.block_until_ready(carry)

    return {"raw JAX step": run_step, "raw JAX epoch": run_loop}


def flax_nnx(x, y, batch: int) -> Callable[[int], None]:
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(784, 256, rngs=rngs)
            self.l2 = nnx.Linear(256, 64, rngs=rngs)
            self.l3 = nnx.Linear(64, 10, rngs=rngs)

        def __call__(self, x):
            return self.l3(nnx.relu(self.l2(nnx.relu(self.l1(x)))))

    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(LR, momentum=MOMENTUM), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, xb, yb):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(xb) - yb) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    steps = len(x) // batch
    batches = [jax.device_put((x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]))
               for i in range(steps)]  # fmt: skip

    def run(k: int) -> None:
        for i in range(k):
            loss = step(model, optimizer, *batches[i % steps])
        jax.block_until_ready(loss)

    return run


def equinox(x, y, batch: int) -> Callable[[int], None]:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(0), 3)
    model = eqx.nn.Sequential([
        eqx.nn.Linear(784, 256, key=keys[0]), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Linear(256, 64, key=keys[1]), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Linear(64, 10, key=keys[2]),
    ])  # fmt: skip
    tx = optax.sgd(LR, momentum=MOMENTUM)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit(donate="all-except-first")
    def step(xb, model, opt_state, yb):
        def loss_fn(m):
            return jnp.mean((jax.vmap(m)(xb) - yb) ** 2)

        grads = eqx.filter_grad(loss_fn)(model)
        updates, opt_state = tx.update(grads, opt_state, model)
        return eqx.apply_updates(model, updates), opt_state

    steps = len(x) // batch
    batches = [jax.device_put((x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]))
               for i in range(steps)]  # fmt: skip
    holder = {"state": (model, opt_state)}

    def run(k: int) -> None:
        model, opt_state = holder["state"]
        for i in range(k):
            xb, yb = batches[i % steps]
            model, opt_state = step(xb, model, opt_state, yb)
        holder["state"] = jax.block_until_ready((model, opt_state))

    return run


# ---- the seed's linear-regression gradient descent ------------------------------------


def regression_data(n: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    y = (2.0 * x + 1.0 + 0.1 * rng.standard_normal((n, 1))).astype(np.float32)
    return x, y


def gd_torch(x, y, steps: int, lr: float = 0.1) -> Callable[[int], None]:
    import torch

    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def run(k: int) -> None:
        w = torch.zeros(1, requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        for _ in range(k):
            loss = ((w * tx + b - ty) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w -= lr * w.grad
                b -= lr * b.grad
            w.grad.zero_()
            b.grad.zero_()

    return run


def gd_jaxnet(x, y, steps: int, lr: float = 0.1, unroll: int = 1) -> Callable[[int], None]:
    """The whole descent is one compiled call of jaxnet's full-batch train loop."""
    net = nn.Linear(1, 1)
    opt = optim.SGD(lr)

    def loss_fn(params, batch):
        return F.mse_loss(net.apply(params, batch[0]), batch[1])

    loop = train.make_full_batch_loop(loss_fn, opt, steps, unroll=unroll)
    data = jax.device_put((x, y))
    zeros = {"weight": jnp.zeros((1, 1), jnp.float32), "bias": jnp.zeros((1,), jnp.float32)}

    holder = {"state": train.TrainState.create(zeros, opt, jax.random.key(0))}

    def run(k: int) -> None:  # the descent goes on from where the last run stopped
        state = holder["state"]
        for _ in range(k // steps):
            state, _ = loop(state, data)
        holder["state"] = jax.block_until_ready(state)

    return run


# ---- measurement ----------------------------------------------------------------------


def measure(
    contenders: dict[str, Callable[[int], None]],
    k: int,
    rounds: int,
    desc: str = "timing",
    progress: bool = True,
) -> dict:
    """Median seconds per step of each contender, over interleaved rounds of ``k`` steps.

    A tqdm bar on stderr (off with ``progress=False``) counts the first calls, which
    compile, and then the rounds.
    """
    first = {}
    names = list(contenders)
    with tqdm(total=len(names) + rounds, desc=desc, unit="round", disable=not progress,
              leave=False) as bar:  # fmt: skip
        for name, run in contenders.items():
            bar.set_postfix_str(f"first call: {name}")
            tic = time.perf_counter()
            run(k)  # compiles
            first[name] = time.perf_counter() - tic
            bar.update()
        bar.set_postfix_str("")
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for r in range(rounds):
            for name in _common.round_order(names, r):
                tic = time.perf_counter()
                contenders[name](k)
                samples[name].append((time.perf_counter() - tic) / k)
            bar.update()
    return {name: {"median_s": statistics.median(s), "samples_s": s, "first_call_s": first[name]}
            for name, s in samples.items()}  # fmt: skip


def first_step_compile_seconds(batch: int) -> float:
    """Wall time of the first call of a fresh jaxnet train step (tracing + compiling)."""
    net = nn.MLP(784, [256, 64], 10)
    opt = optim.SGD(LR, momentum=MOMENTUM)
    step = train.make_train_step(lambda p, b: F.mse_loss(net.apply(p, b[0]), b[1]), opt)
    state = train.TrainState.create(net.init(jax.random.key(1)), opt, jax.random.key(0))
    x, y = mnist_shaped(batch, 1, seed=1)
    tic = time.perf_counter()
    jax.block_until_ready(step(state, (x, y)))
    return time.perf_counter() - tic


def mlp_workload(
    batch: int, epoch_steps: int, rounds: int, torch_compile: bool, progress: bool = True
) -> dict:
    x, y = mnist_shaped(batch, epoch_steps)
    contenders = {"PyTorch eager": torch_eager(x, y, batch)}
    if torch_compile:
        contenders["torch.compile"] = torch_eager(x, y, batch, compiled=True)
    contenders.update(jaxnet_contenders(x, y, batch))
    contenders.update(raw_jax_contenders(x, y, batch))
    contenders["Flax NNX"] = flax_nnx(x, y, batch)
    contenders["Equinox"] = equinox(x, y, batch)
    return measure(contenders, epoch_steps, rounds, f"MLP, batch {batch}", progress)


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of the ratio of two contenders' times in the same round: the
    machine's drift between rounds cancels, which a ratio of medians does not do."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def table(title: str, results: dict, flops: int | None, roofline: float) -> str:
    base = results["PyTorch eager"]["samples_s"]
    head = f"### {title}\n\n| contender | median ms/step | speed-up vs PyTorch eager |"
    rule = "|---|---:|---:|"
    if flops:
        head += " GFLOP/s | % of roofline |"
        rule += "---:|---:|"
    lines = [head, rule]
    for name, r in results.items():
        speedup = paired_ratio(base, r["samples_s"])
        row = f"| {name} | {r['median_s'] * 1e3:.4f} | {speedup:.2f}x |"
        if flops:
            gflops = flops / r["median_s"] / 1e9
            row += f" {gflops:.1f} | {100 * gflops / roofline:.0f}% |"
        lines.append(row)
    if "raw JAX epoch" in results:
        rel = {kind: paired_ratio(results[f"jaxnet {kind}"]["samples_s"],
                                  results[f"raw JAX {kind}"]["samples_s"])
               for kind in ("step", "epoch")}  # fmt: skip
        lines.append(
            f"\njaxnet's time over hand-written raw JAX's: step {rel['step']:.3f}, "
            f"epoch {rel['epoch']:.3f}."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = _common.parser(__doc__.splitlines()[0], no_torch=False)
    p.add_argument("--fast", action="store_true", help="tiny configuration (smoke test)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 15; 2 fast)")
    p.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="include torch.compile (default: on, off with --fast)")  # fmt: skip
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        p.error(f"--rounds {args.rounds} must be at least 1")
    out = _common.output_dir(args.out, "benchmark")
    rounds = args.rounds or (2 if args.fast else 15)
    with_compile = (not args.fast) if args.torch_compile is None else args.torch_compile
    progress = not args.no_progress
    report: dict = {
        "machine": _common.machine_info(),
        "roofline_gflops": matmul_roofline(256 if args.fast else 1024),
        "first_step_compile_s": first_step_compile_seconds(512),
        "workloads": {},
    }
    sections = []
    for batch, steps in ((64, 4), (512, 2)) if args.fast else ((64, 100), (512, 40)):
        name = f"MNIST MLP train step, batch {batch}"
        results = mlp_workload(batch, steps, rounds, with_compile, progress)
        report["workloads"][name] = results
        sections.append(table(name, results, mlp_flops(batch), report["roofline_gflops"]))
    gd_steps = 50 if args.fast else 1000
    x, y = regression_data()
    gd_contenders = {
        "PyTorch eager": gd_torch(x, y, gd_steps),
        "jaxnet": gd_jaxnet(x, y, gd_steps),
        "jaxnet, unroll 10": gd_jaxnet(x, y, gd_steps, unroll=10),
    }
    gd = measure(gd_contenders, gd_steps, rounds, "gradient descent", progress)
    name = f"Linear-regression gradient descent, 100 points, {gd_steps} steps"
    report["workloads"][name] = gd
    sections.append(table(name, gd, None, report["roofline_gflops"]))

    header = (
        f"Roofline: {report['roofline_gflops']:.0f} GFLOP/s (float32 matmul, XLA). "
        f"First jaxnet train step (trace + compile): {report['first_step_compile_s']:.2f} s. "
        f"Medians of {rounds} interleaved rounds; {report['machine']['cpu_count']} CPU cores."
    )
    markdown = header + "\n\n" + "\n\n".join(sections) + "\n"
    print(markdown)
    (out / "benchmark.md").write_text(markdown)
    (out / "benchmark.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out / 'benchmark.md'} and {out / 'benchmark.json'}")
    return report


if __name__ == "__main__":
    main()
