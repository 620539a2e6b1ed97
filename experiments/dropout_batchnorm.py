"""Dropout and batch normalisation (d2l's lessons) on MNIST, each beside its PyTorch twin.

The seed MLP 784-256-64-10 trained three times with ``jaxnet.train.fit(has_state=True)``,
each run beside a plain PyTorch loop from the same initial weights and on the same
batches (``jaxnet.train.epoch_batch_order``): cross-entropy, SGD lr 0.1 momentum 0.9,
batch 256.

* **Dropout** (``nn.Dropout`` after each hidden ReLU, p = 0.2 and 0.5 as in d2l): each
  framework draws its own masks (jaxnet from the step's key, torch from its global
  generator), so the two runs differ by their masks alone; the eval pass (dropout is
  the identity there) is checked by running jaxnet's trained weights in the torch twin.
* **Dropout, masks injected**: the masks come from the step's key
  (:func:`dropout_masks`) and both sides apply them (an experiment-local
  :class:`MaskedDropout` on the jaxnet side, ``F.dropout(mask=)``; a module multiplying
  by them on the torch side): then every loss, weight and accuracy agrees.
* **BatchNorm** (``nn.BatchNorm1d`` after each hidden Linear): losses, weights, the
  running statistics (``running_mean``, ``running_var``, ``num_batches_tracked``) and the
  eval accuracy agree with torch's.

The runs are in float64 unless ``--float32``: in float32 the twins agree to rounding
(1e-7) for the first 150-200 steps, until a ReLU input that lies within rounding of zero
comes out on different sides in the two frameworks and training amplifies the
difference; in float64 they agree for the whole run (:data:`TOLERANCES`). Prints the
per-epoch test accuracies of the six runs and the largest differences, checked against
those tolerances; ``--out`` gets the loss curves and the running statistics plotted
against torch's.

    python -m experiments.dropout_batchnorm            # real MNIST, 5 epochs
    python -m experiments.dropout_batchnorm --fast     # 2048 examples, 1 epoch (CI)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common, mnist_mlp
from jaxnet import datasets, nn, optim, train
from jaxnet.nn import functional as F

LR, MOMENTUM, BATCH_SIZE, EPOCHS = 0.1, 0.9, 256, 5
DROPOUT = (0.2, 0.5)  # after the first and the second hidden ReLU
HIDDEN = (256, 64)
FAST_TRAIN, FAST_TEST = 2048, 512
KINDS = ("dropout", "injected", "batchnorm")
TITLES = {"dropout": "Dropout", "injected": "Dropout, masks injected", "batchnorm": "BatchNorm"}


class Tolerances(NamedTuple):
    """How close a run must stay to its torch twin: per-step losses (relative), trained
    weights, BatchNorm's running_mean and running_var, eval logits of the same weights
    (absolute), and the test accuracy of every epoch (a fraction)."""

    loss_rtol: float
    param_atol: float
    stats_atol: float
    eval_atol: float
    accuracy_atol: float


TOLERANCES = {
    # The two runs stay together for the whole training (5 epochs, 1170 steps).
    "float64": Tolerances(1e-9, 1e-9, 1e-9, 1e-9, 0.0),
    # Rounding differences (about 1e-7) stay put until a ReLU input close enough to zero
    # rounds to the other side in one framework; from then on training amplifies the
    # difference (measured on MNIST: from step 150-210, with loss differences reaching
    # 1e-2 by step 240 and weights 0.2 apart after 5 epochs). These hold for runs shorter
    # than that, such as --fast.
    "float32": Tolerances(1e-5, 1e-5, 1e-5, 1e-4, 0.002),
}


# ------------------------------------------------------------------- models


class MaskedDropout(nn.Module):
    """Dropout that applies the keep-mask it is given (``F.dropout(mask=)``): the same
    numbers as ``nn.Dropout(p)``, with the mask chosen by the caller."""

    def __init__(self, p: float):
        self.p = p

    def forward(self, scope, x, mask=None):
        return F.dropout(x, self.p, training=scope.training, mask=mask)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MaskedSequential(nn.Sequential):
    """A Sequential whose :class:`MaskedDropout` layers take, in order, the masks given to
    ``apply(params, x, masks)`` (none in eval mode)."""

    def forward(self, scope, x, masks=None):
        masks = iter(masks or ())
        for layer in self.layers:
            if isinstance(layer, MaskedDropout):
                x = layer(scope, x, next(masks, None))
            else:
                x = layer(scope, x)
        return x


def make_model(kind: str, dtype=jnp.float32) -> nn.Sequential:
    """The seed MLP with Dropout after each hidden ReLU, or BatchNorm1d after each hidden
    Linear; the parameter names are those of :func:`torch_model`."""
    (n_in, h1, h2, n_out), (p1, p2) = _common.SEED_MLP_SIZES, DROPOUT
    lin = lambda n, m: nn.Linear(n, m, dtype=dtype)  # noqa: E731
    if kind == "batchnorm":
        bn = lambda n: nn.BatchNorm1d(n, dtype=dtype)  # noqa: E731
        return nn.Sequential(lin(n_in, h1), bn(h1), nn.ReLU(), lin(h1, h2), bn(h2), nn.ReLU(),
                             lin(h2, n_out))  # fmt: skip
    if kind == "injected":
        return MaskedSequential(lin(n_in, h1), nn.ReLU(), MaskedDropout(p1), lin(h1, h2),
                                nn.ReLU(), MaskedDropout(p2), lin(h2, n_out))  # fmt: skip
    return nn.Sequential(lin(n_in, h1), nn.ReLU(), nn.Dropout(p1), lin(h1, h2), nn.ReLU(),
                         nn.Dropout(p2), lin(h2, n_out))  # fmt: skip


def dropout_masks(key: jax.Array, batch_size: int) -> tuple[jax.Array, ...]:
    """The keep-masks of the injected run for one step, from that step's key: one
    ``(batch_size, width)`` bool mask per Dropout layer, each kept with probability 1 - p."""
    return tuple(
        jax.random.bernoulli(jax.random.fold_in(key, i), 1 - p, (batch_size, width))
        for i, (p, width) in enumerate(zip(DROPOUT, HIDDEN, strict=True))
    )


@jax.jit
def step_masks(key: jax.Array, step: jax.Array) -> tuple[jax.Array, ...]:
    """The masks ``fit`` gives step ``step`` of a run whose ``TrainState.key`` is ``key``
    (through :func:`jaxnet.train.step_key`): what the torch twin multiplies by."""
    return dropout_masks(train.step_key(key, step), BATCH_SIZE)


def torch_model(kind: str):
    """The PyTorch twin of :func:`make_model` (``MaskedDropout``: a module multiplying by
    the masks set on it before each step, scaled by 1 / (1 - p))."""
    import torch

    class MaskedDropoutTorch(torch.nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p, self.mask = p, None

        def forward(self, x):  # torch's dropout arithmetic: x * (mask / (1 - p))
            return x * (self.mask / (1 - self.p)) if self.training else x

    (n_in, h1, h2, n_out), (p1, p2) = _common.SEED_MLP_SIZES, DROPOUT
    tnn = torch.nn
    if kind == "batchnorm":
        middle = [tnn.BatchNorm1d(h1), tnn.ReLU()], [tnn.BatchNorm1d(h2), tnn.ReLU()]
    else:
        drop = MaskedDropoutTorch if kind == "injected" else tnn.Dropout
        middle = [tnn.ReLU(), drop(p1)], [tnn.ReLU(), drop(p2)]
    return tnn.Sequential(tnn.Linear(n_in, h1), *middle[0], tnn.Linear(h1, h2), *middle[1],
                          tnn.Linear(h2, n_out))  # fmt: skip


# ------------------------------------------------------------------- jaxnet


def run_jaxnet(kind, params, buffers, key, train_xy, test_xy, epochs, progress=True):
    """``fit`` with ``has_state=True``: the loss threads the buffers and the step's key."""
    net = make_model(kind, train_xy[0].dtype)

    def loss_fn(params, buffers, batch, key):
        x, y = batch  # (B, 784), (B,)
        masks = (dropout_masks(key, x.shape[0]),) if kind == "injected" else ()
        logits, buffers = net.apply(params, x, *masks, buffers=buffers, key=key)
        return F.cross_entropy(logits, y), buffers

    def metric_fn(params, buffers, batch):
        x, y = batch
        logits, _ = net.apply(params, x, buffers=buffers, training=False)
        return {"accuracy": jnp.argmax(logits, axis=-1) == y}

    optimizer = optim.SGD(LR, momentum=MOMENTUM)
    state = train.TrainState.create(params, optimizer, key, buffers)
    state, history = train.fit(
        state, loss_fn, jax.device_put(train_xy), epochs=epochs,
        batch_size=BATCH_SIZE, metric_fn=metric_fn, eval_data=jax.device_put(test_xy),
        has_state=True, progress=progress,
    )  # fmt: skip
    return {
        "state_dict": net.state_dict(state.params, state.buffers),
        "step_loss": np.asarray(history["step_loss"]),
        "accuracy": [e["accuracy"] for e in history["eval"]],
    }


# ------------------------------------------------------------------- torch


def run_torch(kind, initial, key, train_xy, test_xy, epochs, seed, progress=True):
    """The plain torch loop on ``fit``'s batches; ``initial`` is jaxnet's state_dict."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(seed)  # the generator torch's own Dropout draws from
    model = torch_model(kind).to(torch.from_numpy(train_xy[0][:1]).dtype)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in initial.items()})
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = (torch.from_numpy(np.array(a)) for a in train_xy)
    y = y.long()
    test_x, test_y = (torch.from_numpy(np.array(a)) for a in test_xy)
    masked = [m for m in model if hasattr(m, "mask")]
    losses, accuracy, step = [], [], 0
    for epoch in range(epochs):
        model.train()
        order = train.epoch_batch_order(key, epoch, len(train_xy[0]), BATCH_SIZE)
        for idx in tqdm(order, desc=f"torch {kind} epoch {epoch + 1}", disable=not progress):
            if masked:
                for module, mask in zip(masked, step_masks(key, step), strict=True):
                    module.mask = torch.from_numpy(np.asarray(mask, train_xy[0].dtype))
            idx = torch.from_numpy(idx)
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            step += 1
        model.eval()
        with torch.no_grad():
            correct = (model(test_x).argmax(-1) == test_y).sum().item()
            accuracy.append(correct / len(test_y))  # as evaluate: a count over n
    return {
        "state_dict": {k: v.numpy().copy() for k, v in model.state_dict().items()},
        "step_loss": torch.stack(losses).numpy(),
        "accuracy": accuracy,
    }


def eval_logits_diff(state_dict: dict, test_x: np.ndarray) -> float:
    """Largest difference of the eval-mode logits of the same (jaxnet-trained) Dropout
    weights in jaxnet and in the torch twin: in eval mode both are the plain MLP."""
    import torch

    x = torch.from_numpy(np.array(test_x))
    twin = torch_model("dropout").to(x.dtype).eval()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
    with torch.no_grad():
        theirs = twin(x).numpy()
    net = make_model("dropout", test_x.dtype)
    ours = net.apply(net.load_state_dict(state_dict).params, test_x, training=False)
    return _common.max_abs_diff(ours, theirs)


# ------------------------------------------------------------------- checks


def compare(kind: str, ours: dict, theirs: dict) -> dict[str, Any]:
    """The largest differences between the two runs of one kind."""
    rel = np.abs(ours["step_loss"] - theirs["step_loss"]) / np.abs(theirs["step_loss"])
    sd, tsd = ours["state_dict"], theirs["state_dict"]
    params = [k for k in sd if k.endswith(("weight", "bias"))]
    diffs = {
        "accuracy_diff": max(
            abs(a - b) for a, b in zip(ours["accuracy"], theirs["accuracy"], strict=True)
        ),
        "loss_rel_diff": float(rel.max()),
        "param_diff": max(_common.max_abs_diff(sd[k], tsd[k]) for k in params),
    }
    if kind == "batchnorm":
        for stat in ("running_mean", "running_var"):
            keys = [k for k in sd if k.endswith(stat)]
            diffs[f"{stat}_diff"] = max(_common.max_abs_diff(sd[k], tsd[k]) for k in keys)
        counts = [k for k in sd if k.endswith("num_batches_tracked")]
        diffs["num_batches_tracked_equal"] = all(int(sd[k]) == int(tsd[k]) for k in counts)
    return diffs


def agreement(kind: str, diffs: dict, tol: Tolerances) -> bool:
    """Whether a run agrees with its twin within ``tol``. The free Dropout run has
    different masks, so only its eval pass is held to a tolerance."""
    if kind == "dropout":
        return diffs["eval_logits_diff"] <= tol.eval_atol
    ok = (
        diffs["loss_rel_diff"] <= tol.loss_rtol
        and diffs["param_diff"] <= tol.param_atol
        and diffs["accuracy_diff"] <= tol.accuracy_atol
    )
    if kind == "batchnorm":
        ok = ok and diffs["num_batches_tracked_equal"]
        ok = ok and max(diffs["running_mean_diff"], diffs["running_var_diff"]) <= tol.stats_atol
    return ok


# -------------------------------------------------------------------- plots


def plot_losses(path: Path, ours: dict, theirs: dict) -> None:
    _common.plot_backend()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(KINDS), figsize=(5 * len(KINDS), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], KINDS, strict=True):
        ax.plot(ours[kind]["step_loss"], lw=1, label="jaxnet")
        if kind in theirs:
            ax.plot(theirs[kind]["step_loss"], lw=1, ls="--", label="PyTorch")
        ax.set(title=TITLES[kind], xlabel="step", ylabel="training loss (cross-entropy)")
        ax.grid(alpha=0.3)
        ax.legend()
    _common.save_figure(fig, path)


def plot_running_stats(path: Path, ours: dict, theirs: dict) -> None:
    """jaxnet's running statistics against torch's, per BatchNorm layer (on y = x)."""
    _common.plot_backend()
    import matplotlib.pyplot as plt

    sd, tsd = ours["state_dict"], theirs["state_dict"]
    layers = [k.rpartition(".")[0] for k in sd if k.endswith("running_mean")]
    fig, axes = plt.subplots(2, len(layers), figsize=(5 * len(layers), 8), squeeze=False)
    for row, stat in enumerate(("running_mean", "running_var")):
        for ax, layer in zip(axes[row], layers, strict=True):
            a, b = sd[f"{layer}.{stat}"], tsd[f"{layer}.{stat}"]
            ax.plot(b, a, ".", ms=4)
            ax.axline((float(b.min()), float(b.min())), slope=1, color="grey", lw=0.8)
            title = f"BatchNorm1d '{layer}': max |diff| {_common.max_abs_diff(a, b):.1e}"
            ax.set(xlabel=f"PyTorch {stat}", ylabel=f"jaxnet {stat}", title=title)
            ax.grid(alpha=0.3)
    _common.save_figure(fig, path)


# -------------------------------------------------------------------- run


def run(
    data: datasets.MNIST,
    *,
    fast: bool = False,
    out: Path | None = None,
    with_torch: bool = True,
    epochs: int | None = None,
    seed: int = 0,
    precision: str = "float64",
    progress: bool = True,
) -> dict[str, Any]:
    """The three runs of jaxnet and, ``with_torch``, their twins, in ``precision``
    (``"float64"`` needs ``jax_enable_x64``); returns the figures."""
    if precision not in TOLERANCES:
        raise ValueError(f"dropout_batchnorm: precision must be one of {list(TOLERANCES)}")
    if precision == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "dropout_batchnorm: float64 needs jax.config.update('jax_enable_x64', True) "
            "before any JAX array is made"
        )
    out = _common.output_dir(out, "dropout_batchnorm")
    train_xy, test_xy = mnist_mlp.prepare(data, None)
    n_train, n_test = (FAST_TRAIN, FAST_TEST) if fast else (None, None)
    train_xy = (train_xy[0][:n_train].astype(precision), train_xy[1][:n_train])
    test_xy = (test_xy[0][:n_test].astype(precision), test_xy[1][:n_test])
    epochs = epochs or (1 if fast else EPOCHS)
    init_key, data_key = jax.random.split(jax.random.key(seed))
    ours, theirs, diffs = {}, {}, {}
    for kind in KINDS:
        net = make_model(kind, precision)
        params, buffers = net.init(init_key), net.init_buffers()
        initial = net.state_dict(params, buffers)
        ours[kind] = run_jaxnet(kind, params, buffers, data_key, train_xy, test_xy, epochs,
                                progress)  # fmt: skip
        if with_torch:
            theirs[kind] = run_torch(kind, initial, data_key, train_xy, test_xy, epochs, seed,
                                     progress)  # fmt: skip
            diffs[kind] = compare(kind, ours[kind], theirs[kind])
    report: dict[str, Any] = {
        "precision": precision,
        "tolerances": TOLERANCES[precision]._asdict(),
        "epochs": epochs,
        "train_examples": len(train_xy[0]),
        "test_examples": len(test_xy[0]),
        **{f"{kind}_accuracy": ours[kind]["accuracy"] for kind in KINDS},
    }
    if with_torch:
        diffs["dropout"]["eval_logits_diff"] = eval_logits_diff(
            ours["dropout"]["state_dict"], test_xy[0]
        )
        for kind in KINDS:
            report[f"torch_{kind}_accuracy"] = theirs[kind]["accuracy"]
            report[f"{kind}_diffs"] = diffs[kind]
            report[f"{kind}_agrees"] = agreement(kind, diffs[kind], TOLERANCES[precision])
    print_table(report, with_torch)

    report["plots"] = [str(out / "dropout_batchnorm_losses.png")]
    plot_losses(Path(report["plots"][0]), ours, theirs)
    if with_torch:
        report["plots"].append(str(out / "batchnorm_running_stats.png"))
        plot_running_stats(Path(report["plots"][1]), ours["batchnorm"], theirs["batchnorm"])
    print("plots " + ", ".join(report["plots"]))
    return report


def print_table(report: dict, with_torch: bool) -> None:
    print(f"\n{report['train_examples']} training examples, {report['test_examples']} test, "
          f"{report['precision']}; SGD lr {LR} momentum {MOMENTUM}, batch {BATCH_SIZE}; test "
          "accuracy per epoch")  # fmt: skip
    frameworks = ("jaxnet", "PyTorch") if with_torch else ("jaxnet",)
    width = 10 * len(frameworks)
    short = {"dropout": "Dropout", "injected": "masks injected", "batchnorm": "BatchNorm"}
    print("      " + "".join(f"   {short[k]:>{width}s}" for k in KINDS))
    print("epoch " + "".join("   " + "".join(f"{f:>10s}" for f in frameworks) for _ in KINDS))
    for e in range(report["epochs"]):
        prefixes = ("", "torch_") if with_torch else ("",)
        groups = [[report[f"{p}{k}_accuracy"][e] for p in prefixes] for k in KINDS]
        print(f"{e + 1:5d} " + "".join("   " + "".join(f"{v:>10.2%}" for v in g) for g in groups))
    if not with_torch:
        return
    d = {k: report[f"{k}_diffs"] for k in KINDS}
    tol = Tolerances(**report["tolerances"])
    print(f"\nlargest differences from PyTorch ({report['precision']} tolerance in brackets)")
    free = d["dropout"]
    print(f"  Dropout, own masks: eval logits of the same weights {free['eval_logits_diff']:.1e} "
          f"[{tol.eval_atol:g}]; training differs by the masks (accuracy "
          f"{free['accuracy_diff']:.2%} apart)")  # fmt: skip
    for kind in ("injected", "batchnorm"):
        line = (
            f"  {TITLES[kind]}: per-step loss (relative) {d[kind]['loss_rel_diff']:.1e} "
            f"[{tol.loss_rtol:g}], weights {d[kind]['param_diff']:.1e} [{tol.param_atol:g}], "
            f"accuracy {d[kind]['accuracy_diff']:.2%} [{tol.accuracy_atol:.1%}]"
        )
        if kind == "batchnorm":
            line += (
                f", running_mean {d[kind]['running_mean_diff']:.1e}, running_var "
                f"{d[kind]['running_var_diff']:.1e} [{tol.stats_atol:g}], num_batches_tracked "
                f"{'equal' if d[kind]['num_batches_tracked_equal'] else 'DIFFERENT'}"
            )
        print(line)
    verdict = {k: "agrees" if report[f"{k}_agrees"] else "DOES NOT AGREE" for k in KINDS}
    print("  " + "; ".join(f"{TITLES[k]} {v}" for k, v in verdict.items()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    fast_help = f"the first {FAST_TRAIN} training and {FAST_TEST} test examples, 1 epoch"
    p = _common.parser(__doc__, fast=fast_help, no_torch_help="train the jaxnet runs alone")
    p.add_argument("--epochs", type=int, default=None, help=f"default {EPOCHS} (1 with --fast)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--float32",
        action="store_true",
        help="train in float32 (the user's precision: the twins separate after a few hundred "
        "steps, see TOLERANCES) instead of float64, where they agree throughout",
    )
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs {args.epochs} must be at least 1")
    precision = "float32" if args.float32 else "float64"
    if precision == "float64":  # before the first JAX array
        jax.config.update("jax_enable_x64", True)
    return run(datasets.load_mnist(), fast=args.fast, out=args.out, with_torch=not args.no_torch,
               epochs=args.epochs, seed=args.seed, precision=precision)  # fmt: skip


if __name__ == "__main__":
    main()
