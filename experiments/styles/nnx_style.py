"""The sections in Flax NNX: modules are objects on JAX, mutated in place, compiled by ``nnx.jit``.

Every function starts from torch's initial ``weights`` (a ``state_dict`` of NumPy arrays),
copied into the ``nnx.Param``s by :func:`load_torch_weights`, and returns
``(outputs, step)``; see :mod:`experiments.styles`. NNX's ``Linear`` stores
``kernel: [in, out]``, the transpose of torch's ``weight: [out, in]``, and
``nnx.Sequential`` keeps its children in ``.layers``; the two helpers below translate.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


def torch_names(model: nnx.Module, state: nnx.State) -> Iterator[tuple[str, nnx.Variable, str]]:
    """``(torch name, variable, layout)`` for every leaf of ``state``, a state of ``model``;
    ``layout`` says how NNX stores a torch weight: ``"linear"`` (``kernel: [in, out]``),
    ``"conv"`` (``kernel: [kh, kw, in, out]``) or ``""`` (as torch)."""
    for path, variable in nnx.to_flat_state(state):
        node, names = model, []
        for part in path[:-1]:
            if not (isinstance(node, nnx.Sequential) and part == "layers"):
                names.append(str(part))
            node = node[part] if isinstance(part, int) else getattr(node, part)
        layout = ""
        if path[-1] == "kernel":
            layout = "conv" if isinstance(node, nnx.Conv) else "linear"
        names.append("weight" if layout else str(path[-1]))
        yield ".".join(names), variable, layout


# torch's weight -> NNX's kernel, and back
_TO_NNX = {"linear": (1, 0), "conv": (2, 3, 1, 0)}
_TO_TORCH = {"linear": (1, 0), "conv": (3, 2, 0, 1)}


def _relayout(value, layout: str, axes: Mapping[str, tuple[int, ...]]):
    return jnp.transpose(value, axes[layout]) if layout else value


def load_torch_weights(model: nnx.Module, weights: Mapping[str, np.ndarray]) -> None:
    """Copy a torch ``state_dict`` into ``model``'s ``nnx.Param``s, in place.

    Every parameter of ``model`` must be in ``weights`` with its (torch-layout) shape.
    """
    for name, variable, layout in torch_names(model, nnx.state(model, nnx.Param)):
        if name not in weights:
            raise ValueError(f"load_torch_weights: no {name!r} in the torch state dict")
        value = _relayout(jnp.asarray(weights[name]), layout, _TO_NNX)
        if value.shape != variable.shape:
            raise ValueError(
                f"load_torch_weights: {name!r} expected shape {variable.shape}, got {value.shape}"
            )
        variable[...] = value


def state_dict(model: nnx.Module, state: nnx.State | None = None) -> dict[str, jax.Array]:
    """``model``'s params (or ``state``, e.g. their gradients) under torch's names and layout."""
    state = nnx.state(model, nnx.Param) if state is None else state
    return {
        name: _relayout(variable[...], layout, _TO_TORCH)
        for name, variable, layout in torch_names(model, state)
    }


def mlp_block(weights, x):
    """Seed 003's custom block: ``Linear(20, 256) -> ReLU -> Linear(256, 10)``."""

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(20, 256, rngs=rngs)
            self.out = nnx.Linear(256, 10, rngs=rngs)

        def __call__(self, X):
            return self.out(nnx.relu(self.hidden(X)))

    net = MLP(nnx.Rngs(0))
    load_torch_weights(net, weights)
    x = jnp.asarray(x)
    forward = nnx.jit(lambda net, x: net(x))
    return {"y": forward(net, x)}, lambda: forward(net, x)


def parameter_tying(weights, x):
    """Seed 003: one ``Linear(8, 8)`` used at positions 2 and 4; its gradients add up."""
    rngs = nnx.Rngs(0)
    shared = nnx.Linear(8, 8, rngs=rngs)
    net = nnx.Sequential(
        nnx.Linear(4, 8, rngs=rngs), nnx.relu, shared, nnx.relu, shared, nnx.relu,
        nnx.Linear(8, 1, rngs=rngs),
    )  # fmt: skip
    load_torch_weights(net, weights)
    x = jnp.asarray(x)
    grad_fn = nnx.jit(nnx.grad(lambda net, x: net(x).sum()))
    grads = grad_fn(net, x)  # the shared kernel appears once, under layers[2]
    y = net(x)
    shared.kernel[0, 0] = 100.0  # net.layers[4] is the same object: it changes too
    outputs = {"y": y, "shared_grad": state_dict(net, grads)["2.weight"], "y_after_edit": net(x)}
    return outputs, lambda: grad_fn(net, x)


def custom_layers(weights, x):
    """Seed 003's ``CenteredLayer`` (``X - X.mean()``) and ``MyLinear`` (``relu(X W + b)``)."""

    class CenteredLayer(nnx.Module):
        def __call__(self, X):
            return X - X.mean()

    class MyLinear(nnx.Module):
        def __init__(self, in_units, units, rngs):
            self.weight = nnx.Param(
                jax.random.normal(rngs.params(), (in_units, units), jnp.float32)
            )
            self.bias = nnx.Param(jax.random.normal(rngs.params(), (units,), jnp.float32))

        def __call__(self, X):
            return jax.nn.relu(X @ self.weight + self.bias[None, :])

    net = nnx.Sequential(MyLinear(64, 8, nnx.Rngs(0)), CenteredLayer())
    load_torch_weights(net, weights)
    x = jnp.asarray(x)
    forward = nnx.jit(lambda net, x: net(x))
    centered = CenteredLayer()(jnp.array([1.0, 2.0, 3.0, 4.0, 5.0], jnp.float32))
    return {"centered": centered, "y": forward(net, x)}, lambda: forward(net, x)


def training_loop(weights, xs, ys):
    """d2l's linear regression: ``Linear(2, 1)``, MSE, SGD lr 0.03, one pass over the batches."""
    net = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    load_torch_weights(net, weights)
    optimizer = nnx.Optimizer(net, optax.sgd(0.03), wrt=nnx.Param)

    @nnx.jit
    def train_step(net, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda net: jnp.mean((net(x) - y) ** 2))(net)
        optimizer.update(net, grads)  # mutates net's params and the optimizer's state
        return loss

    batches = list(zip(jnp.asarray(xs), jnp.asarray(ys), strict=True))
    losses = [train_step(net, optimizer, x, y) for x, y in batches]
    return {"losses": losses, **state_dict(net)}, lambda: train_step(net, optimizer, *batches[0])


def gradient_accumulation(weights, xs, ys):
    """One SGD step on the mean gradient of several micro-batches, summed explicitly."""
    rngs = nnx.Rngs(0)
    net = nnx.Sequential(nnx.Linear(8, 16, rngs=rngs), nnx.relu, nnx.Linear(16, 1, rngs=rngs))
    load_torch_weights(net, weights)
    optimizer = nnx.Optimizer(net, optax.sgd(0.1), wrt=nnx.Param)
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)  # (micro-batches, B, ...)

    def loss_fn(net, x, y):
        return jnp.mean((net(x) - y) ** 2) / len(xs)

    @nnx.jit
    def accumulated_step(net, optimizer, xs, ys):
        per_batch = [nnx.grad(loss_fn)(net, x, y) for x, y in zip(xs, ys, strict=True)]
        grads = jax.tree.map(lambda *g: sum(g), *per_batch)
        optimizer.update(net, grads)
        return grads

    grads = accumulated_step(net, optimizer, xs, ys)
    outputs = {**{f"grad.{k}": g for k, g in state_dict(net, grads).items()}, **state_dict(net)}
    return outputs, lambda: accumulated_step(net, optimizer, xs, ys)


def lr_schedule(weights, x, y, steps):
    """SGD lr 0.1 with cosine annealing over ``steps`` full-batch steps of ``Linear(3, 1)``."""
    net = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    load_torch_weights(net, weights)
    schedule = optax.cosine_decay_schedule(0.1, decay_steps=steps)  # torch's, up to T_max
    optimizer = nnx.Optimizer(net, optax.sgd(schedule), wrt=nnx.Param)
    x, y = jnp.asarray(x), jnp.asarray(y)

    @nnx.jit
    def train_step(net, optimizer):
        grads = nnx.grad(lambda net: jnp.mean((net(x) - y) ** 2))(net)
        optimizer.update(net, grads)

    lrs = []
    for _ in range(steps):
        lrs.append(schedule(optimizer.step[...]))  # the lr this step uses
        train_step(net, optimizer)
    return {"lr": lrs, **state_dict(net)}, lambda: train_step(net, optimizer)


def mnist_step(weights, x, labels):
    """Seed 001's MNIST MLP: 784-256-64-10, MSE on one-hot, SGD lr 0.01 momentum 0.9."""
    rngs = nnx.Rngs(0)
    net = nnx.Sequential(
        nnx.Linear(784, 256, rngs=rngs), nnx.relu, nnx.Linear(256, 64, rngs=rngs), nnx.relu,
        nnx.Linear(64, 10, rngs=rngs),
    )  # fmt: skip
    load_torch_weights(net, weights)
    optimizer = nnx.Optimizer(net, optax.sgd(0.01, momentum=0.9), wrt=nnx.Param)
    x, y = jnp.asarray(x), jax.nn.one_hot(labels, 10, dtype=jnp.float32)

    @nnx.jit
    def train_step(net, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda net: jnp.mean((net(x) - y) ** 2))(net)
        optimizer.update(net, grads)
        return loss

    loss = train_step(net, optimizer, x, y)
    return {"loss": loss, **state_dict(net)}, lambda: train_step(net, optimizer, x, y)


def cnn_step(weights, x, labels):
    """d2l's LeNet (ReLU, max-pool) on 28x28 images: cross-entropy, SGD 0.1 momentum 0.9."""

    class LeNet(nnx.Module):
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(1, 6, (5, 5), padding=2, rngs=rngs)
            self.conv2 = nnx.Conv(6, 16, (5, 5), padding="VALID", rngs=rngs)
            self.fc1 = nnx.Linear(400, 120, rngs=rngs)
            self.fc2 = nnx.Linear(120, 84, rngs=rngs)
            self.fc3 = nnx.Linear(84, 10, rngs=rngs)

        def __call__(self, x):  # (N, 1, 28, 28), torch's layout
            x = jnp.transpose(x, (0, 2, 3, 1))  # NNX convolves channels-last: (N, H, W, C)
            x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), strides=(2, 2))
            x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))
            x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch's flatten order
            return self.fc3(nnx.relu(self.fc2(nnx.relu(self.fc1(x)))))

    net = LeNet(nnx.Rngs(0))
    load_torch_weights(net, {_NNX_NAMES.get(k, k): v for k, v in weights.items()})
    optimizer = nnx.Optimizer(net, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
    x, y = jnp.asarray(x), jnp.asarray(labels)

    @nnx.jit
    def train_step(net, optimizer, x, y):
        def loss_fn(net):
            return optax.softmax_cross_entropy_with_integer_labels(net(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(net)
        optimizer.update(net, grads)
        return loss

    loss = train_step(net, optimizer, x, y)
    names = {v: k for k, v in _NNX_NAMES.items()}
    outputs = {names.get(k, k): v for k, v in state_dict(net).items()}
    return {"loss": loss, **outputs}, lambda: train_step(net, optimizer, x, y)


# The LeNet's torch names (Sequential positions) -> the attribute names of the NNX module.
_NNX_NAMES = {
    f"{i}.{p}": f"{n}.{p}"
    for i, n in ((0, "conv1"), (3, "conv2"), (7, "fc1"), (9, "fc2"), (11, "fc3"))
    for p in ("weight", "bias")
}


def dropout(weights, x, y):
    """Dropout(0.5) between two Linear layers: its masks, its modes, one training step."""
    rngs = nnx.Rngs(params=0, dropout=1)  # the dropout stream lives in the Dropout layer
    net = nnx.Sequential(nnx.Linear(20, 64, rngs=rngs), nnx.relu, nnx.Dropout(0.5, rngs=rngs),
                         nnx.Linear(64, 1, rngs=rngs))  # fmt: skip
    load_torch_weights(net, weights)
    optimizer = nnx.Optimizer(net, optax.sgd(0.1), wrt=nnx.Param)
    x, y = jnp.asarray(x), jnp.asarray(y)

    @nnx.jit
    def train_step(net, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda net: jnp.mean((net(x) - y) ** 2))(net)
        optimizer.update(net, grads)  # the dropout stream advanced inside net(x)
        return loss

    net.eval()  # sets deterministic=True on every Dropout
    eval_y = net(x)
    net.train()
    replay_diff = jnp.abs(nnx.clone(net)(x) - nnx.clone(net)(x)).max()  # copies of the stream
    redraw_differs = jnp.any(net(x) != net(x)).astype(jnp.float32)  # the stream moved on
    kept = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=2))(jnp.ones(1000))
    kept_values = [kept[kept != 0].min(), kept[kept != 0].max()]  # 1 / (1 - p)
    outputs = {"eval_y": eval_y, "replay_diff": replay_diff,
               "redraw_differs": redraw_differs, "kept_values": kept_values}  # fmt: skip
    return outputs, lambda: train_step(net, optimizer, x, y)


def batchnorm(weights, xs, ys, x_eval):
    """BatchNorm1d after a Linear: three SGD steps in training mode, then eval."""

    class BatchNorm1d(nnx.Module):  # torch's numbers (nnx.BatchNorm keeps the biased var)
        def __init__(self, n, momentum=0.1, eps=1e-5):
            self.weight, self.bias = nnx.Param(jnp.ones(n)), nnx.Param(jnp.zeros(n))
            self.running_mean = nnx.BatchStat(jnp.zeros(n))
            self.running_var = nnx.BatchStat(jnp.ones(n))
            self.num_batches_tracked = nnx.BatchStat(jnp.array(0))
            self.momentum, self.eps, self.use_running_average = momentum, eps, False

        def __call__(self, x):
            if self.use_running_average:  # set by net.eval()
                mean, var = self.running_mean[...], self.running_var[...]
            else:
                mean, var, m, n = x.mean(0), x.var(0), self.momentum, x.shape[0]
                self.running_mean[...] = (1 - m) * self.running_mean[...] + m * mean
                self.running_var[...] = (1 - m) * self.running_var[...] + m * var * n / (n - 1)
                self.num_batches_tracked[...] += 1
            scale = self.weight[...] / jnp.sqrt(var + self.eps)
            return (x - mean[None, :]) * scale[None, :] + self.bias[None, :]

    rngs = nnx.Rngs(0)
    net = nnx.Sequential(nnx.Linear(8, 16, rngs=rngs), BatchNorm1d(16), nnx.relu,
                         nnx.Linear(16, 1, rngs=rngs))  # fmt: skip
    load_torch_weights(net, weights)  # the running statistics start at torch's values
    optimizer = nnx.Optimizer(net, optax.sgd(0.1), wrt=nnx.Param)

    @nnx.jit
    def train_step(net, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda net: jnp.mean((net(x) - y) ** 2))(net)
        optimizer.update(net, grads)  # the BatchStats were updated in place by net(x)
        return loss

    batches = list(zip(jnp.asarray(xs), jnp.asarray(ys), strict=True))
    losses = [train_step(net, optimizer, x, y) for x, y in batches]
    net.eval()
    eval_y = net(jnp.asarray(x_eval))
    net.train()
    stats = state_dict(net, nnx.state(net, nnx.BatchStat))
    outputs = {"losses": losses, "eval_y": eval_y, **state_dict(net), **stats}
    return outputs, lambda: train_step(net, optimizer, *batches[0])
