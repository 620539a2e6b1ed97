"""Blocks, parameters, initialisation, tying and custom layers (seed 003) in both styles.

The seed's d2l chapter, section by section: a custom ``MLP`` block; parameter access by
torch's names (``named_parameters``, ``state_dict()['2.bias']``); ``net.apply(init_fn)``
with normal, constant, Xavier/42 and the custom "U(−10, 10), zero below 5" initialisers;
a shared ``Linear(8, 8)`` at positions 2 and 4; ``CenteredLayer`` and ``MyLinear``.

jaxnet side: a block is a :class:`jaxnet.nn.Module` written as torch's is, a constructor
that assigns its sub-layers and parameters and a ``forward(scope, x)``; ``init``, the
names and their order come from that record. Parameters are a pytree whose dotted names
are torch's; ``net.apply(init_fn)`` is
``jaxnet.nn.init.reinit``; a tied layer's parameters are stored once and ``jax.grad``
adds the gradients of its uses. The torch side loads jaxnet's parameters through
``state_dict`` so both compute on the same numbers (random initialisers are compared
by their statistics: the two libraries draw different random numbers).

    python -m experiments.blocks_params
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from jaxnet import autograd, nn
from jaxnet.nn import functional as F
from jaxnet.nn import init


class MLPBlock(nn.Module):
    """Seed 003's ``MLP``: ``hidden`` Linear(20, 256) → ReLU → ``out`` Linear(256, 10)."""

    def __init__(self):
        self.hidden = nn.Linear(20, 256)
        self.out = nn.Linear(256, 10)

    def forward(self, scope, x):
        return self.out(scope, F.relu(self.hidden(scope, x)))


class MyLinear(nn.Module):
    """Seed 003's ``MyLinear``: weight ``randn(in_units, units)``, ``relu(X W + b)``.

    The original reads ``self.weight.data``: detached, so its parameters get no
    gradient. ``detach=True`` reproduces that with ``stop_gradient``; ``detach=False``
    is the layer that learns.
    """

    def __init__(self, in_units: int, units: int, detach: bool = True):
        self.detach = detach
        self.weight = nn.Parameter((in_units, units), init.normal)  # torch.randn
        self.bias = nn.Parameter((units,), init.normal)

    def forward(self, scope, x):
        w, b = scope.weight, scope.bias
        if self.detach:  # the original's `.data`
            w, b = autograd.detach(w), autograd.detach(b)
        y = x @ w  # (B, in) @ (in, units) -> (B, units)
        return F.relu(y + jnp.expand_dims(b, range(y.ndim - 1)))


def centered_layer() -> nn.Lambda:
    """Seed 003's ``CenteredLayer``: ``X - X.mean()``, no parameters."""
    return nn.Lambda(lambda x: x - x.mean(), name="CenteredLayer")


def mlp_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))


def with_centered_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 128), centered_layer())


def tied_net() -> nn.Sequential:
    shared = nn.Linear(8, 8)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(),
                         nn.Linear(8, 1))  # fmt: skip


# The seed's init functions in jaxnet's form: (key, layer, its params) -> new params.
def init_normal(key, layer, p):
    w, b = p["weight"], p["bias"]
    return {"weight": init.normal(key, w.shape, w.dtype, 0.0, 0.01),
            "bias": init.zeros(None, b.shape, b.dtype)}  # fmt: skip


def init_constant(key, layer, p):
    w, b = p["weight"], p["bias"]
    return {"weight": init.ones(None, w.shape, w.dtype), "bias": init.zeros(None, b.shape, b.dtype)}


def init_xavier(key, layer, p):
    return {**p, "weight": init.xavier_uniform(key, p["weight"].shape, p["weight"].dtype)}


def init_42(key, layer, p):
    return {**p, "weight": init.constant(None, p["weight"].shape, p["weight"].dtype, val=42)}


def my_init(key, layer, p):
    print("  Init", *next((name, tuple(v.shape)) for name, v in layer.named_parameters(p)))
    w = init.uniform(key, p["weight"].shape, p["weight"].dtype, -10.0, 10.0)
    return {**p, "weight": w * (jnp.abs(w) >= 5)}


def _shapes(named) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(value.shape)) for name, value in named]


def init_figures(name: str, weight0, bias0, weight2) -> dict[str, Any]:
    """The statistics that show initialiser ``name`` did its job (net[0] and net[2], numpy)."""
    if name == "normal":
        return {"std": float(weight0.std()), "bias_all_zero": bool(np.all(bias0 == 0))}
    if name == "constant":
        return {"all_one": bool(np.all(weight0 == 1)), "bias_all_zero": bool(np.all(bias0 == 0))}
    if name == "xavier_42":
        return {"max_abs": float(np.abs(weight0).max()), "std": float(weight0.std()),
                "all_42": bool(np.all(weight2 == 42))}  # fmt: skip
    nonzero = np.abs(weight0[weight0 != 0])
    return {"zero_fraction": float(np.mean(weight0 == 0)),
            "min_nonzero_abs": float(nonzero.min()) if nonzero.size else 0.0}  # fmt: skip


def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "X": rng.uniform(size=(2, 20)).astype(np.float32),
        "X_tied": rng.uniform(size=(2, 4)).astype(np.float32),
        "X_centered": rng.uniform(size=(4, 8)).astype(np.float32),
        "X_mylinear": rng.uniform(size=(2, 5)).astype(np.float32),
        "X_seq": rng.uniform(size=(2, 64)).astype(np.float32),
    }


# ------------------------------------------------------------------ jaxnet


@jax.jit
def jaxnet_arrays(key: jax.Array, data: dict[str, jax.Array]) -> dict[str, Any]:
    """Every array of the jaxnet half in one compiled call (eager JAX compiles op by op).

    Python code in here runs while tracing, once per compilation: ``my_init``'s print
    shows the shapes then.
    """
    keys = iter(jax.random.split(key, 10))
    block, net, tied, dense = MLPBlock(), mlp_net(), tied_net(), MyLinear(5, 3)
    out: dict[str, Any] = {"block": block.init(next(keys)), "net": net.init(next(keys))}
    out["block_output"] = block.apply(out["block"], data["X"])

    xavier_0 = nn.init.reinit(out["net"], net, init_xavier, next(keys), kind=nn.Linear, path="0")
    out["inits"] = {
        "normal": reinit_all(out["net"], net, init_normal, next(keys)),
        "constant": reinit_all(out["net"], net, init_constant, next(keys)),
        "xavier_42": nn.init.reinit(xavier_0, net, init_42, next(keys), kind=nn.Linear, path="2"),
        "my_init": reinit_all(out["net"], net, my_init, next(keys)),
    }

    out["tied"] = tied.init(next(keys))
    changed_weight = out["tied"]["2"]["weight"].at[0, 0].set(100.0)  # net[2].weight[0, 0] = 100
    out["tied_changed"] = {**out["tied"], "2": {**out["tied"]["2"], "weight": changed_weight}}
    out["tied_grad"] = jax.grad(lambda p: tied.apply(p, data["X_tied"]).sum())(out["tied"])
    untied = nn.Sequential(*tied.layers[:4], nn.Linear(8, 8), *tied.layers[5:])
    out["untied_grad"] = jax.grad(lambda p: untied.apply(p, data["X_tied"]).sum())(
        {**out["tied"], "4": out["tied"]["2"]}
    )

    centered = centered_layer()
    out["centered"] = centered.apply({}, jnp.arange(1.0, 6.0, dtype=jnp.float32))
    with_linear = with_centered_net()
    out["with_centered"] = with_linear.init(next(keys))
    out["centered_mean"] = with_linear.apply(out["with_centered"], data["X_centered"]).mean()

    out["mylinear"] = dense.init(next(keys))
    out["mylinear_output"] = dense.apply(out["mylinear"], data["X_mylinear"])
    out["mylinear_grads"] = jax.grad(lambda p, x: dense.apply(p, x).sum(), argnums=(0, 1))(
        out["mylinear"], data["X_mylinear"]
    )
    live = MyLinear(5, 3, detach=False)
    out["mylinear_live_grad"] = jax.grad(lambda p: live.apply(p, data["X_mylinear"]).sum())(
        out["mylinear"]
    )
    return out


def run_jaxnet(data: dict[str, np.ndarray], key: jax.Array) -> dict[str, Any]:
    print("jaxnet: reinit(params, net, my_init, key, kind=nn.Linear)")
    a = jax.tree.map(np.asarray, jaxnet_arrays(key, data))
    res: dict[str, Any] = {
        "params": {k: a[k] for k in ("block", "net", "tied", "with_centered", "mylinear")}
    }
    net = mlp_net()
    res["block_names"] = _shapes(MLPBlock().named_parameters(a["block"]))
    res["block_output"] = a["block_output"]
    res["net0_names"] = _shapes(net[0].named_parameters(a["net"]["0"]))
    res["net_names"] = _shapes(net.named_parameters(a["net"]))
    res["bias2"] = net.state_dict(a["net"])["2.bias"]
    res["init"] = {
        name: init_figures(name, p["0"]["weight"], p["0"]["bias"], p["2"]["weight"])
        for name, p in a["inits"].items()
    }

    res["tied_keys"] = list(a["tied"])
    tied = tied_net()
    sd = tied.state_dict(a["tied"])  # lists the tied '4.*' as torch does
    res["tied_equal_before"] = bool(np.array_equal(sd["2.weight"][0], sd["4.weight"][0]))
    sd = tied.state_dict(a["tied_changed"])
    res["tied_equal_after"] = bool(np.array_equal(sd["2.weight"][0], sd["4.weight"][0]))
    res["tied_alias_value"] = float(sd["4.weight"][0, 0])
    res["tied_grad"] = a["tied_grad"]["2"]["weight"]
    res["tied_grad_uses"] = [a["untied_grad"][i]["weight"] for i in ("2", "4")]
    res["tied_grad_vs_sum"] = _common.max_abs_diff(res["tied_grad"], sum(res["tied_grad_uses"]))
    res["tied_grad_uses_differ"] = not np.allclose(*res["tied_grad_uses"])

    res["centered"] = a["centered"]
    res["centered_mean"] = float(a["centered_mean"])
    res["mylinear_output"] = a["mylinear_output"]
    g_params, g_x = a["mylinear_grads"]
    res["mylinear_params_grad_zero"] = not any(np.any(g) for g in jax.tree.leaves(g_params))
    res["mylinear_input_grad_nonzero"] = bool(np.any(g_x))
    res["mylinear_live_grad_nonzero"] = bool(np.any(a["mylinear_live_grad"]["weight"]))
    seq = nn.Sequential(MyLinear(64, 8), MyLinear(8, 1))
    out = jax.eval_shape(lambda k: seq.apply(seq.init(k), data["X_seq"]), key)  # shapes only
    res["seq_output_shape"] = out.shape
    return res


def reinit_all(params, net, fn, key):
    """``net.apply(fn)`` on every Linear (torch's ``type(m) == nn.Linear``)."""
    return nn.init.reinit(params, net, fn, key, kind=nn.Linear)


# ------------------------------------------------------------------- torch


def run_torch(data: dict[str, np.ndarray], ours: dict[str, Any]) -> dict[str, Any]:
    """The seed's code; each module loads jaxnet's parameters through ``state_dict``."""
    import torch
    from torch import nn as tnn
    from torch.nn import functional as TF

    def load(module, model, params):
        sd = model.state_dict(params)
        module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
        return module

    class MLP(tnn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = tnn.Linear(20, 256)
            self.out = tnn.Linear(256, 10)

        def forward(self, X):
            return self.out(TF.relu(self.hidden(X)))

    class CenteredLayer(tnn.Module):
        def forward(self, X):
            return X - X.mean()

    class TorchMyLinear(tnn.Module):
        def __init__(self, in_units, units):
            super().__init__()
            self.weight = tnn.Parameter(torch.randn(in_units, units))
            self.bias = tnn.Parameter(torch.randn(units))

        def forward(self, X):
            linear = torch.matmul(X, self.weight.data) + self.bias.data
            return TF.relu(linear)

    torch.manual_seed(0)
    res: dict[str, Any] = {}
    params = ours["params"]
    block = load(MLP(), MLPBlock(), params["block"])
    res["block_names"] = _shapes(block.named_parameters())
    with torch.no_grad():
        res["block_output"] = block(torch.from_numpy(data["X"])).numpy()

    net = tnn.Sequential(tnn.Linear(20, 256), tnn.ReLU(), tnn.Linear(256, 10))
    net = load(net, mlp_net(), params["net"])
    res["net0_names"] = _shapes(net[0].named_parameters())
    res["net_names"] = _shapes(net.named_parameters())
    res["bias2"] = net.state_dict()["2.bias"].numpy().copy()  # the inits below overwrite it

    def t_init_normal(m):
        if type(m) is tnn.Linear:
            tnn.init.normal_(m.weight, mean=0, std=0.01)
            tnn.init.zeros_(m.bias)

    def t_init_constant(m):
        if type(m) is tnn.Linear:
            tnn.init.constant_(m.weight, 1)
            tnn.init.zeros_(m.bias)

    def t_init_xavier(m):
        if type(m) is tnn.Linear:
            tnn.init.xavier_uniform_(m.weight)

    def t_init_42(m):
        if type(m) is tnn.Linear:
            tnn.init.constant_(m.weight, 42)

    def t_my_init(m):
        if type(m) is tnn.Linear:
            print("  Init", *next((name, param.shape) for name, param in m.named_parameters()))
            tnn.init.uniform_(m.weight, -10, 10)
            m.weight.data *= m.weight.data.abs() >= 5

    def figures(name):
        arrays = (net[0].weight, net[0].bias, net[2].weight)
        return init_figures(name, *(a.detach().numpy() for a in arrays))

    print("PyTorch: net.apply(my_init)")
    res["init"] = {}
    for name, fn in (("normal", t_init_normal), ("constant", t_init_constant)):
        net.apply(fn)
        res["init"][name] = figures(name)
    net[0].apply(t_init_xavier)
    net[2].apply(t_init_42)
    res["init"]["xavier_42"] = figures("xavier_42")
    net.apply(t_my_init)
    res["init"]["my_init"] = figures("my_init")

    shared = tnn.Linear(8, 8)
    tied = tnn.Sequential(tnn.Linear(4, 8), tnn.ReLU(), shared, tnn.ReLU(), shared, tnn.ReLU(),
                          tnn.Linear(8, 1))  # fmt: skip
    load(tied, tied_net(), params["tied"])
    res["tied_keys"] = sorted({name.split(".")[0] for name, _ in tied.named_parameters()}, key=int)
    x_tied = torch.from_numpy(data["X_tied"])
    tied(x_tied).sum().backward()
    res["tied_grad"] = tied[2].weight.grad.numpy().copy()
    untied = tnn.Sequential(tnn.Linear(4, 8), tnn.ReLU(), tnn.Linear(8, 8), tnn.ReLU(),
                            tnn.Linear(8, 8), tnn.ReLU(), tnn.Linear(8, 1))  # fmt: skip
    untied.load_state_dict(tied.state_dict())  # torch's state_dict repeats the tied '4.*'
    untied(x_tied).sum().backward()
    res["tied_grad_vs_sum"] = float(
        (tied[2].weight.grad - (untied[2].weight.grad + untied[4].weight.grad)).abs().max()
    )
    res["tied_equal_before"] = bool(torch.all(tied[2].weight.data[0] == tied[4].weight.data[0]))
    tied[2].weight.data[0, 0] = 100
    res["tied_equal_after"] = bool(torch.all(tied[2].weight.data[0] == tied[4].weight.data[0]))
    res["tied_alias_value"] = tied[4].weight.data[0, 0].item()

    res["centered"] = CenteredLayer()(torch.arange(1.0, 6.0)).numpy()
    with_linear = tnn.Sequential(tnn.Linear(8, 128), CenteredLayer())
    with_linear = load(with_linear, with_centered_net(), params["with_centered"])
    res["centered_mean"] = with_linear(torch.from_numpy(data["X_centered"])).mean().item()

    dense = load(TorchMyLinear(5, 3), MyLinear(5, 3), params["mylinear"])
    x = torch.from_numpy(data["X_mylinear"]).requires_grad_()
    out = dense(x)
    res["mylinear_output"] = out.detach().numpy()
    out.sum().backward()
    res["mylinear_params_grad_none"] = dense.weight.grad is None and dense.bias.grad is None
    res["mylinear_input_grad_nonzero"] = bool(torch.any(x.grad != 0))
    seq = tnn.Sequential(TorchMyLinear(64, 8), TorchMyLinear(8, 1))
    res["seq_output_shape"] = tuple(seq(torch.from_numpy(data["X_seq"])).shape)
    return res


# -------------------------------------------------------------------- plots


def plot(path: Path, ours: dict, theirs: dict) -> None:
    """The tied weight's gradient is the sum of its two uses' (and PyTorch's, where run)."""
    _common.plot_backend()
    import matplotlib.pyplot as plt

    panels = [
        ("use at position 2", ours["tied_grad_uses"][0]),
        ("use at position 4", ours["tied_grad_uses"][1]),
        ("jaxnet: tied grad = sum", ours["tied_grad"]),
    ]
    if theirs:
        panels.append(("PyTorch: net[2].weight.grad", theirs["tied_grad"]))
    limit = max(float(np.abs(grad).max()) for _, grad in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, (title, grad) in zip(axes[0], panels, strict=True):
        image = ax.imshow(grad, cmap="coolwarm", vmin=-limit, vmax=limit)
        ax.set(title=title, xlabel="in", ylabel="out")
        fig.colorbar(image, ax=ax, shrink=0.8)
    _common.save_figure(fig, path)


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, np.ndarray):
        return np.array2string(value.ravel()[:5], precision=4)
    return str(value)


def _row(label: str, theirs: dict, ours: dict, key: str) -> str:
    """``label  PyTorch … | jaxnet …``, on three lines when long."""
    original, mine = (_fmt(theirs[key]) if key in theirs else "-"), _fmt(ours[key])
    if len(original) + len(mine) > 64:
        return f"  {label}\n      PyTorch {original}\n      jaxnet  {mine}"
    return f"  {label:31s} PyTorch {original} | jaxnet {mine}"


def run(*, out: Path | None = None, with_torch: bool = True, seed: int = 0) -> dict[str, Any]:
    """All sections in both styles; returns jaxnet's figures and, with torch, ``torch_*``."""
    out = _common.output_dir(out, "blocks_params")
    data = inputs()
    ours = run_jaxnet(data, jax.random.key(seed))
    theirs = run_torch(data, ours) if with_torch else {}

    print("\ncustom block MLP(hidden, out)")
    print(_row("named_parameters()", theirs, ours, "block_names"))
    print("net = Sequential(Linear(20, 256), ReLU(), Linear(256, 10))")
    print(_row("net[0].named_parameters()", theirs, ours, "net0_names"))
    print(_row("net.named_parameters()", theirs, ours, "net_names"))
    print(_row("state_dict()['2.bias'][:5]", theirs, ours, "bias2"))

    bound = math.sqrt(6 / (20 + 256))
    print(
        f"\ninitialisers, net[0].weight (Xavier: bound {bound:.4f}, std {bound / math.sqrt(3):.4f})"
    )
    for name in ("normal", "constant", "xavier_42", "my_init"):
        print(_row(name, theirs.get("init", {}), ours["init"], name))

    print("\nshared Linear(8, 8) at positions 2 and 4")
    print(_row("parameter slots", theirs, ours, "tied_keys"))
    print(_row("net[2].weight[0] == net[4]'s", theirs, ours, "tied_equal_before"))
    print(_row("same after net[2] [0, 0] = 100", theirs, ours, "tied_equal_after"))
    print(_row("net[4].weight[0, 0]", theirs, ours, "tied_alias_value"))
    print(_row("max |grad − sum of both uses|", theirs, ours, "tied_grad_vs_sum"))

    print("\ncustom layers")
    print(_row("CenteredLayer([1, ..., 5])", theirs, ours, "centered"))
    print(_row("Linear → CenteredLayer mean", theirs, ours, "centered_mean"))
    print(_row("MyLinear output.ravel()[:5]", theirs, ours, "mylinear_output"))
    print(f"  MyLinear reads .data: PyTorch weight.grad is None: "
          f"{theirs.get('mylinear_params_grad_none', '-')} | jaxnet grads all zero: "
          f"{ours['mylinear_params_grad_zero']}")  # fmt: skip
    print(_row("the input still gets a grad", theirs, ours, "mylinear_input_grad_nonzero"))
    print(f"  jaxnet MyLinear(detach=False) learns (nonzero weight grad): "
          f"{ours['mylinear_live_grad_nonzero']}")  # fmt: skip
    print(_row("MyLinear(64, 8) → (8, 1) shape", theirs, ours, "seq_output_shape"))

    report = {k: v for k, v in ours.items() if k not in ("params", "tied_grad_uses")}
    report.update({f"torch_{k}": v for k, v in theirs.items()})
    if theirs:
        for key in ("block_output", "bias2", "tied_grad", "mylinear_output"):
            report[f"torch_vs_jaxnet_{key}_diff"] = _common.max_abs_diff(ours[key], theirs[key])
        print("\nsame parameters, max |PyTorch − jaxnet|: " + ", ".join(
            f"{k} {report[f'torch_vs_jaxnet_{k}_diff']:.1e}"
            for k in ("block_output", "bias2", "tied_grad", "mylinear_output")))  # fmt: skip
    report["plot"] = str(out / "tied_gradient.png")
    plot(Path(report["plot"]), ours, theirs)
    print(f"plot {report['plot']}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = _common.parser(__doc__, fast="accepted for CI; the seed's sizes are small")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    return run(out=args.out, with_torch=not args.no_torch, seed=args.seed)


if __name__ == "__main__":
    main()
