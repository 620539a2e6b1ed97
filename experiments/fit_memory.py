"""Peak memory of ``train.fit`` on a model of 50M parameters or more, against training alone.

Each contender runs in a fresh child process on the same MLP (784 -> width x depth -> 10,
Adam, batch 32, one step per compiled call so that every call is checked):
- ``training alone``: a jitted, donated ``train.train_step`` called in a Python loop,
  the least any training of this model holds;
- ``fit, nan_policy="stop"`` (the default): calls not donated, each checked as it
  returns;
- ``fit, nan_policy="skip"``: the guard inside the step, calls donated and pipelined.

The figure is the peak resident memory during training (Linux's ``VmHWM``, reset just
before) minus the resident memory before it, in GiB and in copies of the train state
(params and optimiser state). PyTorch equivalent: ``torch.cuda.max_memory_allocated``
around a training loop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import _common
from jaxnet import nn, train
from jaxnet.nn import functional as F

CONTENDERS = ("training alone", "fit, nan_policy=stop", "fit, nan_policy=skip")


def _status_gib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(contender: str, width: int, depth: int, batch: int, steps: int) -> dict[str, Any]:
    """The peak memory of one contender, in this process (a fresh one per contender)."""
    net = nn.MLP(784, [width] * depth, 10)
    rng = np.random.default_rng(0)
    data = (
        jnp.asarray(rng.normal(size=(batch * steps, 784)), jnp.float32),
        jnp.asarray(np.arange(batch * steps) % 10),
    )

    def loss_fn(params, b):
        return F.cross_entropy(net.apply(params, b[0]), b[1])

    state = train.TrainState.create(
        net.init(jax.random.key(0)), optax.adam(1e-4), jax.random.key(1)
    )
    state_gib = sum(leaf.nbytes for leaf in jax.tree.leaves((state.params, state.opt_state)))
    jax.block_until_ready(state)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
    before = _status_gib("VmRSS")
    if contender == "training alone":
        step = jax.jit(train.train_step(loss_fn), donate_argnums=0)
        for i in range(steps):
            state, _ = step(
                state, jax.tree.map(lambda a, i=i: a[i * batch : (i + 1) * batch], data)
            )
        jax.block_until_ready(state)
    else:
        policy = contender.rsplit("=", 1)[1]
        state, _ = train.fit(state, loss_fn, data, epochs=1, batch_size=batch, steps_per_call=1,
                             nan_policy=policy, progress=False, shuffle=False)  # fmt: skip
        jax.block_until_ready(state)
    increase = _status_gib("VmHWM") - before
    return {
        "params": sum(p.size for p in jax.tree.leaves(state.params)),
        "state_gib": state_gib / 2**30,
        "peak_increase_gib": increase,
        "peak_increase_states": increase / (state_gib / 2**30),
    }


def run(width: int, depth: int, out: Path | None) -> dict[str, Any]:
    """Every contender in its own child process; prints and returns the table."""
    results = {}
    for contender in CONTENDERS:
        child = subprocess.run(
            [sys.executable, "-m", "experiments.fit_memory", "--child", contender,
             "--width", str(width), "--depth", str(depth)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        results[contender] = json.loads(child.stdout.strip().splitlines()[-1])
    first = results[CONTENDERS[0]]
    print(f"MLP 784 -> {width} x {depth} -> 10: {first['params'] / 1e6:.1f}M parameters, "
          f"train state (params + Adam) {first['state_gib']:.2f} GiB")  # fmt: skip
    print(f"{'':24s} peak over the state's resident memory")
    for contender, r in results.items():
        print(f"{contender:24s} {r['peak_increase_gib']:.2f} GiB = "
              f"{r['peak_increase_states']:.2f} states")  # fmt: skip
    path = _common.output_dir(out, "fit_memory") / "fit_memory.json"
    path.write_text(json.dumps(results, indent=2))
    return results


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = _common.parser(__doc__, fast="a 0.2M-parameter model (for CI)", no_torch=False)
    p.add_argument("--width", type=int, default=None, help="hidden width (default 4096)")
    p.add_argument("--depth", type=int, default=4, help="hidden layers (default 4)")
    p.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for flag, value in (("--width", args.width), ("--depth", args.depth)):
        if value is not None and value < 1:
            p.error(f"{flag} {value} must be at least 1")
    width = args.width or (128 if args.fast else 4096)
    if args.child:
        print(json.dumps(measure(args.child, width, args.depth, batch=32, steps=8)))
        return None
    return run(width, args.depth, args.out)


if __name__ == "__main__":
    main()
