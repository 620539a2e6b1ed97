"""nn.Linear and a two-layer sigmoid network (seed 004): layout, W @ x, forward, backward, SGD.

``nn.Linear(2, 3, bias=False)`` holds a weight of shape ``[3, 2]`` (``[out, in]``) and
computes ``W @ x``, checked against NumPy. The seed's ``network`` is input → hidden →
output with two bias-free Linear layers and a sigmoid after each, trained with MSE.
Both styles start from the same weights (torch loads jaxnet's ``state_dict``, names
``w1.weight`` and ``w2.weight`` as in the seed's class), compute forward, loss and
gradients, then take the same SGD steps: ``loss.backward(); optimizer.step()`` in
PyTorch, one jitted ``jaxnet.train.train_step`` in jaxnet.

    python -m experiments.linear_layer
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from jaxnet import nn, optim, train
from jaxnet.nn import functional as F

INPUT_SIZE, HIDDEN_SIZE, OUTPUT_SIZE, BATCH = 3, 4, 2, 6
LR = 2.0


class Network(nn.Module):
    """Seed 004's ``network``: ``sigmoid(w2(sigmoid(w1(x))))``, both Linear without bias."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        self.w1 = nn.Linear(input_size, hidden_size, bias=False)
        self.w2 = nn.Linear(hidden_size, output_size, bias=False)

    def forward(self, scope, x):
        i2h = F.sigmoid(self.w1(scope, x))  # (B, hidden)
        return F.sigmoid(self.w2(scope, i2h))  # (B, output)


def inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, INPUT_SIZE)).astype(np.float32)
    y = rng.uniform(size=(BATCH, OUTPUT_SIZE)).astype(np.float32)
    return x, y


# ------------------------------------------------------------------ jaxnet


DEMO = nn.Linear(2, 3, bias=False)
NET = Network(INPUT_SIZE, HIDDEN_SIZE, OUTPUT_SIZE)


def loss_fn(params, batch):
    x, y = batch
    return F.mse_loss(NET.apply(params, x), y)


@jax.jit
def first_pass(key: jax.Array, x: jax.Array, y: jax.Array) -> dict[str, Any]:
    """Initial weights of both, ``DEMO`` on ``[1, 1]``, the network's forward, loss, backward."""
    k_demo, k_net = jax.random.split(key)
    demo_params, params = DEMO.init(k_demo), NET.init(k_net)
    loss, grads = jax.value_and_grad(loss_fn)(params, (x, y))
    return {
        "demo_weight": demo_params["weight"],  # (3, 2): [out, in]
        "demo_output": DEMO.apply(demo_params, jnp.ones(2, jnp.float32)),
        "params": params,
        "output": NET.apply(params, x),
        "loss": loss,
        "grads": grads,
    }


def run_jaxnet(key: jax.Array, steps: int) -> dict[str, Any]:
    x, y = inputs()
    first = jax.tree.map(np.asarray, first_pass(key, x, y))
    res: dict[str, Any] = {
        "demo_weight": first["demo_weight"],
        "demo_output": first["demo_output"],
        "demo_numpy_diff": _common.max_abs_diff(
            first["demo_output"], np.dot(first["demo_weight"], np.ones(2, np.float32))
        ),
        "initial_params": NET.state_dict(first["params"]),
        "output": first["output"],
        "loss": float(first["loss"]),
        "grads": NET.state_dict(first["grads"]),
    }
    optimizer = optim.SGD(LR)
    step = jax.jit(train.train_step(loss_fn), donate_argnums=0)
    state = train.TrainState.create(first["params"], optimizer, key)
    losses = []
    for _ in range(steps):
        state, metrics = step(state, (x, y))
        losses.append(float(metrics["loss"]))
    res["losses"] = losses
    res["final_params"] = NET.state_dict(state.params)
    return res


# ------------------------------------------------------------------- torch


def run_torch(ours: dict[str, Any], steps: int) -> dict[str, Any]:
    import torch
    from torch import nn as tnn

    class network(tnn.Module):  # seed 004, verbatim
        def __init__(self, input_size, hidden_size, output_size):
            super().__init__()
            self.input_size = input_size
            self.hidden_size = hidden_size
            self.output_size = output_size
            self.w1 = tnn.Linear(input_size, hidden_size, bias=False)
            self.w2 = tnn.Linear(hidden_size, output_size, bias=False)
            self.sigmoid = tnn.Sigmoid()

        def forward(self, x):
            i2h = self.w1(x)
            i2h = self.sigmoid(i2h)
            h2o = self.w2(i2h)
            h2o = self.sigmoid(h2o)
            return h2o

    torch.manual_seed(0)
    demo = tnn.Linear(2, 3, bias=False)
    data = torch.tensor([1.0, 1.0])
    res: dict[str, Any] = {"demo_weight": demo.weight.detach().numpy().copy()}
    res["demo_output"] = demo(data).detach().numpy()
    res["demo_numpy_diff"] = _common.max_abs_diff(
        res["demo_output"], np.dot(res["demo_weight"], data.numpy())
    )
    with torch.no_grad():  # the same weight as jaxnet's demo: the same output
        demo.weight.copy_(torch.tensor(ours["demo_weight"]))
        res["demo_output_same_weight"] = demo(data).numpy()

    net = network(INPUT_SIZE, HIDDEN_SIZE, OUTPUT_SIZE)
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours["initial_params"].items()})
    x, y = (torch.from_numpy(a) for a in inputs())
    criterion = tnn.MSELoss()
    out = net(x)
    loss = criterion(out, y)
    loss.backward()
    res["output"], res["loss"] = out.detach().numpy(), loss.item()
    res["grads"] = {name: p.grad.numpy().copy() for name, p in net.named_parameters()}

    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    losses = []
    for _ in range(steps):
        loss = criterion(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    res["losses"] = losses
    res["final_params"] = {k: v.numpy() for k, v in net.state_dict().items()}
    return res


# -------------------------------------------------------------------- plots


def plot(path: Path, ours: dict, theirs: dict) -> None:
    _common.plot_backend()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ours["losses"], "o-", ms=3, label="jaxnet")
    if theirs:
        ax.plot(theirs["losses"], "x--", label="PyTorch")
    ax.set(xlabel="SGD step", ylabel="MSE", title=f"two-layer sigmoid network, SGD lr = {LR}")
    ax.grid(alpha=0.3)
    ax.legend()
    _common.save_figure(fig, path)


def run(
    *, fast: bool = False, out: Path | None = None, with_torch: bool = True, seed: int = 0
) -> dict[str, Any]:
    """Both halves; returns jaxnet's figures and, with torch, ``torch_*``."""
    out = _common.output_dir(out, "linear_layer")
    steps = 5 if fast else 50
    ours = run_jaxnet(jax.random.key(seed), steps)
    theirs = run_torch(ours, steps) if with_torch else {}

    print("nn.Linear(2, 3, bias=False) applied to [1, 1]")
    for name, res in (("PyTorch", theirs), ("jaxnet", ours)):
        if res:
            print(f"  {name:8s} weight shape {list(res['demo_weight'].shape)}, output "
                  f"{np.array2string(res['demo_output'], precision=4)}, "
                  f"max |output − np.dot(W, x)| {res['demo_numpy_diff']:.1e}")  # fmt: skip

    report: dict[str, Any] = {
        "weight_shape": list(ours["demo_weight"].shape),
        "numpy_diff": ours["demo_numpy_diff"],
        "loss": ours["loss"],
        "losses": ours["losses"],
    }
    print(f"\nnetwork({INPUT_SIZE}, {HIDDEN_SIZE}, {OUTPUT_SIZE}), batch {BATCH}, MSE; "
          f"same initial weights {list(ours['initial_params'])}")  # fmt: skip
    if theirs:
        report.update(
            torch_weight_shape=list(theirs["demo_weight"].shape),
            torch_numpy_diff=theirs["demo_numpy_diff"],
            torch_loss=theirs["loss"],
            torch_losses=theirs["losses"],
            torch_vs_jaxnet_demo_diff=_common.max_abs_diff(
                ours["demo_output"], theirs["demo_output_same_weight"]
            ),
            torch_vs_jaxnet_output_diff=_common.max_abs_diff(ours["output"], theirs["output"]),
            torch_vs_jaxnet_grad_diff=max(
                _common.max_abs_diff(ours["grads"][k], theirs["grads"][k]) for k in theirs["grads"]
            ),
            torch_vs_jaxnet_param_diff=max(
                _common.max_abs_diff(ours["final_params"][k], theirs["final_params"][k])
                for k in theirs["final_params"]
            ),
        )
        print(f"  Linear(2, 3) on the same weight: max |PyTorch − jaxnet| "
              f"{report['torch_vs_jaxnet_demo_diff']:.1e}")  # fmt: skip
        print(f"  forward: max |Δ output| {report['torch_vs_jaxnet_output_diff']:.1e}; loss "
              f"PyTorch {theirs['loss']:.7f} | jaxnet {ours['loss']:.7f}; backward: max |Δ grad| "
              f"{report['torch_vs_jaxnet_grad_diff']:.1e}")  # fmt: skip
    else:
        print(f"  jaxnet loss {ours['loss']:.7f}")
    print(f"  {'SGD step':>10s}{'PyTorch loss':>16s}{'jaxnet loss':>16s}")
    shown = sorted({0, 1, 2, steps // 2, steps - 1})
    for i in shown:
        original = f"{theirs['losses'][i]:16.7f}" if theirs else f"{'-':>16s}"
        print(f"  {i + 1:>10d}{original}{ours['losses'][i]:16.7f}")
    if theirs:
        print(f"  after {steps} steps, max |PyTorch − jaxnet| parameter difference "
              f"{report['torch_vs_jaxnet_param_diff']:.1e}")  # fmt: skip
    report["plot"] = str(out / "two_layer_sgd.png")
    plot(Path(report["plot"]), ours, theirs)
    print(f"plot {report['plot']}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = _common.parser(__doc__, fast="5 SGD steps instead of 50 (for CI)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    return run(fast=args.fast, out=args.out, with_torch=not args.no_torch, seed=args.seed)


if __name__ == "__main__":
    main()
