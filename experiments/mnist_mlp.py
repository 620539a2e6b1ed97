"""MNIST MLP (784-256-64-10, ReLU) on real MNIST, optionally side by side with PyTorch.

The main job of jaxnet. ``--recipe seed`` is seed 001's course recipe (one-hot targets,
MSE, SGD lr 0.01 momentum 0.9, batch 512, 3 epochs); ``--recipe best`` is the best this
architecture does here (cross-entropy with label smoothing 0.1, AdamW 1e-3 with weight
decay 0.05 and a per-step cosine schedule, batch 128, 15 epochs). ``--compare-torch``
trains the PyTorch twin from the same initial weights on the same batch order and
prints both. The two train in alternation, epoch by epoch, so each pair of epochs sees
the same machine load; the speed-up is the median of the per-epoch ratios, and it is
called unreliable, not printed bare, when the machine was busy (load average well above
the cores this process may use) or the per-epoch ratios spread widely.

    python -m experiments.mnist_mlp --recipe seed --compare-torch

``--devices N`` trains data parallel over N devices (``jaxnet.parallel``); on CPU
they are N simulated devices, so the numbers equal the single-device run's.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from jaxnet import checkpoint, datasets, nn, optim, parallel, train
from jaxnet.nn import functional as F


@dataclasses.dataclass(frozen=True)
class Recipe:
    loss: str  # "mse" on one-hot targets, or "cross_entropy"
    optimizer: str  # "sgd" or "adamw"
    lr: float
    batch_size: int
    epochs: int
    momentum: float = 0.0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    cosine: bool = False  # per-step cosine annealing over the whole run


RECIPES = {
    "seed": Recipe("mse", "sgd", 0.01, 512, 3, momentum=0.9),
    "best": Recipe(
        "cross_entropy", "adamw", 1e-3, 128, 15, weight_decay=0.05, label_smoothing=0.1, cosine=True
    ),
}


def make_model() -> nn.Sequential:
    return nn.MLP(784, [256, 64], 10)


def torch_model():
    """The PyTorch twin of :func:`make_model`."""
    return _common.torch_mlp()


def jaxnet_optimizer(recipe: Recipe, total_steps: int):
    lr = (
        optim.lr_scheduler.CosineAnnealingLR(recipe.lr, total_steps) if recipe.cosine else recipe.lr
    )
    if recipe.optimizer == "sgd":
        return optim.SGD(lr, momentum=recipe.momentum)
    return optim.AdamW(lr, weight_decay=recipe.weight_decay)


def jaxnet_loss(model: nn.Sequential, recipe: Recipe):
    def loss_fn(params, batch):
        x, y = batch  # (B, 784) float32, (B,) int32
        logits = model.apply(params, x)  # (B, 10)
        if recipe.loss == "mse":
            return F.mse_loss(logits, F.one_hot(y, 10).astype(jnp.float32))
        return F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)

    return loss_fn


def accuracy_fn(model: nn.Sequential):
    def metric_fn(params, batch):
        x, y = batch
        return {"accuracy": jnp.argmax(model.apply(params, x), axis=-1) == y}

    return metric_fn


class JaxnetRun:
    """The jaxnet half: ``train(epochs)`` runs :func:`jaxnet.train.fit` for that many more
    epochs on the state it holds (``fit`` resumes from ``state.epoch``, so one call per
    epoch trains exactly as one call for all); the figures gather over the calls."""

    def __init__(self, recipe, params, key, train_xy, test_xy, progress=True, mesh=None):
        self.model = make_model()
        self.recipe = recipe
        steps = recipe.epochs * (len(train_xy[0]) // recipe.batch_size)
        self.optimizer = jaxnet_optimizer(recipe, steps)
        self.state = train.TrainState.create(params, self.optimizer, key)
        self.train_xy = jax.device_put(train_xy)
        self.test_xy = jax.device_put(test_xy)
        self.progress, self.mesh = progress, mesh
        self.step_loss: list[float] = []
        self.epoch_loss: list[float] = []
        self.accuracy: list[float] = []
        self.compile_seconds = 0.0
        self.call_seconds: list[float] = []  # the training time of each call to fit

    def train(self, epochs: int) -> None:
        self.state, history = train.fit(
            self.state,
            jaxnet_loss(self.model, self.recipe),
            self.train_xy,
            epochs=epochs,
            batch_size=self.recipe.batch_size,
            metric_fn=accuracy_fn(self.model),
            eval_data=self.test_xy,
            progress=self.progress,
            mesh=self.mesh,
        )
        self.step_loss += history["step_loss"]
        self.epoch_loss += history["epoch_loss"]
        self.accuracy += [e["accuracy"] for e in history["eval"]]
        self.compile_seconds += history["compile_seconds"]
        self.call_seconds.append(history["train_seconds"])


class TorchRun:
    """The PyTorch twin: ``train(order)`` runs one epoch on the ``(steps, B)`` index
    batches ``order`` (``jaxnet.train.epoch_batch_order``, so the batches ``fit`` trains
    on), then evaluates."""

    def __init__(self, recipe, initial, train_xy, test_xy, total_steps, progress=True):
        import torch

        self.recipe, self.progress = recipe, progress
        self.model = torch_model()
        self.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in initial.items()})
        self.x, y = (torch.from_numpy(np.array(a)) for a in train_xy)
        self.y = y.long()
        self.test_x, self.test_y = (torch.from_numpy(np.array(a)) for a in test_xy)
        params = self.model.parameters()
        if recipe.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum)
        else:
            self.opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR
        self.scheduler = cosine(self.opt, total_steps) if recipe.cosine else None
        self.losses: list[Any] = []
        self.accuracy: list[float] = []
        self.epoch_seconds: list[float] = []

    def train(self, order: np.ndarray) -> None:
        import torch
        from tqdm.auto import tqdm

        tf = torch.nn.functional
        epoch = len(self.epoch_seconds)
        tic = time.perf_counter()
        bar = tqdm(order, desc=f"torch epoch {epoch + 1}/{self.recipe.epochs}",
                   disable=not self.progress)  # fmt: skip
        for idx in bar:
            idx = torch.from_numpy(idx)
            logits = self.model(self.x[idx])
            if self.recipe.loss == "mse":
                loss = tf.mse_loss(logits, tf.one_hot(self.y[idx], 10).float())
            else:
                loss = tf.cross_entropy(
                    logits, self.y[idx], label_smoothing=self.recipe.label_smoothing
                )
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.losses.append(loss.detach())
        self.epoch_seconds.append(time.perf_counter() - tic)
        bar.close()
        with torch.no_grad():
            correct = self.model(self.test_x).argmax(-1) == self.test_y
            self.accuracy.append(correct.float().mean().item())

    @property
    def step_loss(self) -> np.ndarray:
        import torch

        return torch.stack(self.losses).numpy()


# A speed-up is called unreliable when the 1-minute load average (at the start or the end
# of the timing) exceeds this many times the cores this process may use, or when the
# per-epoch speed-ups spread by more than this fraction of their median.
BUSY_LOAD_FACTOR = 1.5
SPREAD_LIMIT = 0.3


def load_average() -> float:
    """The machine's 1-minute load average (``os.getloadavg()[0]``)."""
    return os.getloadavg()[0]


def cores_in_use() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def speedup_figure(
    jaxnet_seconds: list[float], torch_seconds: list[float], loads: list[float], cores: int
) -> tuple[float, str | None]:
    """The speed-up, PyTorch's time over jaxnet's, as the median over epochs of the ratio
    of the two epochs timed back to back (the machine's drift between epochs cancels), and
    why it cannot be trusted: ``None`` when the load average stayed under
    ``BUSY_LOAD_FACTOR * cores`` and the per-epoch ratios agree within ``SPREAD_LIMIT``."""
    ratios = [t / j for t, j in zip(torch_seconds, jaxnet_seconds, strict=True)]
    speedup = statistics.median(ratios)
    reasons = []
    if max(loads) > BUSY_LOAD_FACTOR * cores:
        reasons.append(
            f"the machine was busy (load average {max(loads):.1f} on the {cores} cores "
            "this process may use)"
        )
    if len(ratios) > 1 and (max(ratios) - min(ratios)) > SPREAD_LIMIT * speedup:
        reasons.append(
            f"the per-epoch speed-ups spread from {min(ratios):.2f}x to {max(ratios):.2f}x"
        )
    return speedup, "; ".join(reasons) or None


def prepare(data: datasets.MNIST, subset: int | None):
    """Normalised float32 ``(N, 784)`` images and int32 labels, train and test."""
    n_train = subset or len(data.train_labels)
    n_test = min(subset, len(data.test_labels)) if subset else len(data.test_labels)
    train_xy = (
        np.asarray(datasets.normalize(data.train_images[:n_train])),
        data.train_labels[:n_train].astype(np.int32),
    )
    test_xy = (
        np.asarray(datasets.normalize(data.test_images[:n_test])),
        data.test_labels[:n_test].astype(np.int32),
    )
    return train_xy, test_xy


def plot(path: Path, recipe_name: str, ours: JaxnetRun, theirs: TorchRun | None) -> None:
    _common.plot_backend()
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(ours.step_loss, label="jaxnet", lw=1)
    ax_acc.plot(range(1, len(ours.accuracy) + 1), ours.accuracy, "o-", label="jaxnet")
    if theirs is not None:
        ax_loss.plot(theirs.step_loss, label="PyTorch", lw=1, ls="--")
        ax_acc.plot(range(1, len(theirs.accuracy) + 1), theirs.accuracy, "s--",
                    label="PyTorch")  # fmt: skip
    ax_loss.set(xlabel="step", ylabel="training loss", title=f"MNIST MLP, recipe {recipe_name}")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    _common.save_figure(fig, path)


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
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
    """Train, evaluate, plot and checkpoint; returns the figures it prints."""
    recipe = RECIPES[recipe_name]
    if epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=epochs)
    out = _common.output_dir(out, "mnist_mlp")
    train_xy, test_xy = prepare(data, subset)
    key = jax.random.key(seed)
    init_key, data_key = jax.random.split(key)
    model = make_model()
    params = model.init(init_key)
    initial = model.state_dict(params)

    ours = JaxnetRun(recipe, params, data_key, train_xy, test_xy, progress, mesh)
    theirs = None
    if compare_torch:
        # The two alternate epoch by epoch, so each epoch pair sees the same machine load.
        n, steps = len(train_xy[0]), len(train_xy[0]) // recipe.batch_size
        theirs = TorchRun(recipe, initial, train_xy, test_xy, recipe.epochs * steps, progress)
        loads = [load_average()]
        for epoch in range(recipe.epochs):
            ours.train(1)
            theirs.train(train.epoch_batch_order(data_key, epoch, n, recipe.batch_size))
        loads.append(load_average())
    else:
        ours.train(recipe.epochs)
    train_seconds = sum(ours.call_seconds)
    report = {
        "recipe": recipe_name,
        "accuracy": ours.accuracy[-1],
        "epoch_accuracy": ours.accuracy,
        "epoch_loss": ours.epoch_loss,
        "compile_seconds": ours.compile_seconds,
        "train_seconds": train_seconds,
    }
    print(f"\njaxnet, recipe {recipe_name!r}: {recipe}")
    for e, (loss, acc) in enumerate(zip(ours.epoch_loss, ours.accuracy, strict=True)):
        print(f"  epoch {e + 1:2d}  loss {loss:.5f}  test accuracy {acc:.2%}")
    print(f"  final test accuracy {ours.accuracy[-1]:.2%}")
    print(f"  compile {ours.compile_seconds:.2f} s, training {train_seconds:.2f} s")

    if theirs is not None:
        ours_loss, theirs_loss = np.asarray(ours.step_loss), theirs.step_loss
        n = min(len(ours_loss), len(theirs_loss))
        rel = np.abs(ours_loss[:n] - theirs_loss[:n]) / np.abs(theirs_loss[:n])
        speedup, unreliable = speedup_figure(
            ours.call_seconds, theirs.epoch_seconds, loads, cores_in_use()
        )
        report.update(
            torch_accuracy=theirs.accuracy[-1],
            torch_epoch_accuracy=theirs.accuracy,
            torch_train_seconds=sum(theirs.epoch_seconds),
            epoch_seconds=ours.call_seconds,
            torch_epoch_seconds=theirs.epoch_seconds,
            load_average=loads,
            max_rel_loss_diff=float(rel.max()),
            speedup=speedup,
            speedup_unreliable=unreliable,
        )
        print(f"\n{'':24s}{'jaxnet':>12s}{'PyTorch':>12s}")
        for e in range(recipe.epochs):
            print(f"  epoch {e + 1:2d} accuracy{'':7s}{ours.accuracy[e]:>12.2%}"
                  f"{theirs.accuracy[e]:>12.2%}")  # fmt: skip
        print(f"  training seconds{'':6s}{train_seconds:>12.2f}"
              f"{report['torch_train_seconds']:>12.2f}")  # fmt: skip
        what = "speed-up (PyTorch time / jaxnet time, median over epochs timed in alternation)"
        if unreliable:
            print(f"  {what}: unreliable, {unreliable}; measured {speedup:.2f}x, do not quote it")
        else:
            print(f"  {what}: {speedup:.2f}x")
        print(f"  accuracy difference: {abs(report['accuracy'] - report['torch_accuracy']):.2%}")
        print(f"  largest relative difference of the per-step losses: {rel.max():.2e}")

    weights = out / f"mnist_mlp_{recipe_name}.safetensors"
    checkpoint.save_weights(weights, model, ours.state.params)
    report["checkpoint"] = str(weights)
    report["checkpoint_max_diff"] = check_checkpoint_in_torch(weights, ours.state.params, test_xy)
    print(f"\ncheckpoint {weights} loads into the PyTorch twin "
          f"(largest logit difference {report['checkpoint_max_diff']:.1e})")  # fmt: skip
    plot(out / f"mnist_mlp_{recipe_name}.png", recipe_name, ours, theirs)
    report["plot"] = str(out / f"mnist_mlp_{recipe_name}.png")
    print(f"plot {report['plot']}")
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {report['peak_rss_mb']:.0f} MB")
    return report


def check_checkpoint_in_torch(path: Path, params, test_xy) -> float:
    """Load the safetensors file into the torch twin; the largest logit difference."""
    import safetensors.torch
    import torch

    twin = torch_model()
    twin.load_state_dict(safetensors.torch.load_file(str(path)), strict=True)
    x = test_xy[0][:256]
    with torch.no_grad():
        theirs = twin(torch.from_numpy(np.array(x))).numpy()
    return float(np.abs(np.asarray(make_model().apply(params, x)) - theirs).max())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = _common.parser(
        __doc__,
        no_torch_help="never train the PyTorch twin, even with --compare-torch (without "
        "--compare-torch it is not trained anyway); torch still loads the checkpoint to "
        "check it",
    )
    p.add_argument("--recipe", choices=sorted(RECIPES), default="seed")
    p.add_argument(
        "--compare-torch",
        action="store_true",
        help="also train the PyTorch twin from the same weights and batch order",
    )
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument(
        "--subset",
        type=int,
        default=None,
        help="train on the first N examples (N >= the batch size)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--devices", type=int, default=None,
                   help="data parallel over N devices (on CPU: N simulated devices)")  # fmt: skip
    p.add_argument("--data-dir", type=Path, default=None,
                   help="read MNIST from IDX files (raw or .gz) in this directory")  # fmt: skip
    args = p.parse_args(argv)
    recipe = RECIPES[args.recipe]
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs {args.epochs} must be at least 1")
    if args.subset is not None and args.subset < recipe.batch_size:
        p.error(
            f"--subset {args.subset} must be at least the {args.recipe} recipe's batch size "
            f"{recipe.batch_size}"
        )
    if args.devices is not None and (args.devices < 1 or recipe.batch_size % args.devices):
        p.error(
            f"--devices {args.devices} must be a positive divisor of the {args.recipe} recipe's "
            f"batch size {recipe.batch_size}"
        )
    if args.data_dir is not None and not args.data_dir.is_dir():
        p.error(f"--data-dir {args.data_dir} is not an existing directory")
    if args.devices is not None:  # CPU only; must come before JAX's first operation
        jax.config.update("jax_num_cpu_devices", args.devices)
    if args.data_dir is not None:
        data = datasets.load_mnist("idx", path=args.data_dir)
    else:
        data = datasets.load_mnist()
    return run(
        data,
        args.recipe,
        compare_torch=args.compare_torch and not args.no_torch,
        out=args.out,
        subset=args.subset,
        epochs=args.epochs,
        seed=args.seed,
        mesh=None if args.devices is None else parallel.make_mesh(args.devices),
    )


if __name__ == "__main__":
    main()
