"""Train-step speed side by side: PyTorch, torch.compile, jaxnet, raw JAX, Flax NNX, Equinox.

Measures, in one process and in interleaved rounds, the seed's MNIST MLP train step
(784-256-64-10, ReLU, MSE on one-hot targets, SGD lr 0.01 momentum 0.9) at batch 64 and
512 on MNIST-shaped data; the train steps of two CNNs at batch 128 (cross-entropy, SGD lr
0.05 momentum 0.9): d2l's LeNet (``experiments.lenet``) and the small ResNet with
BatchNorm of ``experiments.resnet``, each as PyTorch eager, torch.compile, jaxnet step,
jaxnet compiled epoch and hand-written raw JAX (``lax.conv_general_dilated``; LeNet's is
``experiments.cnn_profile``'s baseline with ``lax.reduce_window`` max-pooling); and the
seed's linear-regression gradient-descent loop (100 points, 1000 steps). Prints medians,
ratios to PyTorch eager (the median over rounds of the ratio within each round) and the
fraction of the machine's measured float32 matmul throughput (the roofline) each
contender reaches (convolution and Linear FLOPs counted from the layer shapes);
writes ``benchmark.json`` and ``benchmark.md`` to the output directory. It needs PyTorch
(no ``--no-torch``); a progress bar on stderr counts the timing rounds (``--no-progress``).

    python -m experiments.benchmark            # full run, about ten minutes
    python -m experiments.benchmark --fast     # tiny configuration (the CI smoke test)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import itertools
import json
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from experiments import _common, lenet, resnet
from jaxnet import nn, optim, train
from jaxnet.nn import functional as F

SIZES = (784, 256, 64, 10)
LR, MOMENTUM = 0.01, 0.9


def train_step_flops(forward: list[int]) -> int:
    """FLOPs of one train step from each layer's forward FLOPs (in order): the forward,
    the weight gradients (as many again), and the input gradients of every layer but the
    first (the data needs none)."""
    return 3 * sum(forward) - forward[0]


def mlp_flops(batch: int) -> int:
    """Matmul FLOPs of one train step of the seed's MLP."""
    return train_step_flops([2 * batch * i * o for i, o in itertools.pairwise(SIZES)])


def cnn_flops(model, batch: int) -> int:
    """Convolution and Linear FLOPs of one train step of the torch ``model`` on
    ``(batch, 1, 28, 28)`` images, counted from each layer's output shape:
    ``2 * N * Cout * Hout * Wout * Cin / groups * kh * kw`` for a convolution and
    ``2 * N * in * out`` for a Linear (BatchNorm, pooling and activations not counted)."""
    import torch

    forward = []

    def count(layer, inputs, output):
        if isinstance(layer, torch.nn.Conv2d):
            kh, kw = layer.kernel_size
            per_output = layer.in_channels // layer.groups * kh * kw
            forward.append(2 * output.numel() * per_output)
        elif isinstance(layer, torch.nn.Linear):
            forward.append(2 * output.numel() * layer.in_features)

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]  # fmt: skip
    with torch.no_grad():
        model.eval()(torch.zeros(batch, 1, 28, 28))
    model.train()
    for hook in hooks:
        hook.remove()
    return train_step_flops(forward)


def matmul_roofline(n: int = 1024, repeats: int = 20) -> float:
    """Measured float32 GFLOP/s of a large square matmul (XLA's, all cores): the fastest
    of ``repeats`` runs, i.e. what the machine can do, not what a noisy moment gave."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - tic)
    return 2 * n**3 / min(times) / 1e9


# ---- data shared by every contender ---------------------------------------------------


def mnist_shaped(
    batch: int, steps: int, seed: int = 0, image_shape: tuple[int, ...] = (784,),
    one_hot: bool = True,
):  # fmt: skip
    """``steps`` batches of normalised-looking images of ``image_shape`` and one-hot
    targets (or int32 labels without ``one_hot``), as host arrays."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps * batch, *image_shape)).astype(np.float32)
    labels = rng.integers(0, 10, steps * batch).astype(np.int32)
    return x, (np.eye(10, dtype=np.float32)[labels] if one_hot else labels)


# ---- contenders: each returns run(k) that does k train steps and waits for them -------


def torch_eager(
    model, loss_fn: Callable, x, y, batch: int, lr: float = LR, compiled: bool = False
) -> Callable[[int], None]:
    """Train steps of the torch ``model`` (trained in place) on ``loss_fn(output, y)``."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)
    xs = torch.from_numpy(x).split(batch)
    targets = torch.from_numpy(y)
    ys = (targets if targets.is_floating_point() else targets.long()).split(batch)

    def step(xb, yb):
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    if compiled:
        step = torch.compile(step)

    def run(k: int) -> None:
        for i in range(k):
            step(xs[i % len(xs)], ys[i % len(ys)])

    return run


def jaxnet_contenders(
    loss_fn: Callable, params, x, y, batch: int, lr: float = LR, buffers=None
) -> dict[str, Callable[[int], None]]:
    """jaxnet's train step and compiled epoch on ``loss_fn`` (``has_state`` when the model
    has ``buffers``), both from ``params``."""
    opt = optim.SGD(lr, momentum=MOMENTUM)
    has_state = buffers is not None
    data = jax.device_put((x, y))
    steps = len(x) // batch
    batches = [
        jax.tree.map(lambda a, i=i: a[i * batch : (i + 1) * batch], data) for i in range(steps)
    ]
    index_batches = jnp.arange(steps * batch, dtype=jnp.int32).reshape(steps, batch)

    pure_step = train.train_step(loss_fn, has_state=has_state)
    step = jax.jit(pure_step, donate_argnums=0)
    loop = jax.jit(train.train_loop(pure_step), donate_argnums=0)
    holder = {kind: train.TrainState.create(_copy(params), opt, jax.random.key(0),
                                            _copy(buffers))
              for kind in ("step", "loop")}  # fmt: skip

    def run_step(k: int) -> None:
        state = holder["step"]
        for i in range(k):
            state, _ = step(state, batches[i % steps])
        holder["step"] = jax.block_until_ready(state)

    def run_loop(k: int) -> None:  # k is a multiple of the epoch length
        state = holder["loop"]
        for _ in range(k // steps):
            state, _ = loop(state, data, index_batches)
        holder["loop"] = jax.block_until_ready(state)

    return {"jaxnet step": run_step, "jaxnet epoch": run_loop}


def _copy(tree):
    """A copy of a pytree of arrays (each contender donates its own)."""
    return jax.tree.map(jnp.copy, tree)


def raw_sgd_step(loss_fn: Callable, lr: float) -> Callable:
    """Hand-written ``torch.optim.SGD(lr, momentum)`` step, not jitted:
    ``step((params, velocity, buffers), x, y) -> (carry, loss)`` for
    ``loss_fn(params, buffers, x, y) -> (loss, new_buffers)``."""

    def step(carry, xb, yb):
        params, velocity, buffers = carry
        (loss, buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, buffers, xb, yb)
        velocity = jax.tree.map(lambda v, g: MOMENTUM * v + g, velocity, grads)
        params = jax.tree.map(lambda p, v: p - lr * v, params, velocity)
        return (params, velocity, buffers), loss

    return step


def raw_mlp() -> tuple[Callable, list]:
    """The seed's MLP written by hand in JAX (no jaxnet, no optax): ``(loss_fn, params)``."""
    keys = jax.random.split(jax.random.key(0), 3)
    params = []
    for key, n_in, n_out in zip(keys, SIZES[:-1], SIZES[1:], strict=True):
        bound = 1 / np.sqrt(n_in)
        kw, kb = jax.random.split(key)
        params.append((jax.random.uniform(kw, (n_out, n_in), jnp.float32, -bound, bound),
                       jax.random.uniform(kb, (n_out,), jnp.float32, -bound, bound)))  # fmt: skip

    def loss_fn(params, buffers, xb, yb):
        h = xb
        for i, (w, b) in enumerate(params):
            h = h @ w.T + b[None, :]
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        return jnp.mean((h - yb) ** 2), buffers

    return loss_fn, params


def raw_jax_contenders(
    loss_fn: Callable, params, x, y, batch: int, lr: float = LR, buffers=None
) -> dict[str, Callable[[int], None]]:
    """A hand-written jitted step (:func:`raw_sgd_step`) called from Python, and the epoch
    as one ``lax.scan`` over shuffled index batches gathered on the device."""
    update = raw_sgd_step(loss_fn, lr)
    step = jax.jit(update, donate_argnums=0)
    xd, yd = jax.device_put(x), jax.device_put(y)
    steps = len(x) // batch

    @jax.jit
    def epoch(carry, xd, yd, index_batches):
        def body(carry, indices):
            return update(carry, xd[indices], yd[indices])[0], None

        return jax.lax.scan(body, carry, index_batches)[0]

    batches = [(xd[i * batch : (i + 1) * batch], yd[i * batch : (i + 1) * batch])
               for i in range(steps)]  # fmt: skip
    index_batches = jnp.arange(steps * batch, dtype=jnp.int32).reshape(steps, batch)
    start = (params, jax.tree.map(jnp.zeros_like, params), buffers or {})
    holder = {"step": _copy(start), "loop": _copy(start)}

    def run_step(k: int) -> None:
        carry = holder["step"]
        for i in range(k):
            carry, _ = step(carry, *batches[i % steps])
        holder["step"] = jax.block_until_ready(carry)

    def run_loop(k: int) -> None:
        carry = holder["loop"]
        for _ in range(k // steps):
            carry = epoch(carry, xd, yd, index_batches)
        holder["loop"] = jax.block_until_ready(carry)

    return {"raw JAX step": run_step, "raw JAX epoch": run_loop}


def flax_nnx(x, y, batch: int) -> Callable[[int], None]:
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(784, 256, rngs=rngs)
            self.l2 = nnx.Linear(256, 64, rngs=rngs)
            self.l3 = nnx.Linear(64, 10, rngs=rngs)

        def __call__(self, x):
            return self.l3(nnx.relu(self.l2(nnx.relu(self.l1(x)))))

    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(LR, momentum=MOMENTUM), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, xb, yb):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(xb) - yb) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    steps = len(x) // batch
    batches = [jax.device_put((x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]))
               for i in range(steps)]  # fmt: skip

    def run(k: int) -> None:
        for i in range(k):
            loss = step(model, optimizer, *batches[i % steps])
        jax.block_until_ready(loss)

    return run


def equinox(x, y, batch: int) -> Callable[[int], None]:
    import equinox as eqx

    keys = jax.random.split(jax.random.key(0), 3)
    model = eqx.nn.Sequential([
        eqx.nn.Linear(784, 256, key=keys[0]), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Linear(256, 64, key=keys[1]), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Linear(64, 10, key=keys[2]),
    ])  # fmt: skip
    tx = optax.sgd(LR, momentum=MOMENTUM)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit(donate="all-except-first")
    def step(xb, model, opt_state, yb):
        def loss_fn(m):
            return jnp.mean((jax.vmap(m)(xb) - yb) ** 2)

        grads = eqx.filter_grad(loss_fn)(model)
        updates, opt_state = tx.update(grads, opt_state, model)
        return eqx.apply_updates(model, updates), opt_state

    steps = len(x) // batch
    batches = [jax.device_put((x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]))
               for i in range(steps)]  # fmt: skip
    holder = {"state": (model, opt_state)}

    def run(k: int) -> None:
        model, opt_state = holder["state"]
        for i in range(k):
            xb, yb = batches[i % steps]
            model, opt_state = step(xb, model, opt_state, yb)
        holder["state"] = jax.block_until_ready((model, opt_state))

    return run


# ---- the seed's linear-regression gradient descent ------------------------------------


def regression_data(n: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    y = (2.0 * x + 1.0 + 0.1 * rng.standard_normal((n, 1))).astype(np.float32)
    return x, y


def gd_torch(x, y, steps: int, lr: float = 0.1) -> Callable[[int], None]:
    import torch

    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def run(k: int) -> None:
        w = torch.zeros(1, requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        for _ in range(k):
            loss = ((w * tx + b - ty) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w -= lr * w.grad
                b -= lr * b.grad
            w.grad.zero_()
            b.grad.zero_()

    return run


def gd_jaxnet(x, y, steps: int, lr: float = 0.1, unroll: int = 1) -> Callable[[int], None]:
    """The whole descent is one compiled call of jaxnet's full-batch train loop."""
    net = nn.Linear(1, 1)
    opt = optim.SGD(lr)

    def loss_fn(params, batch):
        return F.mse_loss(net.apply(params, batch[0]), batch[1])

    loop = jax.jit(
        functools.partial(train.train_loop(train.train_step(loss_fn), unroll=unroll), steps=steps),
        donate_argnums=0,
    )
    data = jax.device_put((x, y))
    zeros = {"weight": jnp.zeros((1, 1), jnp.float32), "bias": jnp.zeros((1,), jnp.float32)}

    holder = {"state": train.TrainState.create(zeros, opt, jax.random.key(0))}

    def run(k: int) -> None:  # the descent goes on from where the last run stopped
        state = holder["state"]
        for _ in range(k // steps):
            state, _ = loop(state, data)
        holder["state"] = jax.block_until_ready(state)

    return run


# ---- measurement ----------------------------------------------------------------------


def measure(
    contenders: dict[str, Callable[[int], None]],
    k: int,
    rounds: int,
    desc: str = "timing",
    progress: bool = True,
    optional: frozenset[str] | set[str] = frozenset(),
) -> dict:
    """Median seconds per step of each contender, over interleaved rounds of ``k`` steps.

    A tqdm bar on stderr (off with ``progress=False``) counts the first calls, which
    compile, and then the rounds. A contender named in ``optional`` whose first call
    raises (torch.compile without a working compiler) is left out of the rounds and
    reported as ``{"unavailable": "<the error>"}``.
    """
    first, unavailable = {}, {}
    with tqdm(total=len(contenders) + rounds, desc=desc, unit="round", disable=not progress,
              leave=False) as bar:  # fmt: skip
        for name, run in contenders.items():
            bar.set_postfix_str(f"first call: {name}")
            tic = time.perf_counter()
            try:
                run(k)  # compiles
            except Exception as error:
                if name not in optional:
                    raise
                unavailable[name] = {"unavailable": f"{type(error).__name__}: {error}"[:300]}
            first[name] = time.perf_counter() - tic
            bar.update()
        names = [name for name in contenders if name not in unavailable]
        bar.set_postfix_str("")
        samples: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            for name in _common.round_order(names, r):
                tic = time.perf_counter()
                contenders[name](k)
                samples[name].append((time.perf_counter() - tic) / k)
            bar.update()
    timed = {name: {"median_s": statistics.median(s), "samples_s": s, "first_call_s": first[name]}
             for name, s in samples.items()}  # fmt: skip
    return {name: timed.get(name) or unavailable[name] for name in contenders}


def first_step_compile_seconds(batch: int) -> float:
    """Wall time of the first call of a fresh jaxnet train step (tracing + compiling)."""
    net = nn.MLP(784, [256, 64], 10)
    opt = optim.SGD(LR, momentum=MOMENTUM)
    step = jax.jit(train.train_step(lambda p, b: F.mse_loss(net.apply(p, b[0]), b[1])))
    state = train.TrainState.create(net.init(jax.random.key(1)), opt, jax.random.key(0))
    x, y = mnist_shaped(batch, 1, seed=1)
    tic = time.perf_counter()
    jax.block_until_ready(step(state, (x, y)))
    return time.perf_counter() - tic


def mlp_workload(
    batch: int, epoch_steps: int, rounds: int, torch_compile: bool, progress: bool = True
) -> dict:
    import torch

    x, y = mnist_shaped(batch, epoch_steps)
    mse = torch.nn.functional.mse_loss
    contenders = {"PyTorch eager": torch_eager(_common.torch_mlp(SIZES), mse, x, y, batch)}
    if torch_compile:
        contenders["torch.compile"] = torch_eager(
            _common.torch_mlp(SIZES), mse, x, y, batch, compiled=True
        )
    net = nn.MLP(784, [256, 64], 10)

    def loss_fn(params, b):
        return F.mse_loss(net.apply(params, b[0]), b[1])

    contenders.update(jaxnet_contenders(loss_fn, net.init(jax.random.key(0)), x, y, batch))
    contenders.update(raw_jax_contenders(*raw_mlp(), x, y, batch))
    contenders["Flax NNX"] = flax_nnx(x, y, batch)
    contenders["Equinox"] = equinox(x, y, batch)
    return measure(contenders, epoch_steps, rounds, f"MLP, batch {batch}", progress,
                   optional={"torch.compile"})  # fmt: skip


# ---- CNNs: LeNet and the small ResNet ---------------------------------------------------

CNN_LR = resnet.RECIPE.lr  # 0.05 with momentum 0.9, for both CNNs
BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # torch.nn.BatchNorm2d's defaults
FAST_WIDTHS = (4,)  # the ResNet of --fast: the stem and one block


@dataclasses.dataclass(frozen=True)
class CNN:
    """A CNN workload: the torch model, its jaxnet twin, and the hand-written JAX loss
    ``raw_loss(params, buffers, x, y) -> (loss, buffers)`` on ``raw_variables(torch_model)``
    = ``(params, buffers)``."""

    title: str
    torch_model: Callable
    jaxnet_model: nn.Module
    raw_loss: Callable
    raw_variables: Callable


def lenet_workload() -> CNN:
    from experiments import cnn_profile  # it imports this module's timing helpers

    baseline = cnn_profile.lenet_loss("xla", "reduce_window", "NCHW")
    return CNN(
        "LeNet", lenet.torch_model, lenet.make_model(),
        lambda params, buffers, x, y: (baseline(params, x, y), buffers),
        lambda model: (cnn_profile.initial_params(model), {}),
    )  # fmt: skip


def _conv(x, w, stride: int = 1, padding: int = 0):
    pads = [(padding, padding)] * 2
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), pads, dimension_numbers=("NCHW", "OIHW", "NCHW")
    )


def _channels(v):
    return v.reshape(1, -1, 1, 1)


def raw_resnet_loss(widths: tuple[int, ...]) -> Callable:
    """``experiments.resnet``'s small ResNet written by hand in JAX on torch's state-dict
    names: ``loss(params, buffers, x, y) -> (cross-entropy, new running statistics)``."""

    def loss(params, buffers, x, y):
        new = {}

        def batch_norm(name, h):  # training mode: batch statistics, running ones updated
            mean, var = h.mean(axis=(0, 2, 3)), h.var(axis=(0, 2, 3))
            n = h.size // h.shape[1]
            rm, rv = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
            new[f"{name}.running_mean"] = (1 - BN_MOMENTUM) * rm + BN_MOMENTUM * mean
            new[f"{name}.running_var"] = (1 - BN_MOMENTUM) * rv + BN_MOMENTUM * var * n / (n - 1)
            h = (h - _channels(mean)) * _channels(jax.lax.rsqrt(var + BN_EPS))
            return h * _channels(params[f"{name}.weight"]) + _channels(params[f"{name}.bias"])

        h = jax.nn.relu(batch_norm("1", _conv(x, params["0.weight"], padding=1)))
        for i in range(len(widths)):  # one Residual block per stage, at index 3 + i
            block, stride = str(3 + i), 1 if i == 0 else 2
            r = _conv(h, params[f"{block}.conv1.weight"], stride, 1)
            r = jax.nn.relu(batch_norm(f"{block}.bn1", r))
            r = batch_norm(f"{block}.bn2", _conv(r, params[f"{block}.conv2.weight"], 1, 1))
            if f"{block}.conv3.weight" in params:
                h = _conv(h, params[f"{block}.conv3.weight"], stride)
                h = h + _channels(params[f"{block}.conv3.bias"])
            h = jax.nn.relu(r + h)
        head = str(3 + len(widths) + 2)
        logits = h.mean(axis=(2, 3)) @ params[f"{head}.weight"].T + params[f"{head}.bias"][None]
        log_p = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1)), new

    return loss


def torch_variables(model) -> tuple[dict, dict]:
    """The torch ``model``'s parameters and running statistics as JAX arrays by name."""
    params = {k: jnp.asarray(v.detach().numpy()) for k, v in model.named_parameters()}
    buffers = {k: jnp.asarray(v.numpy()) for k, v in model.named_buffers()
               if not k.endswith("num_batches_tracked")}  # fmt: skip
    return params, buffers


def resnet_workload(widths: tuple[int, ...] = resnet.WIDTHS) -> CNN:
    title = f"small ResNet (widths {'-'.join(map(str, widths))})"
    return CNN(
        title, lambda: resnet.torch_model(widths), resnet.make_model(widths),
        raw_resnet_loss(widths), torch_variables,
    )  # fmt: skip


def jaxnet_cnn_loss(model: nn.Module, has_state: bool) -> Callable:
    """Cross-entropy of ``model`` in training mode, in ``train``'s loss signature."""
    if not has_state:
        return lambda params, b: F.cross_entropy(model.apply(params, b[0]), b[1])

    def loss_fn(params, buffers, b, key):
        logits, buffers = model.apply(params, b[0], buffers=buffers, key=key, training=True)
        return F.cross_entropy(logits, b[1]), buffers

    return loss_fn


def jaxnet_cnn_variables(workload: CNN, torch_model) -> tuple[Callable, dict, dict | None]:
    """``(loss_fn, params, buffers)`` of the jaxnet twin loaded from ``torch_model``'s
    state dict (``buffers`` None for a model without any)."""
    loaded = workload.jaxnet_model.load_state_dict(torch_model.state_dict())
    buffers = loaded.buffers or None
    return jaxnet_cnn_loss(workload.jaxnet_model, buffers is not None), loaded.params, buffers


def cnn_workload(
    workload: CNN, batch: int, epoch_steps: int, rounds: int, torch_compile: bool,
    progress: bool = True,
) -> dict:  # fmt: skip
    """Every contender's train step of ``workload`` from the same initial weights."""
    import torch

    x, y = mnist_shaped(batch, epoch_steps, image_shape=(1, 28, 28), one_hot=False)
    torch.manual_seed(0)
    reference = workload.torch_model()
    ce = torch.nn.functional.cross_entropy
    contenders = {"PyTorch eager": torch_eager(copy.deepcopy(reference), ce, x, y, batch, CNN_LR)}
    if torch_compile:
        contenders["torch.compile"] = torch_eager(
            copy.deepcopy(reference), ce, x, y, batch, CNN_LR, compiled=True
        )
    loss_fn, params, buffers = jaxnet_cnn_variables(workload, reference)
    contenders.update(jaxnet_contenders(loss_fn, params, x, y, batch, CNN_LR, buffers))
    raw_params, raw_buffers = workload.raw_variables(reference)
    contenders.update(
        raw_jax_contenders(workload.raw_loss, raw_params, x, y, batch, CNN_LR, raw_buffers)
    )
    return measure(contenders, epoch_steps, rounds, f"{workload.title}, batch {batch}",
                   progress, optional={"torch.compile"})  # fmt: skip


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of the ratio of two contenders' times in the same round: the
    machine's drift between rounds cancels, which a ratio of medians does not do."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def table(title: str, results: dict, flops: int | None, roofline: float) -> str:
    base = results["PyTorch eager"]["samples_s"]
    head = f"### {title}\n\n| contender | median ms/step | speed-up vs PyTorch eager |"
    rule = "|---|---:|---:|"
    if flops:
        head += " GFLOP/s | % of roofline |"
        rule += "---:|---:|"
    lines = [head, rule]
    for name, r in results.items():
        if "unavailable" in r:
            lines.append(f"| {name} | unavailable | |" + (" | |" if flops else ""))
            continue
        speedup = paired_ratio(base, r["samples_s"])
        row = f"| {name} | {r['median_s'] * 1e3:.4f} | {speedup:.2f}x |"
        if flops:
            gflops = flops / r["median_s"] / 1e9
            row += f" {gflops:.1f} | {100 * gflops / roofline:.0f}% |"
        lines.append(row)
    if "raw JAX epoch" in results:
        rel = {kind: paired_ratio(results[f"jaxnet {kind}"]["samples_s"],
                                  results[f"raw JAX {kind}"]["samples_s"])
               for kind in ("step", "epoch")}  # fmt: skip
        lines.append(
            f"\njaxnet's time over hand-written raw JAX's: step {rel['step']:.3f}, "
            f"epoch {rel['epoch']:.3f}."
        )
    return "\n".join(lines)


WORKLOADS = ("mlp", "cnn", "descent")


def main(argv: list[str] | None = None) -> dict:
    p = _common.parser(__doc__, fast="tiny configuration (smoke test)", no_torch=False)
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 15; 2 fast)")
    p.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="include torch.compile (default: on, off with --fast)")  # fmt: skip
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS),
                   help="which workloads to time (default: all)")  # fmt: skip
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        p.error(f"--rounds {args.rounds} must be at least 1")
    out = _common.output_dir(args.out, "benchmark")
    rounds = args.rounds or (2 if args.fast else 15)
    with_compile = (not args.fast) if args.torch_compile is None else args.torch_compile
    progress = not args.no_progress
    report: dict = {
        "machine": _common.machine_info(),
        "roofline_gflops": matmul_roofline(256 if args.fast else 1024),
        "first_step_compile_s": first_step_compile_seconds(512),
        "workloads": {},
    }
    sections = []
    mlp_sizes = ((64, 4), (512, 2)) if args.fast else ((64, 100), (512, 40))
    for batch, steps in mlp_sizes if "mlp" in args.workloads else ():
        name = f"MNIST MLP train step, batch {batch}"
        results = mlp_workload(batch, steps, rounds, with_compile, progress)
        report["workloads"][name] = results
        sections.append(table(name, results, mlp_flops(batch), report["roofline_gflops"]))
    cnn_batch, cnn_steps = (16, 1) if args.fast else (128, 10)
    cnns = (
        (lenet_workload(), resnet_workload(FAST_WIDTHS if args.fast else resnet.WIDTHS))
        if "cnn" in args.workloads
        else ()
    )
    for workload in cnns:
        name = f"{workload.title} train step, batch {cnn_batch}"
        results = cnn_workload(workload, cnn_batch, cnn_steps, rounds, with_compile, progress)
        report["workloads"][name] = results
        flops = cnn_flops(workload.torch_model(), cnn_batch)
        sections.append(table(name, results, flops, report["roofline_gflops"]))
    if "descent" in args.workloads:
        gd_steps = 50 if args.fast else 1000
        x, y = regression_data()
        gd_contenders = {
            "PyTorch eager": gd_torch(x, y, gd_steps),
            "jaxnet": gd_jaxnet(x, y, gd_steps),
            "jaxnet, unroll 10": gd_jaxnet(x, y, gd_steps, unroll=10),
        }
        gd = measure(gd_contenders, gd_steps, rounds, "gradient descent", progress)
        name = f"Linear-regression gradient descent, 100 points, {gd_steps} steps"
        report["workloads"][name] = gd
        sections.append(table(name, gd, None, report["roofline_gflops"]))

    header = (
        f"Roofline: {report['roofline_gflops']:.0f} GFLOP/s (float32 matmul, XLA). "
        f"First jaxnet train step (trace + compile): {report['first_step_compile_s']:.2f} s. "
        f"Medians of {rounds} interleaved rounds; {report['machine']['cpu_count']} CPU cores."
    )
    markdown = header + "\n\n" + "\n\n".join(sections) + "\n"
    print(markdown)
    (out / "benchmark.md").write_text(markdown)
    (out / "benchmark.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out / 'benchmark.md'} and {out / 'benchmark.json'}")
    return report


if __name__ == "__main__":
    main()
