"""The sections in jaxnet: layers are descriptions, parameters are a pytree, steps are pure.

Every function starts from torch's initial ``weights`` (a ``state_dict`` of NumPy arrays,
loaded with the model's ``load_state_dict``: same names, same layout) and returns
``(outputs, step)``; see :mod:`experiments.styles`. :func:`ensemble` is the extra
demonstration: a transformation of the model itself, ``jax.vmap`` over ``init`` and
``apply``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxnet import autograd, nn, optim, train
from jaxnet.nn import functional as F


def mlp_block(weights, x):
    """Seed 003's custom block: ``Linear(20, 256) -> ReLU -> Linear(256, 10)``."""

    class MLP(nn.Module):
        def __init__(self):
            self.hidden = nn.Linear(20, 256)
            self.out = nn.Linear(256, 10)

        def forward(self, scope, X):
            return self.out(scope, jax.nn.relu(self.hidden(scope, X)))

    net = MLP()
    params = net.load_state_dict(weights).params
    x = jnp.asarray(x)
    forward = jax.jit(net.apply)
    return {"y": forward(params, x)}, lambda: forward(params, x)


def parameter_tying(weights, x):
    """Seed 003: one ``Linear(8, 8)`` used at positions 2 and 4; its gradients add up."""
    shared = nn.Linear(8, 8)
    net = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1)
    )
    # The tied layer is stored once, under "2"; torch's alias "4.*" is checked and skipped.
    params = net.load_state_dict(weights).params
    x = jnp.asarray(x)
    forward = jax.jit(net.apply)
    grad_fn = jax.jit(jax.grad(lambda params, x: net.apply(params, x).sum()))
    grads = grad_fn(params, x)  # grads["2"]: the sum over both uses
    edited = {**params, "2": {**params["2"], "weight": params["2"]["weight"].at[0, 0].set(100.0)}}
    outputs = {
        "y": forward(params, x),
        "shared_grad": grads["2"]["weight"],
        "y_after_edit": forward(edited, x),
    }
    return outputs, lambda: grad_fn(params, x)


def custom_layers(weights, x):
    """Seed 003's ``CenteredLayer`` (``X - X.mean()``) and ``MyLinear`` (``relu(X W + b)``)."""
    centered_layer = nn.Lambda(lambda X: X - X.mean(), name="CenteredLayer")

    class MyLinear(nn.Module):
        def __init__(self, in_units, units):
            self.weight = nn.Parameter((in_units, units), jax.random.normal)
            self.bias = nn.Parameter((units,), jax.random.normal)

        def forward(self, scope, X):
            return jax.nn.relu(X @ scope.weight + scope.bias[None, :])

    net = nn.Sequential(MyLinear(64, 8), centered_layer)
    params = net.load_state_dict(weights).params
    x = jnp.asarray(x)
    forward = jax.jit(net.apply)
    centered = centered_layer.apply({}, jnp.array([1.0, 2.0, 3.0, 4.0, 5.0], jnp.float32))
    return {"centered": centered, "y": forward(params, x)}, lambda: forward(params, x)


def training_loop(weights, xs, ys):
    """d2l's linear regression: ``Linear(2, 1)``, MSE, SGD lr 0.03, one pass over the batches."""
    net = nn.Linear(2, 1)
    params = net.load_state_dict(weights).params
    optimizer = optim.SGD(lr=0.03)
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: F.mse_loss(net.apply(p, x), y))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    batches = list(zip(jnp.asarray(xs), jnp.asarray(ys), strict=True))
    losses = []
    for x, y in batches:
        params, opt_state, loss = train_step(params, opt_state, x, y)
        losses.append(loss)
    return {"losses": losses, **params}, lambda: train_step(params, opt_state, *batches[0])


def gradient_accumulation(weights, xs, ys):
    """One SGD step on the mean gradient of several micro-batches, summed explicitly."""
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    params = net.load_state_dict(weights).params
    optimizer = optim.SGD(lr=0.1)
    opt_state = optimizer.init(params)
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)  # (micro-batches, B, ...)

    def loss_fn(params, batch):
        x, y = batch
        return F.mse_loss(net.apply(params, x), y) / len(xs)

    @jax.jit
    def accumulated_step(params, opt_state, xs, ys):
        grads = autograd.accumulate_grads(jax.grad(loss_fn), params, (xs, ys))  # a sum
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, grads

    new_params, _, grads = accumulated_step(params, opt_state, xs, ys)
    return {"grad": grads, **new_params}, lambda: accumulated_step(params, opt_state, xs, ys)


def lr_schedule(weights, x, y, steps):
    """SGD lr 0.1 with cosine annealing over ``steps`` full-batch steps of ``Linear(3, 1)``."""
    net = nn.Linear(3, 1)
    params = net.load_state_dict(weights).params
    schedule = optim.lr_scheduler.CosineAnnealingLR(0.1, T_max=steps)  # step -> lr, pure
    optimizer = optim.SGD(lr=schedule)  # reads the step count from its own state
    opt_state = optimizer.init(params)
    x, y = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def train_step(params, opt_state):
        grads = jax.grad(lambda p: F.mse_loss(net.apply(p, x), y))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for _ in range(steps):
        params, opt_state = train_step(params, opt_state)
    lrs = schedule(jnp.arange(steps))  # the whole schedule, without running anything
    return {"lr": lrs, **params}, lambda: train_step(params, opt_state)


def mnist_step(weights, x, labels):
    """Seed 001's MNIST MLP: 784-256-64-10, MSE on one-hot, SGD lr 0.01 momentum 0.9."""
    net = nn.MLP(784, [256, 64], 10)
    params = net.load_state_dict(weights).params
    optimizer = optim.SGD(lr=0.01, momentum=0.9)
    batch = (jnp.asarray(x), F.one_hot(labels, 10).astype(jnp.float32))

    def loss_fn(params, batch):
        x, y = batch
        return F.mse_loss(net.apply(params, x), y)

    train_step = jax.jit(train.train_step(loss_fn), donate_argnums=0)  # donates the state
    state = train.TrainState.create(params, optimizer, jax.random.key(0))
    state, metrics = train_step(state, batch)
    outputs = {"loss": metrics["loss"], **state.params}

    def next_step():  # each call consumes the state and returns the next one
        nonlocal state
        state, metrics = train_step(state, batch)
        return metrics["loss"]

    return outputs, next_step


def cnn_step(weights, x, labels):
    """d2l's LeNet (ReLU, max-pool) on 28x28 images: cross-entropy, SGD 0.1 momentum 0.9."""
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip
    params = net.load_state_dict(weights).params  # torch's [out, in, kh, kw] kernels as they are
    optimizer = optim.SGD(lr=0.1, momentum=0.9)
    batch = (jnp.asarray(x), jnp.asarray(labels))  # NCHW, as torch

    def loss_fn(params, batch):
        x, y = batch
        return F.cross_entropy(net.apply(params, x), y)

    train_step = jax.jit(train.train_step(loss_fn), donate_argnums=0)
    state = train.TrainState.create(params, optimizer, jax.random.key(0))
    state, metrics = train_step(state, batch)
    outputs = {"loss": metrics["loss"], **state.params}

    def next_step():
        nonlocal state
        state, metrics = train_step(state, batch)
        return metrics["loss"]

    return outputs, next_step


def ensemble(net, x, members=8):
    """``members`` independently initialised copies of ``net``, applied to ``x`` in one call."""
    keys = jax.random.split(jax.random.key(0), members)
    params = jax.vmap(net.init)(keys)  # every leaf gains a leading axis: (members, ...)
    logits = jax.vmap(net.apply, in_axes=(0, None))(params, x)  # (members, B, out)
    return keys, params, logits


def dropout(weights, x, y):
    """Dropout(0.5) between two Linear layers: its masks, its modes, one training step."""
    net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1))
    params = net.load_state_dict(weights).params
    optimizer = optim.SGD(lr=0.1)
    opt_state = optimizer.init(params)
    x, y = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def train_step(params, opt_state, key):
        loss_fn = lambda p: F.mse_loss(net.apply(p, x, key=key), y)  # noqa: E731
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    key = jax.random.key(1)
    eval_y = net.apply(params, x, training=False)  # the mode is an argument of the call
    replay_diff = jnp.abs(net.apply(params, x, key=key) - net.apply(params, x, key=key)).max()
    next_keys = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)  # a new key per step
    redrawn = [net.apply(params, x, key=k) for k in next_keys]
    redraw_differs = jnp.any(redrawn[0] != redrawn[1]).astype(jnp.float32)
    kept = nn.Dropout(0.5).apply({}, jnp.ones(1000), key=key)
    kept_values = [kept[kept != 0].min(), kept[kept != 0].max()]  # 1 / (1 - p)
    outputs = {"eval_y": eval_y, "replay_diff": replay_diff,
               "redraw_differs": redraw_differs, "kept_values": kept_values}  # fmt: skip
    return outputs, lambda: train_step(params, opt_state, next_keys[0])


def batchnorm(weights, xs, ys, x_eval):
    """BatchNorm1d after a Linear: three SGD steps in training mode, then eval."""
    net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    loaded = net.load_state_dict(weights)  # params, and buffers: the running statistics
    params, buffers = loaded.params, loaded.buffers
    optimizer = optim.SGD(lr=0.1)
    opt_state = optimizer.init(params)

    def loss_fn(params, buffers, x, y):
        y_hat, buffers = net.apply(params, x, buffers=buffers)  # training: new buffers out
        return F.mse_loss(y_hat, y), buffers

    @jax.jit
    def train_step(params, buffers, opt_state, x, y):
        (loss, buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, buffers, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), buffers, opt_state, loss

    batches = list(zip(jnp.asarray(xs), jnp.asarray(ys), strict=True))
    losses = []
    for x, y in batches:
        params, buffers, opt_state, loss = train_step(params, buffers, opt_state, x, y)
        losses.append(loss)
    eval_y, _ = net.apply(params, jnp.asarray(x_eval), buffers=buffers, training=False)
    outputs = {"losses": losses, "eval_y": eval_y, **net.state_dict(params, buffers)}
    return outputs, lambda: train_step(params, buffers, opt_state, *batches[0])
