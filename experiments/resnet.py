"""A small ResNet (d2l's ResNet-18 adapted to 28x28 MNIST) beside its PyTorch twin.

d2l's ResNet-18 is a 7x7 stride-2 stem with max-pooling, then four stages of two
``Residual`` blocks with 64, 128, 256 and 512 channels, global average pooling and a
Linear head. For 28x28 single-channel images on a CPU this keeps its shape at a
fraction of the cost:

* stem: ``Conv2d(1, 16, 3, padding=1)``-BatchNorm2d-ReLU (no stride, no max-pooling: the
  images are small already);
* four stages of ONE ``Residual`` block each (d2l has two), ``WIDTHS`` = 16, 32, 64 and
  128 channels (d2l's divided by 4), at 28x28, 14x14, 7x7 and 4x4; each stage after the
  first halves the size with stride 2 and a 1x1 convolution on the shortcut;
* ``AdaptiveAvgPool2d((1, 1))``, ``Flatten``, ``Linear(128, 10)``.

Convolutions followed by a BatchNorm have no bias (the BatchNorm cancels it; torchvision's
ResNets do the same). The jaxnet ``Residual`` is a custom layer (constructor and
``forward(scope, x)``); its PyTorch twin is d2l's class. Both train from the same initial
weights on the same batches (``jaxnet.train.epoch_batch_order``), with SGD lr 0.05
momentum 0.9, batch 128, by default 3 epochs on the first 10000 training images; the
printout gives the test accuracies, the agreement of the BatchNorm running statistics
after training and the time per epoch (epochs alternate between the frameworks).

On real MNIST the twins drift apart by float32 rounding, as LeNet's BatchNorm twins do: on
one batch of 128, jaxnet's gradients are within 7e-5 of a float64 computation (relative to
each tensor's largest entry) and torch's within 4e-4. Early in training the eval-mode
accuracy hangs on running statistics that lag the weights, so after a few dozen steps the
two accuracies can lie many points apart while the training losses agree within 1 %.

    python -m experiments.resnet [--subset N] [--epochs K] [--no-torch] [--out DIR]
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from pathlib import Path
from typing import Any

import jax

from experiments import _common, lenet
from jaxnet import datasets, nn
from jaxnet.nn import functional as F

WIDTHS = (16, 32, 64, 128)  # channels of the four stages, one Residual block each
RECIPE = lenet.Recipe("sgd", 0.05, 128, 3, momentum=0.9, batch_norm=True)
SUBSET = 10_000  # training (and test) examples by default


class Residual(nn.Module):
    """d2l's ``Residual`` block (torchvision's ``BasicBlock``): two 3x3 convolutions with
    BatchNorm and ReLU, added to the input, or to its 1x1 convolution (``conv3``) when
    the stride or the channel count changes."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        shortcut = stride != 1 or in_channels != channels
        self.conv3 = nn.Conv2d(in_channels, channels, 1, stride) if shortcut else None
        self.bn1 = nn.BatchNorm2d(channels)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, scope: nn.Scope, x: jax.Array) -> jax.Array:
        y = F.relu(self.bn1(scope, self.conv1(scope, x)))  # (N, C, H / s, W / s)
        y = self.bn2(scope, self.conv2(scope, y))
        if self.conv3 is not None:
            x = self.conv3(scope, x)
        return F.relu(y + x)


def torch_residual():
    """d2l's ``Residual`` in PyTorch (children registered in the jaxnet block's order)."""
    import torch

    tnn, tf = torch.nn, torch.nn.functional

    class TorchResidual(tnn.Module):
        def __init__(self, in_channels, channels, stride=1):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
            self.conv2 = tnn.Conv2d(channels, channels, 3, padding=1, bias=False)
            shortcut = stride != 1 or in_channels != channels
            self.conv3 = tnn.Conv2d(in_channels, channels, 1, stride) if shortcut else None
            self.bn1 = tnn.BatchNorm2d(channels)
            self.bn2 = tnn.BatchNorm2d(channels)

        def forward(self, x):
            y = tf.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            if self.conv3 is not None:
                x = self.conv3(x)
            return tf.relu(y + x)

    return TorchResidual


def build(namespace, residual, widths: tuple[int, ...]):
    """The small ResNet from ``namespace`` (``jaxnet.nn`` or ``torch.nn``) and its
    ``residual`` block class, one block per stage of ``widths`` channels."""
    stages = [residual(widths[0], widths[0])]
    stages += [residual(a, b, 2) for a, b in itertools.pairwise(widths)]
    return namespace.Sequential(
        namespace.Conv2d(1, widths[0], 3, padding=1, bias=False),
        namespace.BatchNorm2d(widths[0]),
        namespace.ReLU(),
        *stages,
        namespace.AdaptiveAvgPool2d((1, 1)),
        namespace.Flatten(),
        namespace.Linear(widths[-1], 10),
    )


def make_model(widths: tuple[int, ...] = WIDTHS) -> nn.Sequential:
    return build(nn, Residual, widths)


def torch_model(widths: tuple[int, ...] = WIDTHS):
    """The PyTorch twin of :func:`make_model`: the same state_dict keys and shapes."""
    import torch

    return build(torch.nn, torch_residual(), widths)


def run(
    data: datasets.MNIST,
    *,
    with_torch: bool = True,
    out: Path | None = None,
    subset: int | None = SUBSET,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = True,
    widths: tuple[int, ...] = WIDTHS,
) -> dict[str, Any]:
    """Train (beside the torch twin ``with_torch``), evaluate and plot; returns the figures.
    ``widths``: the stages' channels (narrower ones make a quicker check)."""
    recipe = RECIPE if epochs is None else dataclasses.replace(RECIPE, epochs=epochs)
    out = _common.output_dir(out, "resnet")
    train_xy, test_xy = lenet.prepare(data, subset)
    ours, theirs, report = lenet.train_side_by_side(
        make_model(widths), functools.partial(torch_model, widths), recipe, train_xy, test_xy,
        compare_torch=with_torch, seed=seed, progress=progress,
    )  # fmt: skip
    title = f"small ResNet (widths {'-'.join(map(str, widths))})"
    return lenet.finish(title, recipe, ours, theirs, report, out / "resnet.png")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = _common.parser(__doc__, no_torch_help="train the jaxnet model alone")
    p.add_argument("--epochs", type=int, default=None, help=f"default {RECIPE.epochs}")
    p.add_argument("--subset", type=int, default=SUBSET,
                   help=f"the first N training and test examples (default {SUBSET}; 0: all; "
                   f"else N >= the batch size {RECIPE.batch_size})")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs {args.epochs} must be at least 1")
    if args.subset != 0 and args.subset < RECIPE.batch_size:
        p.error(f"--subset {args.subset} must be 0 (all) or at least the batch size "
                f"{RECIPE.batch_size}")  # fmt: skip
    return run(datasets.load_mnist(), with_torch=not args.no_torch, out=args.out,
               subset=args.subset or None, epochs=args.epochs, seed=args.seed)  # fmt: skip


if __name__ == "__main__":
    main()
