"""LeNet-5 (d2l's, ReLU and max-pooling) on MNIST, optionally side by side with PyTorch.

d2l's LeNet: ``Conv2d(1, 6, 5, padding=2)``-act-pool-``Conv2d(6, 16, 5)``-act-pool-Flatten-
``Linear(400, 120)``-act-``Linear(120, 84)``-act-``Linear(84, 10)``, with d2l's modern
choices: ReLU and ``MaxPool2d(2)`` (the 1998 original and d2l's first version use sigmoid
and average pooling). Both recipes train with ``jaxnet.train.fit(has_state=True)`` on
cross-entropy, the images scaled to [0, 1] on the host and normalised (torchvision's
``Normalize((0.1307,), (0.3081,))``) inside the compiled step:

* ``--recipe seed``: SGD lr 0.02 momentum 0.9, batch 256, 10 epochs (d2l's 10 epochs and
  batch 256; momentum and a smaller lr replace d2l's plain SGD at lr 0.9 for sigmoid; at
  lr 0.05 the first epoch's loss falls, jumps back to chance and falls again, and in that
  unstable phase float32 rounding differences between the twins grow to 3 pp of accuracy).
* ``--recipe best``: BatchNorm after each convolution and each hidden Linear (d2l's
  BatchNorm LeNet), AdamW 3e-3 (weight decay 0.05) on a OneCycle schedule, batch 128, 15
  epochs, and ``random_crop(padding=2)`` augmentation drawn from each step's key inside
  the compiled step (torchvision's ``RandomCrop(28, padding=2)`` before ``Normalize``).

``--compare-torch`` trains the PyTorch twin from the same initial weights on the same
batch order (``jaxnet.train.epoch_batch_order``) and, for ``best``, on the same crops
(computed from jaxnet's step keys); the two alternate epoch by epoch, so each pair of
epochs sees the same machine load. Prints per-epoch test accuracies in both, their largest
difference checked against ``ACCURACY_ATOL``, the running statistics' agreement where the
model has BatchNorm, and time per epoch; ``--out`` gets the loss and accuracy curves.

Without BatchNorm the twins agree to float32 rounding step by step. With it they drift
apart by rounding alone: on a batch of MNIST, torch's float32 CPU backward through the
first convolution and its BatchNorm is 8.5e-5 off a float64 computation of that weight
gradient (whose largest entry is 0.14), jaxnet's 1.6e-6; the normalisation amplifies such
differences, so the per-step losses agree to 1e-7 at the first step and to about 1e-3
after a few; the accuracies stay close.

    python -m experiments.lenet --recipe seed --compare-torch
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common, mnist_mlp
from jaxnet import datasets, nn, optim, train
from jaxnet.nn import functional as F

ACCURACY_ATOL = 0.002  # per-epoch test accuracy against torch (0.2 percentage points)
IMAGE_SIZE = 28
EVAL_BATCH = 2000  # test images per forward pass of the torch twin's evaluation


@dataclasses.dataclass(frozen=True)
class Recipe:
    optimizer: str  # "sgd" or "adamw"
    lr: float  # the maximum lr with one_cycle
    batch_size: int
    epochs: int
    momentum: float = 0.0
    weight_decay: float = 0.0
    one_cycle: bool = False  # per-step OneCycleLR over the whole run (momentum not cycled)
    batch_norm: bool = False  # the model has BatchNorm (LeNet: after each conv and hidden Linear)
    crop_padding: int = 0  # random_crop(padding=...) on every training batch; 0: none


RECIPES = {
    "seed": Recipe("sgd", 0.02, 256, 10, momentum=0.9),
    "best": Recipe(
        "adamw", 3e-3, 128, 15, weight_decay=0.05, one_cycle=True, batch_norm=True, crop_padding=2
    ),
}


# ------------------------------------------------------------------- models


def layer_spec(batch_norm: bool) -> list[tuple[str, tuple, dict]]:
    """d2l's LeNet as ``(layer class name, arguments, keyword arguments)``: the names are
    the same in ``jaxnet.nn`` and ``torch.nn``, so one list builds both twins. With
    ``batch_norm`` a BatchNorm follows each convolution and hidden Linear, which then has
    no bias (the BatchNorm would cancel it, as in torchvision's ResNets)."""
    bias = {"bias": not batch_norm}

    def norm(kind: str, channels: int) -> list[tuple[str, tuple, dict]]:
        return [(kind, (channels,), {})] if batch_norm else []

    return [
        ("Conv2d", (1, 6, 5), {"padding": 2, **bias}), *norm("BatchNorm2d", 6),
        ("ReLU", (), {}), ("MaxPool2d", (2,), {}),
        ("Conv2d", (6, 16, 5), bias), *norm("BatchNorm2d", 16),
        ("ReLU", (), {}), ("MaxPool2d", (2,), {}),
        ("Flatten", (), {}),
        ("Linear", (400, 120), bias), *norm("BatchNorm1d", 120), ("ReLU", (), {}),
        ("Linear", (120, 84), bias), *norm("BatchNorm1d", 84), ("ReLU", (), {}),
        ("Linear", (84, 10), {}),
    ]  # fmt: skip


def build(namespace, spec: list[tuple[str, tuple, dict]]):
    """``namespace.Sequential`` of the layers of ``spec`` (``jaxnet.nn`` or ``torch.nn``)."""
    return namespace.Sequential(*(getattr(namespace, name)(*a, **kw) for name, a, kw in spec))


def make_model(batch_norm: bool = False) -> nn.Sequential:
    return build(nn, layer_spec(batch_norm))


def torch_model(batch_norm: bool = False):
    """The PyTorch twin of :func:`make_model`: the same state_dict keys and shapes."""
    import torch

    return build(torch.nn, layer_spec(batch_norm))


# --------------------------------------------------------------- the data


def prepare(data: datasets.MNIST, subset: int | None):
    """``(N, 1, 28, 28)`` float32 images scaled to [0, 1] and int32 labels, train and test
    (the first ``subset`` of each when given)."""

    def split(images, labels, n):
        x = images[:n, None].astype(np.float32) / 255  # (N, 1, 28, 28)
        return x, labels[:n].astype(np.int32)

    train_xy = split(data.train_images, data.train_labels, subset)
    test_xy = split(data.test_images, data.test_labels, subset)
    return train_xy, test_xy


def normalize(x: jax.Array) -> jax.Array:
    """torchvision's ``Normalize((0.1307,), (0.3081,))`` of ``(B, 1, 28, 28)`` images."""
    return datasets.normalize_channels(x, datasets.MNIST_MEAN, datasets.MNIST_STD)


def augment(key: jax.Array, x: jax.Array, padding: int) -> jax.Array:
    """A training batch as the loss sees it before normalisation: a random 28x28 crop of
    each image zero-padded by ``padding`` (none when ``padding`` is 0)."""
    return datasets.random_crop(key, x, IMAGE_SIZE, padding) if padding else x


@functools.partial(jax.jit, static_argnums=3)
def step_batch(key: jax.Array, step: jax.Array, x: jax.Array, padding: int) -> jax.Array:
    """The augmented batch ``fit`` gives step ``step`` of a run whose ``TrainState.key`` is
    ``key`` (through :func:`jaxnet.train.step_key`): what the torch twin trains on."""
    return augment(train.step_key(key, step), x, padding)


# ------------------------------------------------------------------- jaxnet


def jaxnet_optimizer(recipe: Recipe, total_steps: int):
    lr = recipe.lr
    if recipe.one_cycle:
        lr = optim.lr_scheduler.OneCycleLR(recipe.lr, total_steps, cycle_momentum=False)
    if recipe.optimizer == "sgd":
        return optim.SGD(lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return optim.AdamW(lr, weight_decay=recipe.weight_decay)


class JaxnetRun:
    """The jaxnet half: ``train(epochs)`` runs :func:`jaxnet.train.fit` (``has_state=True``:
    the loss threads the buffers and crops with the step's key) for that many more epochs;
    the figures gather over the calls."""

    def __init__(self, model, recipe, params, buffers, key, train_xy, test_xy, progress=True):
        self.model, self.recipe, self.progress = model, recipe, progress
        total_steps = recipe.epochs * (len(train_xy[0]) // recipe.batch_size)
        self.optimizer = jaxnet_optimizer(recipe, total_steps)
        self.state = train.TrainState.create(params, self.optimizer, key, buffers)
        self.train_xy, self.test_xy = jax.device_put(train_xy), jax.device_put(test_xy)
        self.step_loss: list[float] = []
        self.epoch_loss: list[float] = []
        self.accuracy: list[float] = []
        self.compile_seconds = 0.0
        self.call_seconds: list[float] = []

    def loss_fn(self, params, buffers, batch, key):
        x, y = batch  # (B, 1, 28, 28) in [0, 1], (B,)
        x = normalize(augment(key, x, self.recipe.crop_padding))
        logits, buffers = self.model.apply(params, x, buffers=buffers)  # (B, 10)
        return F.cross_entropy(logits, y), buffers

    def metric_fn(self, params, buffers, batch):
        x, y = batch
        logits, _ = self.model.apply(params, normalize(x), buffers=buffers, training=False)
        return {"accuracy": jnp.argmax(logits, axis=-1) == y}

    def train(self, epochs: int) -> None:
        self.state, history = train.fit(
            self.state, self.loss_fn, self.train_xy, epochs=epochs,
            batch_size=self.recipe.batch_size, metric_fn=self.metric_fn,
            eval_data=self.test_xy, has_state=True, progress=self.progress,
        )  # fmt: skip
        self.step_loss += history["step_loss"]
        self.epoch_loss += history["epoch_loss"]
        self.accuracy += [e["accuracy"] for e in history["eval"]]
        self.compile_seconds += history["compile_seconds"]
        self.call_seconds.append(history["train_seconds"])

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.model.state_dict(self.state.params, self.state.buffers)


# ------------------------------------------------------------------- torch


class TorchRun:
    """The PyTorch twin: ``train(epoch)`` runs one epoch on the batches ``fit`` trains
    epoch ``epoch`` on (:func:`jaxnet.train.epoch_batch_order`; with crops, the crops of
    :func:`step_batch`), then evaluates in eval mode. The epoch's time counts torch's
    work only, not the computing of the crops."""

    def __init__(self, model, recipe, initial, key, train_xy, test_xy, progress=True):
        import torch

        self.model, self.recipe, self.key, self.progress = model, recipe, key, progress
        self.model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in initial.items()})
        self.train_xy = train_xy
        self.x, y = (torch.from_numpy(np.array(a)) for a in train_xy)
        self.y = y.long()
        self.test_x, self.test_y = (torch.from_numpy(np.array(a)) for a in test_xy)
        self.steps = len(train_xy[0]) // recipe.batch_size
        params = self.model.parameters()
        if recipe.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                                       weight_decay=recipe.weight_decay)  # fmt: skip
        else:
            self.opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
        self.scheduler = None
        if recipe.one_cycle:
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                self.opt, recipe.lr, total_steps=recipe.epochs * self.steps, cycle_momentum=False
            )
        self.mean, self.std = (torch.tensor(v) for v in (datasets.MNIST_MEAN, datasets.MNIST_STD))
        self.losses: list[Any] = []
        self.epoch_loss: list[float] = []
        self.accuracy: list[float] = []
        self.epoch_seconds: list[float] = []

    def batch(self, step: int, idx: np.ndarray):
        import torch

        if not self.recipe.crop_padding:
            return self.x[torch.from_numpy(idx)]
        x = step_batch(self.key, step, self.train_xy[0][idx], self.recipe.crop_padding)
        return torch.from_numpy(np.array(x))

    def train(self, epoch: int) -> None:
        import torch
        from tqdm.auto import tqdm

        order = train.epoch_batch_order(self.key, epoch, len(self.train_xy[0]),
                                        self.recipe.batch_size)  # fmt: skip
        self.model.train()
        seconds, first = 0.0, len(self.losses)
        bar = tqdm(order, desc=f"torch epoch {epoch + 1}", disable=not self.progress)
        for i, idx in enumerate(bar):
            x = self.batch(epoch * self.steps + i, idx)
            tic = time.perf_counter()
            logits = self.model((x - self.mean) / self.std)
            loss = torch.nn.functional.cross_entropy(logits, self.y[torch.from_numpy(idx)])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.losses.append(loss.detach())
            seconds += time.perf_counter() - tic
        bar.close()
        self.epoch_seconds.append(seconds)
        self.epoch_loss.append(float(torch.stack(self.losses[first:]).mean()))
        self.model.eval()
        with torch.no_grad():
            correct = sum(
                int((self.model((x - self.mean) / self.std).argmax(-1) == y).sum())
                for x, y in zip(self.test_x.split(EVAL_BATCH), self.test_y.split(EVAL_BATCH),
                                strict=True)
            )  # fmt: skip
        self.accuracy.append(correct / len(self.test_y))
        if self.progress:
            tqdm.write(f"torch epoch {epoch + 1}: train loss {self.epoch_loss[-1]:.4f}, "
                       f"eval accuracy {self.accuracy[-1]:.4f}")  # fmt: skip

    @property
    def step_loss(self) -> np.ndarray:
        import torch

        return torch.stack(self.losses).numpy()

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.numpy().copy() for k, v in self.model.state_dict().items()}


# ------------------------------------------------------------------- checks


def compare(ours: JaxnetRun, theirs: TorchRun) -> dict[str, Any]:
    """The largest differences between the runs: per-epoch accuracy, per-step loss
    (relative), correct test predictions at the end, weights, and the BatchNorm running
    statistics (absolute and relative to their largest magnitude) where there are any."""
    n_test = len(ours.test_xy[1])
    loss_rel = np.abs(np.asarray(ours.step_loss) - theirs.step_loss) / np.abs(theirs.step_loss)
    sd, tsd = ours.state_dict(), theirs.state_dict()
    diffs = {
        "accuracy_diff": max(
            abs(a - b) for a, b in zip(ours.accuracy, theirs.accuracy, strict=True)
        ),
        "correct": round(ours.accuracy[-1] * n_test),
        "torch_correct": round(theirs.accuracy[-1] * n_test),
        "loss_rel_diff": float(loss_rel.max()),
        "step_loss_rel_diff": loss_rel,
        "param_diff": max(
            _common.max_abs_diff(sd[k], tsd[k]) for k in sd if k.endswith(("weight", "bias"))
        ),
    }
    for stat in ("running_mean", "running_var"):
        keys = [k for k in sd if k.endswith(stat)]
        if keys:
            diffs[f"{stat}_diff"] = max(_common.max_abs_diff(sd[k], tsd[k]) for k in keys)
            scale = max(float(np.abs(tsd[k]).max()) for k in keys)
            diffs[f"{stat}_rel_diff"] = diffs[f"{stat}_diff"] / scale
    counts = [k for k in sd if k.endswith("num_batches_tracked")]
    if counts:
        diffs["num_batches_tracked_equal"] = all(int(sd[k]) == int(tsd[k]) for k in counts)
    return diffs


def agreement(diffs: dict[str, Any]) -> bool:
    """Per-epoch accuracies within ``ACCURACY_ATOL`` and, with BatchNorm, the same count of
    batches tracked. The running statistics are reported, not held to a tolerance here:
    over a long run they drift apart with the weights (see the module's docstring)."""
    return diffs["accuracy_diff"] <= ACCURACY_ATOL and diffs.get("num_batches_tracked_equal", True)


def print_comparison(ours: JaxnetRun, theirs: TorchRun, report: dict[str, Any]) -> None:
    d = report["diffs"]
    print(f"\n{'':10s}{'test accuracy':>26s}{'':4s}{'seconds per epoch':>26s}")
    print(f"{'epoch':>6s}{'jaxnet':>12s}{'PyTorch':>12s}{'diff':>8s}"
          f"{'jaxnet':>14s}{'PyTorch':>12s}")  # fmt: skip
    for e, (a, b) in enumerate(zip(ours.accuracy, theirs.accuracy, strict=True)):
        print(f"{e + 1:6d}{a:>12.2%}{b:>12.2%}{abs(a - b) * 100:>6.2f}pp"
              f"{ours.call_seconds[e]:>14.2f}{theirs.epoch_seconds[e]:>12.2f}")  # fmt: skip
    n_test = len(ours.test_xy[1])
    print(f"  correct test predictions after the last epoch: jaxnet {d['correct']}, "
          f"PyTorch {d['torch_correct']} of {n_test}")  # fmt: skip
    print(f"  largest differences: per-step loss (relative) {d['loss_rel_diff']:.1e}, "
          f"weights {d['param_diff']:.1e}")  # fmt: skip
    if "running_mean_diff" in d:
        print(f"  running statistics: running_mean {d['running_mean_diff']:.1e} "
              f"({d['running_mean_rel_diff']:.1e} of its largest value), running_var "
              f"{d['running_var_diff']:.1e} ({d['running_var_rel_diff']:.1e}), "
              f"num_batches_tracked "
              f"{'equal' if d['num_batches_tracked_equal'] else 'DIFFERENT'}")  # fmt: skip
    verdict = "agrees" if report["agrees"] else "DOES NOT AGREE"
    print(f"  check: per-epoch accuracy |jaxnet - PyTorch| <= {ACCURACY_ATOL * 100:.1f} pp "
          f"(largest {d['accuracy_diff'] * 100:.2f} pp): {verdict}")  # fmt: skip
    what = "speed-up (PyTorch time / jaxnet time, median over epochs timed in alternation)"
    if report["speedup_unreliable"]:
        print(f"  {what}: unreliable, {report['speedup_unreliable']}; measured "
              f"{report['speedup']:.2f}x, do not quote it")  # fmt: skip
    else:
        print(f"  {what}: {report['speedup']:.2f}x")


# -------------------------------------------------------------------- plots


def plot(path: Path, title: str, ours: JaxnetRun, theirs: TorchRun | None) -> None:
    """Per-epoch mean training loss and test accuracy, jaxnet's and PyTorch's."""
    _common.plot_backend()
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = range(1, len(ours.accuracy) + 1)
    ax_loss.plot(epochs, ours.epoch_loss, "o-", label="jaxnet")
    ax_acc.plot(epochs, ours.accuracy, "o-", label="jaxnet")
    if theirs is not None:
        ax_loss.plot(epochs, theirs.epoch_loss, "s--", label="PyTorch")
        ax_acc.plot(epochs, theirs.accuracy, "s--", label="PyTorch")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss (cross-entropy)", title=title)
    ax_acc.set(xlabel="epoch", ylabel="test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    _common.save_figure(fig, path)


# -------------------------------------------------------------------- run


def train_side_by_side(
    model, twin, recipe: Recipe, train_xy, test_xy, *, compare_torch: bool, seed: int,
    progress: bool,
) -> tuple[JaxnetRun, TorchRun | None, dict[str, Any]]:  # fmt: skip
    """Train ``model`` (and, with ``compare_torch``, its torch twin ``twin()``, loaded with
    the same initial weights) for the recipe's epochs, alternating epoch by epoch; returns
    both runs and the report of their figures."""
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params, buffers = model.init(init_key), model.init_buffers()
    initial = model.state_dict(params, buffers)
    ours = JaxnetRun(model, recipe, params, buffers, data_key, train_xy, test_xy, progress)
    report: dict[str, Any] = {"train_examples": len(train_xy[0]), "test_examples": len(test_xy[0])}
    if not compare_torch:
        ours.train(recipe.epochs)
        return ours, None, report | jaxnet_figures(ours)
    theirs = TorchRun(twin(), recipe, initial, data_key, train_xy, test_xy, progress)
    loads = [mnist_mlp.load_average()]
    for epoch in range(recipe.epochs):
        ours.train(1)
        theirs.train(epoch)
    loads.append(mnist_mlp.load_average())
    speedup, unreliable = mnist_mlp.speedup_figure(
        ours.call_seconds, theirs.epoch_seconds, loads, mnist_mlp.cores_in_use()
    )
    diffs = compare(ours, theirs)
    report |= jaxnet_figures(ours) | {
        "torch_accuracy": theirs.accuracy[-1],
        "torch_epoch_accuracy": theirs.accuracy,
        "torch_epoch_loss": theirs.epoch_loss,
        "torch_epoch_seconds": theirs.epoch_seconds,
        "load_average": loads,
        "speedup": speedup,
        "speedup_unreliable": unreliable,
        "diffs": diffs,
        "agrees": agreement(diffs),
    }
    return ours, theirs, report


def jaxnet_figures(ours: JaxnetRun) -> dict[str, Any]:
    return {
        "accuracy": ours.accuracy[-1],
        "epoch_accuracy": ours.accuracy,
        "epoch_loss": ours.epoch_loss,
        "epoch_seconds": ours.call_seconds,
        "compile_seconds": ours.compile_seconds,
    }


def run(
    data: datasets.MNIST,
    recipe_name: str = "seed",
    *,
    compare_torch: bool = False,
    out: Path | None = None,
    subset: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, evaluate and plot; returns the figures it prints."""
    recipe = RECIPES[recipe_name]
    if epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=epochs)
    out = _common.output_dir(out, "lenet")
    train_xy, test_xy = prepare(data, subset)
    model = make_model(recipe.batch_norm)
    twin = functools.partial(torch_model, recipe.batch_norm)
    ours, theirs, report = train_side_by_side(
        model, twin, recipe, train_xy, test_xy, compare_torch=compare_torch, seed=seed,
        progress=progress,
    )  # fmt: skip
    report["recipe"] = recipe_name
    title = f"LeNet, recipe {recipe_name!r}"
    return finish(title, recipe, ours, theirs, report, out / f"lenet_{recipe_name}.png")


def finish(
    title: str, recipe: Recipe, ours: JaxnetRun, theirs: TorchRun | None, report: dict,
    plot_path: Path,
) -> dict[str, Any]:  # fmt: skip
    """Print the runs' figures (and the comparison), plot them; returns ``report``."""
    print(f"\n{title}: {recipe}; {report['train_examples']} training, "
          f"{report['test_examples']} test examples")  # fmt: skip
    for e, (loss, acc) in enumerate(zip(ours.epoch_loss, ours.accuracy, strict=True)):
        print(f"  jaxnet epoch {e + 1:2d}  loss {loss:.5f}  test accuracy {acc:.2%}")
    print(f"  final test accuracy {ours.accuracy[-1]:.2%} (error {1 - ours.accuracy[-1]:.2%}); "
          f"compile {ours.compile_seconds:.1f} s, training {sum(ours.call_seconds):.1f} s, "
          f"median epoch {statistics.median(ours.call_seconds):.2f} s")  # fmt: skip
    if theirs is not None:
        print_comparison(ours, theirs, report)
    plot(plot_path, title, ours, theirs)
    report["plot"] = str(plot_path)
    print(f"plot {plot_path}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = _common.parser(
        __doc__,
        no_torch_help="never train the PyTorch twin, even with --compare-torch (without "
        "--compare-torch it is not trained anyway)",
    )
    p.add_argument("--recipe", choices=sorted(RECIPES), default="seed")
    p.add_argument(
        "--compare-torch",
        action="store_true",
        help="also train the PyTorch twin from the same weights and batch order",
    )
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--subset", type=int, default=None,
                   help="train on the first N training and test examples "
                   "(N >= the batch size)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    recipe = RECIPES[args.recipe]
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs {args.epochs} must be at least 1")
    if args.subset is not None and args.subset < recipe.batch_size:
        p.error(
            f"--subset {args.subset} must be at least the {args.recipe} recipe's batch size "
            f"{recipe.batch_size}"
        )
    return run(
        datasets.load_mnist(), args.recipe, compare_torch=args.compare_torch and not args.no_torch,
        out=args.out, subset=args.subset, epochs=args.epochs, seed=args.seed,
    )  # fmt: skip


if __name__ == "__main__":
    main()
