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

from jaxnet import autograd, datasets, nn, optim, train
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
    batch = (jnp.asarray(x), datasets.one_hot(labels, 10))

    def loss_fn(params, batch):
        x, y = batch
        return F.mse_loss(net.apply(params, x), y)

    train_step = train.make_train_step(loss_fn, optimizer)  # jitted; donates the state
    state = train.TrainState.create(params, optimizer, jax.random.key(0))
    state, metrics = train_step(state, batch)
    outputs = {"loss": metrics["loss"], **state.params}

    def next_step():  # each call consumes the state and returns the next one
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
