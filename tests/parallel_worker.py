"""Multi-device runs for test_parallel.py, in a fresh process (the test process has 1 device).

    python tests/parallel_worker.py devices DIR            # XLA_FLAGS: 8 CPU devices
    python tests/parallel_worker.py process DIR PID PORT   # one of 2 processes, 2 devices each

Reads ``DIR/inputs.npz`` (data, torch's initial weights, index batches) and writes what
it trained to ``DIR/<mode>[PID].npz`` and ``.json``; test_parallel.py compares it with
torch and with single-device training.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import checkpoint, datasets, nn, optim, parallel, train
from jaxnet.nn import functional as F

jax.config.update("jax_enable_x64", True)  # as tests/conftest.py: explicit dtypes only
jax.config.update("jax_numpy_rank_promotion", "raise")

NET = nn.MLP(12, [32], 4)
CLASSIFIER = nn.MLP(12, [32], 3)
BN_CLASSIFIER = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
OPTIMIZERS = {"sgd": lambda: optim.SGD(0.05, momentum=0.9), "adam": lambda: optim.Adam(1e-2)}


def mse(params, batch):
    x, y = batch  # (B, 12), (B, 4)
    return F.mse_loss(NET.apply(params, x), y)


def cross_entropy(params, batch):
    x, labels = batch  # (B, 12), (B,)
    return F.cross_entropy(CLASSIFIER.apply(params, x), labels)


def accuracy(params, batch):
    x, labels = batch
    return {"accuracy": jnp.argmax(CLASSIFIER.apply(params, x), axis=-1) == labels}


def weights(inputs, prefix: str, model: nn.Module):
    """The model's params and buffers from torch's ``state_dict`` saved under ``prefix``."""
    torch_names = {k[len(prefix) :]: inputs[k] for k in inputs.files if k.startswith(prefix)}
    return model.load_state_dict(torch_names)


def flat(prefix: str, params, model: nn.Module = NET, buffers=None) -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v for k, v in model.state_dict(params, buffers).items()}


def collectives(compiled) -> dict[str, int]:
    hlo = compiled.as_text()
    ops = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
    return {op: len(re.findall(rf"\b{op}(?:-start)?\(", hlo)) for op in ops}


def weight_spec(state) -> str:
    """How the first layer's weight is placed: ``"P()"`` (replicated) or ``"P('model',)"``."""
    return str(state.params["0"]["weight"].sharding.spec)


def error_of(call) -> str:
    try:
        call()
    except (ValueError, TypeError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def fit_run(inputs, mesh, loss_fn=cross_entropy, batch_size=64):
    """Two epochs of 8 steps (2 compiled chunks each) and accuracy after each epoch."""
    opt = optim.SGD(0.1, momentum=0.9)
    params = weights(inputs, "c.", CLASSIFIER).params
    state = train.TrainState.create(params, opt, jax.random.key(3))
    train_data, eval_data = (inputs["cx"], inputs["cy"]), (inputs["ex"], inputs["ey"])
    return train.fit(state, loss_fn, train_data, epochs=2, batch_size=batch_size,
                     metric_fn=accuracy, eval_data=eval_data, chunks_per_epoch=2,
                     progress=False, mesh=mesh)  # fmt: skip


def bn_cross_entropy(params, buffers, batch, key):
    x, labels = batch  # (B, 12), (B,): B sharded over the mesh's 'data' axis
    logits, buffers = BN_CLASSIFIER.apply(params, x, buffers=buffers, key=key, training=True)
    return F.cross_entropy(logits, labels), buffers


def bn_accuracy(params, buffers, batch):
    x, labels = batch
    logits, _ = BN_CLASSIFIER.apply(params, x, buffers=buffers, training=False)
    return {"accuracy": jnp.argmax(logits, axis=-1) == labels}


def bn_fit_run(inputs, mesh):
    """``fit_run`` for the classifier with BatchNorm: two epochs, eval-mode accuracy."""
    opt = optim.SGD(0.1, momentum=0.9)
    loaded = weights(inputs, "b.", BN_CLASSIFIER)
    state = train.TrainState.create(loaded.params, opt, jax.random.key(4), loaded.buffers)
    train_data, eval_data = (inputs["cx"], inputs["cy"]), (inputs["ex"], inputs["ey"])
    return train.fit(state, bn_cross_entropy, train_data, epochs=2, batch_size=64,
                     metric_fn=bn_accuracy, eval_data=eval_data, has_state=True,
                     chunks_per_epoch=2, progress=False, mesh=mesh)  # fmt: skip


def devices(folder: Path) -> None:
    """Single device against an 8x1 and a 4x2 mesh: loop, step, fit, checkpoints, errors."""
    inputs = np.load(folder / "inputs.npz")
    x, y, order = inputs["x"], inputs["y"], inputs["order"]  # order: (steps, 32)
    params = weights(inputs, "r.", NET).params
    key = jax.random.key(0)
    data_mesh, model_mesh = parallel.make_mesh(), parallel.make_mesh(model=2)
    arrays: dict[str, np.ndarray] = {}
    report: dict = {"devices": jax.device_count(), "collectives": {}, "shardings": {}}

    loop = jax.jit(train.train_loop(train.train_step(mse)), donate_argnums=0)
    for name, make_opt in OPTIMIZERS.items():
        single, metrics = loop(train.TrainState.create(params, make_opt(), key), (x, y), order)
        arrays[f"{name}_single_loss"] = np.asarray(metrics["loss"])
        arrays.update(flat(f"{name}_single.", single.params))

        for mesh_name, mesh in (("data", data_mesh), ("model", model_mesh)):
            state = train.TrainState.create(params, make_opt(), key)
            if mesh_name == "model":  # weights of >= 64 entries split over 'model'
                state = parallel.shard_params(state, mesh, min_size=64)
            else:
                state = parallel.replicate(state, mesh)
            placed = parallel.replicate((x, y), mesh), parallel.shard_batch(order, mesh, axis=1)
            compiled = loop.lower(state, *placed).compile()
            report["collectives"][f"{name}_{mesh_name}"] = collectives(compiled)
            report["shardings"][f"{name}_{mesh_name}_in"] = weight_spec(state)
            state, metrics = compiled(state, *placed)
            report["shardings"][f"{name}_{mesh_name}_out"] = weight_spec(state)
            arrays[f"{name}_{mesh_name}_loss"] = np.asarray(metrics["loss"])
            arrays.update(flat(f"{name}_{mesh_name}.", state.params))
            if (name, mesh_name) == ("adam", "model"):
                checkpoint.save_weights(folder / "sharded_weights.safetensors", NET, state.params)
                checkpoint.save_state(folder / "sharded_state.safetensors", state)
                arrays["sharded_logits"] = np.asarray(NET.apply(state.params, x[:16]))

    step = jax.jit(train.train_step(mse), donate_argnums=0)
    state = parallel.replicate(train.TrainState.create(params, OPTIMIZERS["sgd"](), key), data_mesh)
    step_losses = []
    for idx in order:
        state, metrics = step(state, parallel.shard_batch((x[idx], y[idx]), data_mesh))
        step_losses.append(float(metrics["loss"]))
    arrays["sgd_step_loss"] = np.asarray(step_losses)
    report["shardings"]["step_out"] = weight_spec(state)

    for mesh_name, mesh in (("single", None), ("data", data_mesh)):
        state, history = fit_run(inputs, mesh)
        arrays[f"fit_{mesh_name}_loss"] = np.asarray(history["step_loss"])
        arrays[f"fit_{mesh_name}_accuracy"] = np.asarray([e["accuracy"] for e in history["eval"]])
        arrays.update(flat(f"fit_{mesh_name}.", state.params, CLASSIFIER))
        report["shardings"][f"fit_{mesh_name}_devices"] = len(state.params["0"]["weight"].devices())
        state, history = bn_fit_run(inputs, mesh)
        arrays[f"bn_{mesh_name}_loss"] = np.asarray(history["step_loss"])
        arrays[f"bn_{mesh_name}_accuracy"] = np.asarray([e["accuracy"] for e in history["eval"]])
        arrays.update(flat(f"bn_{mesh_name}.", state.params, BN_CLASSIFIER, state.buffers))
        report["shardings"][f"bn_{mesh_name}_devices"] = len(
            state.buffers["1"]["running_mean"].devices()
        )
    for name, key in (("fit", jax.random.key(3)), ("bn", jax.random.key(4))):
        arrays[f"{name}_order"] = np.stack(
            [train.epoch_batch_order(key, e, len(inputs["cx"]), 64) for e in range(2)]
        )  # (epochs, steps, B): fit's batches

    def traced(params, batch):
        raise RuntimeError("fit compiled the loss before checking the batch size")

    report["errors"] = {
        "fit": error_of(lambda: fit_run(inputs, data_mesh, traced, batch_size=60)),
        "shard_batch": error_of(lambda: parallel.shard_batch((x[:12], y[:12]), data_mesh)),
        "global_batch": error_of(lambda: parallel.global_batch((x[:12], y[:12]), data_mesh)),
        "make_mesh_model": error_of(lambda: parallel.make_mesh(model=3)),
        "make_mesh_count": error_of(lambda: parallel.make_mesh(16)),
    }
    np.savez(folder / "devices.npz", **arrays)
    (folder / "devices.json").write_text(json.dumps(report))


def process(folder: Path, pid: int, port: int) -> None:
    """One of two processes: host pieces of each global batch, a step loop and fit."""
    parallel.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    inputs = np.load(folder / "inputs.npz")
    x, y = inputs["x"], inputs["y"]
    mesh = parallel.make_mesh()  # the 4 devices of both processes on 'data'
    opt = OPTIMIZERS["sgd"]()
    state = train.TrainState.create(weights(inputs, "r.", NET).params, opt, jax.random.key(0))
    state = parallel.replicate(state, mesh)
    step = jax.jit(train.train_step(mse), donate_argnums=0)
    pieces = parallel.host_batch_order(jax.random.key(7), len(x), 32)  # this host's 16 of 32
    losses = []
    for idx in pieces:
        state, metrics = step(state, parallel.global_batch((x[idx], y[idx]), mesh))
        losses.append(float(metrics["loss"]))
    _, history = fit_run(inputs, mesh)
    report = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "pieces": [piece.tolist() for piece in pieces],
        "order": [b.tolist() for b in datasets.batch_order(jax.random.key(7), len(x), 32)],
        "step_loss": losses,
        "fit_loss": history["step_loss"],
        "fit_accuracy": [e["accuracy"] for e in history["eval"]],
    }
    np.savez(folder / f"process{pid}.npz", **flat("", state.params))
    (folder / f"process{pid}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    mode, folder = sys.argv[1], Path(sys.argv[2])
    if mode == "devices":
        devices(folder)
    else:
        process(folder, int(sys.argv[3]), int(sys.argv[4]))
