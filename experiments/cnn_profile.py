"""Where a CNN train step's time goes on CPU: d2l's LeNet in PyTorch eager and in raw JAX.

One SGD-momentum (0.9) train step of d2l's LeNet (Conv2d(1,6,5,padding=2)-ReLU-MaxPool2d(2)-
Conv2d(6,16,5)-ReLU-MaxPool2d(2)-Flatten-Linear(400,120)-ReLU-Linear(120,84)-ReLU-
Linear(84,10), cross-entropy) at batch 128, measured in one process in interleaved rounds:

* PyTorch eager;
* raw JAX jitted steps in a Python loop, written several ways: NCHW or NHWC inside,
  ``lax.conv_general_dilated`` or explicit im2col (strided slices and one dot), max-pool by
  ``lax.reduce_window`` (its gradient is a select-and-scatter), by reshape-max, or by a
  fold of strided slices (``jaxnet.nn.convolution``'s), with and without donated buffers;
* the epoch as one compiled loop: ``lax.scan`` with unroll 1 and unroll k, and k steps
  unrolled by Python inside one jit;
* per-op timings of the jitted pieces: each convolution's forward, input gradient and
  weight gradient, pooling forward and backward, against torch's kernels;
* optionally (``--flags``) the main contenders again in child processes under XLA flags.

Prints medians and ratios to PyTorch eager (the median over rounds of the in-round ratio);
writes ``cnn_profile.json`` and ``cnn_profile.md`` to the output directory.

    python -m experiments.cnn_profile            # full run, several minutes
    python -m experiments.cnn_profile --fast     # tiny configuration (a smoke test)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from experiments import _common
from experiments.benchmark import measure, paired_ratio
from jaxnet.nn import convolution as C

BATCH, LR, MOMENTUM = 128, 0.1, 0.9
FLAGS = (
    "--xla_cpu_use_thunk_runtime=false",
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_use_xnnpack=true",
)


def torch_lenet():
    import torch

    n = torch.nn
    return n.Sequential(
        n.Conv2d(1, 6, 5, padding=2), n.ReLU(), n.MaxPool2d(2),
        n.Conv2d(6, 16, 5), n.ReLU(), n.MaxPool2d(2), n.Flatten(),
        n.Linear(400, 120), n.ReLU(), n.Linear(120, 84), n.ReLU(), n.Linear(84, 10),
    )  # fmt: skip


def data(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps * BATCH, 1, 28, 28)).astype(np.float32)
    return x, rng.integers(0, 10, steps * BATCH).astype(np.int32)


# ---- raw JAX LeNet, one formulation per choice of conv, pool and layout ----------------


def conv_xla(x, w, padding: int, layout: str):
    """``lax.conv_general_dilated``; ``w`` is torch's OIHW, moved to HWIO for NHWC."""
    if layout == "NHWC":
        w = w.transpose(2, 3, 1, 0)
    dims = ("NCHW", "OIHW", "NCHW") if layout == "NCHW" else ("NHWC", "HWIO", "NHWC")
    pads = [(padding, padding)] * 2
    return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=dims)


def conv_im2col(x, w, padding: int, layout: str):
    """The k*k shifted slices of the padded input side by side, then one dot."""
    out_c, in_c, kh, kw = w.shape
    spatial = (1, 2) if layout == "NHWC" else (2, 3)
    pads = [(0, 0)] * 4
    for axis in spatial:
        pads[axis] = (padding, padding)
    x = jnp.pad(x, pads)
    oh, ow = x.shape[spatial[0]] - kh + 1, x.shape[spatial[1]] - kw + 1
    if layout == "NHWC":
        cols = [x[:, i : i + oh, j : j + ow, :] for i in range(kh) for j in range(kw)]
        patches = jnp.concatenate(cols, axis=-1)  # (N, OH, OW, kh*kw*C)
        wmat = w.transpose(2, 3, 1, 0).reshape(kh * kw * in_c, out_c)
        return patches @ wmat
    cols = [x[:, :, i : i + oh, j : j + ow] for i in range(kh) for j in range(kw)]
    patches = jnp.stack(cols, axis=2)  # (N, C, kh*kw, OH, OW)
    return jnp.einsum("nckhw,ock->nohw", patches, w.reshape(out_c, in_c, kh * kw))


def conv_jaxnet(x, w, padding: int, layout: str):
    """``jaxnet.nn.convolution.conv2d`` (NCHW): im2col for a short contraction, else XLA's."""
    if layout != "NCHW":
        raise ValueError(f"conv_jaxnet takes NCHW, got {layout}")
    return C.conv2d(x, w, padding=padding)


def pool_reduce_window(x, layout: str):
    window = (1, 1, 2, 2) if layout == "NCHW" else (1, 2, 2, 1)
    return lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")


def pool_reshape(x, layout: str):
    n, a, b, c = x.shape
    if layout == "NCHW":
        return x.reshape(n, a, b // 2, 2, c // 2, 2).max(axis=(3, 5))
    return x.reshape(n, a // 2, 2, b // 2, 2, c).max(axis=(2, 4))


def pool_slices(x, layout: str):
    if layout == "NCHW":
        return C.max_pool2d(x, 2)
    return C.max_pool2d(x.transpose(0, 3, 1, 2), 2).transpose(0, 2, 3, 1)


CONVS = {"xla": conv_xla, "im2col": conv_im2col, "jaxnet": conv_jaxnet}
POOLS = {"reduce_window": pool_reduce_window, "reshape": pool_reshape, "slices": pool_slices}


def lenet_loss(conv: str, pool: str, layout: str) -> Callable:
    conv_fn, pool_fn = CONVS[conv], POOLS[pool]

    def bias(b):
        return b.reshape((1, -1, 1, 1) if layout == "NCHW" else (1, 1, 1, -1))

    def loss(params, x, y):
        (w1, b1), (w2, b2), (w3, b3), (w4, b4), (w5, b5) = params
        if layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        h = pool_fn(jax.nn.relu(conv_fn(x, w1, 2, layout) + bias(b1)), layout)
        h = pool_fn(jax.nn.relu(conv_fn(h, w2, 0, layout) + bias(b2)), layout)
        if layout == "NHWC":  # torch's Flatten order is (C, H, W)
            h = h.transpose(0, 3, 1, 2)
        h = h.reshape(h.shape[0], -1)
        h = jax.nn.relu(h @ w3.T + b3[None])
        h = jax.nn.relu(h @ w4.T + b4[None])
        logits = h @ w5.T + b5[None]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    return loss


def sgd_update(loss: Callable) -> Callable:
    """One step of ``torch.optim.SGD(lr, momentum)`` on ``(params, velocity)``."""

    def update(carry, x, y):
        params, velocity = carry
        grads = jax.grad(loss)(params, x, y)
        velocity = jax.tree.map(lambda v, g: MOMENTUM * v + g, velocity, grads)
        return jax.tree.map(lambda p, v: p - LR * v, params, velocity), velocity

    return update


def initial_params(model) -> list:
    tensors = [p.detach().numpy().copy() for p in model.parameters()]
    return [
        (jnp.asarray(w), jnp.asarray(b)) for w, b in zip(tensors[::2], tensors[1::2], strict=True)
    ]


# ---- contenders: each returns run(k) doing k train steps and waiting for them ---------


def torch_contender(x, y, threads: int) -> Callable[[int], None]:
    """PyTorch eager with ``threads`` intra-op threads (set at each call)."""
    import torch

    model = torch_lenet()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xs, ys = torch.from_numpy(x).split(BATCH), torch.from_numpy(y).long().split(BATCH)

    def run(k: int) -> None:
        torch.set_num_threads(threads)
        for i in range(k):
            loss = torch.nn.functional.cross_entropy(model(xs[i % len(xs)]), ys[i % len(ys)])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return run


def step_contender(params, x, y, loss, donate: bool = True) -> Callable[[int], None]:
    """Jitted steps called from a Python loop."""
    step = jax.jit(sgd_update(loss), donate_argnums=0 if donate else ())
    batches = [
        jax.device_put((x[i : i + BATCH], y[i : i + BATCH])) for i in range(0, len(x), BATCH)
    ]
    holder = [(jax.tree.map(jnp.copy, params), jax.tree.map(jnp.zeros_like, params))]

    def run(k: int) -> None:
        carry = holder[0]
        for i in range(k):
            carry = step(carry, *batches[i % len(batches)])
        holder[0] = jax.block_until_ready(carry)

    return run


def epoch_contender(params, x, y, loss, unroll: int | None) -> Callable[[int], None]:
    """The epoch as one compiled call: ``lax.scan`` over the batches with ``unroll``, or
    (``unroll=None``) the steps written out by Python inside one jit."""
    update = sgd_update(loss)
    steps = len(x) // BATCH
    xs = jnp.asarray(x).reshape(steps, BATCH, *x.shape[1:])
    ys = jnp.asarray(y).reshape(steps, BATCH)

    @jax.jit
    def epoch(carry, xs, ys):
        if unroll is None:
            for i in range(steps):
                carry = update(carry, xs[i], ys[i])
            return carry
        return lax.scan(lambda c, b: (update(c, *b), None), carry, (xs, ys), unroll=unroll)[0]

    holder = [(jax.tree.map(jnp.copy, params), jax.tree.map(jnp.zeros_like, params))]

    def run(k: int) -> None:  # k is a multiple of the epoch length
        carry = holder[0]
        for _ in range(k // steps):
            carry = epoch(carry, xs, ys)
        holder[0] = jax.block_until_ready(carry)

    return run


def step_contenders(params, x, y, fast: bool) -> dict[str, Callable[[int], None]]:
    base = lenet_loss("xla", "reduce_window", "NCHW")
    out = {"JAX step (NCHW, reduce_window)": step_contender(params, x, y, base)}
    variants = [("jaxnet", "slices", "NCHW"), ("xla", "slices", "NCHW"), ("xla", "reshape", "NCHW"),
                ("xla", "reduce_window", "NHWC"), ("xla", "slices", "NHWC"),
                ("im2col", "reduce_window", "NCHW"), ("im2col", "slices", "NHWC")]  # fmt: skip
    for conv, pool, layout in variants[:2] if fast else variants:
        name = f"JAX step ({layout}, {pool}{'' if conv == 'xla' else ', ' + conv})"
        out[name] = step_contender(params, x, y, lenet_loss(conv, pool, layout))
    out["JAX step (NCHW, reduce_window, no donate)"] = step_contender(params, x, y, base, False)
    return out


def loop_contenders(params, x, y, steps: int) -> dict[str, Callable[[int], None]]:
    out = {}
    for conv, pool in (("xla", "reduce_window"), ("jaxnet", "slices")):
        loss = lenet_loss(conv, pool, "NCHW")
        out[f"JAX scan epoch ({conv} conv, {pool}, unroll 1)"] = epoch_contender(
            params, x, y, loss, 1
        )
        out[f"JAX scan epoch ({conv} conv, {pool}, unroll {steps})"] = epoch_contender(
            params, x, y, loss, steps
        )
        out[f"JAX epoch ({conv} conv, {pool}, Python-unrolled in one jit)"] = epoch_contender(
            params, x, y, loss, None
        )
    return out


# ---- per-op timings --------------------------------------------------------------------


def op_contenders() -> dict[str, Callable[[int], None]]:
    """Each piece of the step alone, jitted, against torch's kernel for the same piece."""
    import torch

    rng = np.random.default_rng(1)
    shapes = {  # name: (input, weight, padding)
        "conv1": ((BATCH, 1, 28, 28), (6, 1, 5, 5), 2),
        "conv2": ((BATCH, 6, 14, 14), (16, 6, 5, 5), 0),
    }
    out = {}
    for name, (xs, ws, p) in shapes.items():
        xi = rng.standard_normal(xs).astype(np.float32)
        wi = rng.standard_normal(ws).astype(np.float32)
        y_shape = jax.eval_shape(lambda a, b, p=p: conv_xla(a, b, p, "NCHW"), xi, wi).shape
        gy = rng.standard_normal(y_shape).astype(np.float32)
        xj, wj, gj = map(jnp.asarray, (xi, wi, gy))
        for conv in ("xla", "jaxnet"):
            fn = CONVS[conv]
            fwd = jax.jit(lambda a, b, p=p, fn=fn: fn(a, b, p, "NCHW"))
            dx = jax.jit(
                lambda a, b, g, p=p, fn=fn: jax.vjp(lambda a: fn(a, b, p, "NCHW"), a)[1](g)
            )
            dw = jax.jit(
                lambda a, b, g, p=p, fn=fn: jax.vjp(lambda b: fn(a, b, p, "NCHW"), b)[1](g)
            )
            out[f"{name} forward, JAX {conv}"] = _repeat(lambda f=fwd, a=xj, b=wj: f(a, b))
            if name != "conv1":  # the data needs no gradient
                out[f"{name} input grad, JAX {conv}"] = _repeat(
                    lambda f=dx, a=xj, b=wj, g=gj: f(a, b, g)
                )
            out[f"{name} weight grad, JAX {conv}"] = _repeat(
                lambda f=dw, a=xj, b=wj, g=gj: f(a, b, g)
            )
        xt, wt, gt = map(torch.from_numpy, (xi, wi, gy))
        out[f"{name} forward, torch"] = _repeat_torch(
            lambda a=xt, b=wt, p=p: torch.nn.functional.conv2d(a, b, padding=p)
        )
        out[f"{name} both grads, torch"] = _repeat_torch(
            lambda a=xt, b=wt, g=gt, p=p: torch.ops.aten.convolution_backward(
                g, a, b, None, [1, 1], [p, p], [1, 1], False, [0, 0], 1, [True, True, False]
            )
        )
    pooled = rng.standard_normal((BATCH, 6, 28, 28)).astype(np.float32)
    pj = jnp.asarray(pooled)
    gp = jnp.asarray(rng.standard_normal((BATCH, 6, 14, 14)).astype(np.float32))
    for pool, fn in POOLS.items():
        f = jax.jit(lambda a, fn=fn: fn(a, "NCHW"))
        b = jax.jit(lambda a, g, fn=fn: jax.vjp(lambda a: fn(a, "NCHW"), a)[1](g))
        out[f"pool1 forward, JAX {pool}"] = _repeat(lambda f=f: f(pj))
        out[f"pool1 backward, JAX {pool}"] = _repeat(lambda b=b: b(pj, gp))
    pt = torch.from_numpy(pooled).requires_grad_()
    out["pool1 forward, torch"] = _repeat_torch(lambda: torch.nn.functional.max_pool2d(pt, 2))
    gpt = torch.from_numpy(np.array(gp))

    def torch_pool_both():
        torch.nn.functional.max_pool2d(pt, 2).backward(gpt)

    out["pool1 forward+backward, torch"] = _repeat_torch(torch_pool_both)
    return out


def _repeat(call: Callable) -> Callable[[int], None]:
    def run(k: int) -> None:
        for _ in range(k):
            result = call()
        jax.block_until_ready(result)

    return run


def _repeat_torch(call: Callable) -> Callable[[int], None]:
    def run(k: int) -> None:
        for _ in range(k):
            call()

    return run


# ---- XLA flags: the main contenders again in child processes ----------------------------


def flag_sweep(args) -> dict:
    results = {}
    for flag in ("", *FLAGS):
        env = {**os.environ, "XLA_FLAGS": flag}
        cmd = [sys.executable, "-m", "experiments.cnn_profile", "--steps-only", "--no-progress"]
        cmd += ["--rounds", str(args.rounds), "--epoch-steps", str(args.epoch_steps)]
        if args.fast:
            cmd.append("--fast")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        results[flag or "(no flags)"] = json.loads(done.stdout.splitlines()[-1])
    return results


def ratios(results: dict, base: str = "PyTorch eager") -> dict[str, float]:
    """Speed-up of each contender over ``base``: median of the in-round time ratios."""
    return {n: paired_ratio(results[base]["samples_s"], r["samples_s"]) for n, r in results.items()}


def table(title: str, results: dict, base: str | None = "PyTorch eager") -> str:
    """Medians, and with ``base`` the speed-ups over it."""
    head = "| contender | median ms |" + (f" speed-up vs {base} |" if base else "")
    lines = [f"### {title}", "", head, "|---|---:|" + ("---:|" if base else "")]
    speedups = ratios(results, base) if base else {}
    for name, r in results.items():
        row = f"| {name} | {r['median_s'] * 1e3:.3f} |"
        lines.append(row + (f" {speedups[name]:.2f}x |" if base else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__, fast="few steps and rounds (a smoke test)", no_torch=False)
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
    p.add_argument("--epoch-steps", type=int, default=None, help="steps per epoch and round")
    p.add_argument("--flags", action="store_true", help="also run the steps under XLA flags")
    p.add_argument("--steps-only", action="store_true", help="print step ratios as JSON only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.fast else 7)
    args.epoch_steps = args.epoch_steps or (2 if args.fast else 20)
    if args.rounds < 1 or args.epoch_steps < 1:
        p.error("--rounds and --epoch-steps must be at least 1")
    progress = not args.no_progress
    import torch

    x, y = data(args.epoch_steps)
    torch.manual_seed(0)
    params = initial_params(torch_lenet())
    k = args.epoch_steps
    threads = torch.get_num_threads()
    steps = {"PyTorch eager": torch_contender(x, y, threads),
             "PyTorch eager, 1 thread": torch_contender(x, y, 1),
             **step_contenders(params, x, y, args.fast)}  # fmt: skip
    if args.steps_only:
        print(json.dumps(ratios(measure(steps, k, args.rounds, "steps", progress))))
        return
    out = _common.output_dir(args.out, "cnn_profile")
    report = {"machine": _common.machine_info(), "batch": BATCH, "epoch_steps": k}
    loops = {"PyTorch eager": steps["PyTorch eager"],
             "JAX step (NCHW, reduce_window)": steps["JAX step (NCHW, reduce_window)"],
             "JAX step (NCHW, slices, jaxnet)": steps["JAX step (NCHW, slices, jaxnet)"],
             **loop_contenders(params, x, y, k)}  # fmt: skip
    report["steps"] = measure(steps, k, args.rounds, "steps", progress)
    report["loops"] = measure(loops, k, args.rounds, "loops", progress)
    report["ops"] = measure(op_contenders(), 10, args.rounds, "ops", progress)
    (out / "cnn_profile.json").write_text(json.dumps(report, indent=1))
    md = [
        "## LeNet train step, batch 128 (CPU; the machine was shared)",
        table("Steps in a Python loop", report["steps"]),
        table("Compiled loops", report["loops"]),
        table("Pieces alone, jitted (time per call)", report["ops"], None),
    ]
    if args.flags:
        report["flags"] = flag_sweep(args)
        md.append("### Speed-ups vs PyTorch eager under XLA flags\n")
        for flag, r in report["flags"].items():
            md.append(f"- `{flag}`: " + ", ".join(f"{n} {v:.2f}x" for n, v in r.items()))
    text = "\n\n".join(md)
    print(text)
    (out / "cnn_profile.md").write_text(text + "\n")
    (out / "cnn_profile.json").write_text(json.dumps(report, indent=1))  # with the flags
    print(f"\nwrote {out / 'cnn_profile.md'} and cnn_profile.json")


if __name__ == "__main__":
    main()
