"""The sections in PyTorch: modules are objects that own their tensors and mutate them.

Every function builds its modules with torch's default initialisation (seeded by the
caller's ``torch.manual_seed``) and returns ``(outputs, step, weights)``; see
:mod:`experiments.styles`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def initial_weights(net: nn.Module) -> dict[str, np.ndarray]:
    """A NumPy copy of ``net.state_dict()``: the weights the NNX and jaxnet versions load."""
    return {name: value.detach().numpy().copy() for name, value in net.state_dict().items()}


def mlp_block(x):
    """Seed 003's custom block: ``Linear(20, 256) -> ReLU -> Linear(256, 10)``."""

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(20, 256)
            self.out = nn.Linear(256, 10)

        def forward(self, X):
            return self.out(F.relu(self.hidden(X)))

    net = MLP()
    weights = initial_weights(net)
    x = torch.from_numpy(x)

    @torch.no_grad()
    def forward():
        return net(x)

    return {"y": forward()}, forward, weights


def parameter_tying(x):
    """Seed 003: one ``Linear(8, 8)`` used at positions 2 and 4; its gradients add up."""
    shared = nn.Linear(8, 8)
    net = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1)
    )
    weights = initial_weights(net)
    x = torch.from_numpy(x)

    def grad_step():
        net.zero_grad()
        net(x).sum().backward()
        return shared.weight.grad

    shared_grad = grad_step().clone()
    with torch.no_grad():
        y = net(x)
        net[2].weight[0, 0] = 100.0  # net[4] is the same module: it changes too
        y_after_edit = net(x)
    return {"y": y, "shared_grad": shared_grad, "y_after_edit": y_after_edit}, grad_step, weights


def custom_layers(x):
    """Seed 003's ``CenteredLayer`` (``X - X.mean()``) and ``MyLinear`` (``relu(X W + b)``)."""

    class CenteredLayer(nn.Module):
        def forward(self, X):
            return X - X.mean()

    class MyLinear(nn.Module):
        def __init__(self, in_units, units):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(in_units, units))
            self.bias = nn.Parameter(torch.randn(units))

        def forward(self, X):
            return F.relu(X @ self.weight + self.bias)

    net = nn.Sequential(MyLinear(64, 8), CenteredLayer())
    weights = initial_weights(net)
    x = torch.from_numpy(x)

    @torch.no_grad()
    def forward():
        return net(x)

    centered = CenteredLayer()(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    return {"centered": centered, "y": forward()}, forward, weights


def training_loop(xs, ys):
    """d2l's linear regression: ``Linear(2, 1)``, MSE, SGD lr 0.03, one pass over the batches."""
    net = nn.Linear(2, 1)
    weights = initial_weights(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.03)

    def train_step(x, y):
        loss = F.mse_loss(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    batches = list(zip(torch.from_numpy(xs), torch.from_numpy(ys), strict=True))
    losses = [train_step(x, y).item() for x, y in batches]
    return {"losses": losses, **net.state_dict()}, lambda: train_step(*batches[0]), weights


def gradient_accumulation(xs, ys):
    """One SGD step on the mean gradient of several micro-batches, summed in ``.grad``."""
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    weights = initial_weights(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    micro_batches = list(zip(torch.from_numpy(xs), torch.from_numpy(ys), strict=True))

    def accumulated_step():
        optimizer.zero_grad()
        for x, y in micro_batches:  # each backward() adds into .grad
            (F.mse_loss(net(x), y) / len(micro_batches)).backward()
        optimizer.step()

    accumulated_step()
    grads = {f"grad.{name}": p.grad for name, p in net.named_parameters()}
    return {**grads, **net.state_dict()}, accumulated_step, weights


def lr_schedule(x, y, steps):
    """SGD lr 0.1 with cosine annealing over ``steps`` full-batch steps of ``Linear(3, 1)``."""
    net = nn.Linear(3, 1)
    weights = initial_weights(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def train_step():
        lr = optimizer.param_groups[0]["lr"]  # the lr this step uses
        loss = F.mse_loss(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()  # mutates optimizer.param_groups[0]["lr"]
        return lr

    lrs = [train_step() for _ in range(steps)]
    return {"lr": lrs, **net.state_dict()}, train_step, weights


def mnist_step(x, labels):
    """Seed 001's MNIST MLP: 784-256-64-10, MSE on one-hot, SGD lr 0.01 momentum 0.9."""
    net = nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    weights = initial_weights(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.from_numpy(x), F.one_hot(torch.from_numpy(labels), 10).float()

    def train_step():
        loss = F.mse_loss(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    loss = train_step()
    return {"loss": loss, **net.state_dict()}, train_step, weights


def cnn_step(x, labels):
    """d2l's LeNet (ReLU, max-pool) on 28x28 images: cross-entropy, SGD 0.1 momentum 0.9."""
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip
    weights = initial_weights(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.from_numpy(x), torch.from_numpy(labels)

    def train_step():
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    loss = train_step()
    return {"loss": loss, **net.state_dict()}, train_step, weights


def dropout(x, y):
    """Dropout(0.5) between two Linear layers: its masks, its modes, one training step."""
    net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1))
    weights = initial_weights(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def train_step():
        loss = F.mse_loss(net(x), y)  # masks drawn from the global generator
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    with torch.no_grad():
        net.eval()  # a flag on every module: Dropout is the identity
        eval_y = net(x)
        net.train()
        torch.manual_seed(1)  # the same masks again: re-seed the global generator
        replay = net(x)
        torch.manual_seed(1)
        replay_diff = (net(x) - replay).abs().max()
        redraw_differs = (net(x) != net(x)).any().float()  # the generator moved on
        kept = nn.Dropout(0.5)(torch.ones(1000))
    kept_values = [kept[kept != 0].min(), kept[kept != 0].max()]  # 1 / (1 - p)
    outputs = {"eval_y": eval_y, "replay_diff": replay_diff,
               "redraw_differs": redraw_differs, "kept_values": kept_values}  # fmt: skip
    return outputs, train_step, weights


def batchnorm(xs, ys, x_eval):
    """BatchNorm1d after a Linear: three SGD steps in training mode, then eval."""
    net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    weights = initial_weights(net)  # parameters and buffers (running statistics)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)

    def train_step(x, y):
        net.train()  # batch statistics; the running ones are updated in place
        loss = F.mse_loss(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    batches = list(zip(torch.from_numpy(xs), torch.from_numpy(ys), strict=True))
    losses = [train_step(x, y).item() for x, y in batches]
    net.eval()  # normalise with the running statistics
    with torch.no_grad():
        eval_y = net(torch.from_numpy(x_eval))
    outputs = {"losses": losses, "eval_y": eval_y, **net.state_dict()}
    return outputs, lambda: train_step(*batches[0]), weights
