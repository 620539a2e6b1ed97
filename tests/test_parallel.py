"""Data-parallel training on 8 simulated CPU devices and on 2 processes, against torch.

This process has already started JAX with one device, so the multi-device runs happen in
``tests/parallel_worker.py``: once with ``--xla_force_host_platform_device_count=8``
(an 8x1 and a 4x2 mesh) and once as two processes of two devices each joined by
``parallel.initialize``. Each writes what it trained to a temporary folder; the tests
here compare it with torch (float32, same weights, same batches) and with
single-device training.

Tolerances (float32): against torch, losses rtol 1e-6 and params atol 5e-7; sharded
against single-device jaxnet, losses rtol 1e-6 and params atol 2e-7 (measured: about
1.2e-7 and 6e-8). A mean over 8 shards sums in a different order than over one device,
so bit equality is not expected.
"""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import safetensors.torch
import torch
from jax.sharding import PartitionSpec as P

import jaxnet
from jaxnet import checkpoint, nn, optim, parallel, train
from jaxnet.nn import functional as F

WORKER = Path(__file__).with_name("parallel_worker.py")
LOSS_RTOL, PARAM_ATOL = 1e-6, 5e-7  # against torch
SHARD_RTOL, SHARD_ATOL = 1e-6, 2e-7  # sharded against single-device jaxnet


def torch_net(out_features: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, out_features)
    )


def torch_bn_net() -> torch.nn.Sequential:
    """The worker's ``BN_CLASSIFIER``."""
    return torch.nn.Sequential(
        torch.nn.Linear(12, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 3)
    )


def torch_optimizer(name: str, net: torch.nn.Module, lr: float | None = None):
    if name == "sgd":
        return torch.optim.SGD(net.parameters(), lr=lr or 0.05, momentum=0.9)
    return torch.optim.Adam(net.parameters(), lr=lr or 1e-2)


def torch_train(net, opt, loss_fn, x, y, index_batches) -> list[float]:
    """The torch loop over ``x[idx], y[idx]``; returns the per-step losses."""
    losses = []
    for idx in index_batches:
        idx = torch.from_numpy(np.asarray(idx, np.int64))
        loss = loss_fn(net(torch.from_numpy(x)[idx]), torch.from_numpy(y)[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def assert_params(got: dict, prefix: str, expected: dict, atol: float) -> None:
    for name, value in expected.items():
        np.testing.assert_allclose(got[prefix + name], np.asarray(value), rtol=0, atol=atol)


def with_devices(devices: int) -> dict[str, str]:
    """This process's environment with XLA_FLAGS asking for ``devices`` CPU devices (in
    place of any device count it asked for)."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "",
                   os.environ.get("XLA_FLAGS", ""))  # fmt: skip
    flags = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}


def run_worker(args: list[str], devices: int) -> subprocess.Popen:
    env = with_devices(devices)
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def finish(workers: list[subprocess.Popen]) -> None:
    """Wait for every worker (killing any still running after 300 s); fail with their output."""
    failures = []
    for worker in workers:
        try:
            output, _ = worker.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
        if worker.returncode:
            failures.append(f"{WORKER.name} {worker.args[2:]} failed:\n{output[-4000:]}")
    if failures:
        raise AssertionError("\n".join(failures))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Data, torch's initial weights and index batches, written for the workers."""
    folder = tmp_path_factory.mktemp("parallel")
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    regression, classifier, bn_classifier = torch_net(4), torch_net(3), torch_bn_net()
    teacher = rng.standard_normal((12, 3))
    cx, ex = (rng.standard_normal((n, 12)).astype(np.float32) for n in (512, 256))
    arrays = {
        "x": rng.standard_normal((256, 12)).astype(np.float32),
        "y": rng.standard_normal((256, 4)).astype(np.float32),
        "order": np.stack([rng.permutation(256)[:32] for _ in range(10)]).astype(np.int32),
        "cx": cx,
        "cy": np.argmax(cx @ teacher, axis=1).astype(np.int32),
        "ex": ex,
        "ey": np.argmax(ex @ teacher, axis=1).astype(np.int32),
        **{f"r.{k}": v.numpy() for k, v in regression.state_dict().items()},
        **{f"c.{k}": v.numpy() for k, v in classifier.state_dict().items()},
        **{f"b.{k}": v.numpy() for k, v in bn_classifier.state_dict().items()},
    }
    np.savez(folder / "inputs.npz", **arrays)
    return folder, arrays


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(inputs):
    """The 8-device worker and the two cooperating processes, all started at once.

    The coordinator's port is free when chosen but released before process 0 binds it,
    so another program can take it in between: the pair then retries on a fresh port.
    """
    folder, _ = inputs
    devices = run_worker(["devices", str(folder)], devices=8)
    try:
        for attempt in range(3):
            port = str(free_port())
            pair = [run_worker(["process", str(folder), str(p), port], 2) for p in (0, 1)]
            try:
                finish(pair)
                break
            except AssertionError as error:
                if attempt == 2 or "address already in use" not in str(error).lower():
                    raise
    finally:
        finish([devices])
    return folder


@pytest.fixture(scope="module")
def devices_run(runs):
    """The 8-device worker's arrays and report."""
    return np.load(runs / "devices.npz"), json.loads((runs / "devices.json").read_text())


@pytest.fixture(scope="module")
def process_run(runs):
    """The two processes' reports and final params."""
    return [
        (json.loads((runs / f"process{p}.json").read_text()), np.load(runs / f"process{p}.npz"))
        for p in (0, 1)
    ]


def torch_regression(arrays, opt_name: str, index_batches):
    net = torch_net(4)
    net.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k[:2] == "r."})
    opt = torch_optimizer(opt_name, net)
    losses = torch_train(net, opt, torch.nn.functional.mse_loss, arrays["x"], arrays["y"],
                         index_batches)  # fmt: skip
    return net, losses


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_compiled_epoch_on_meshes_equals_torch_and_one_device(devices_run, inputs, opt_name):
    got, report = devices_run
    _, arrays = inputs
    assert report["devices"] == 8
    net, losses = torch_regression(arrays, opt_name, arrays["order"])
    expected = net.state_dict()
    np.testing.assert_allclose(got[f"{opt_name}_single_loss"], losses, rtol=LOSS_RTOL)
    assert_params(got, f"{opt_name}_single.", expected, PARAM_ATOL)
    for mesh in ("data", "model"):  # 8x1, and 4x2 with the weights split over 'model'
        np.testing.assert_allclose(got[f"{opt_name}_{mesh}_loss"], losses, rtol=LOSS_RTOL)
        assert_params(got, f"{opt_name}_{mesh}.", expected, PARAM_ATOL)
        np.testing.assert_allclose(got[f"{opt_name}_{mesh}_loss"],
                                   got[f"{opt_name}_single_loss"], rtol=SHARD_RTOL)  # fmt: skip
        single = {
            k.split(".", 1)[1]: got[k] for k in got.files if k.startswith(f"{opt_name}_single.")
        }
        assert_params(got, f"{opt_name}_{mesh}.", single, SHARD_ATOL)
    # The state keeps its placement: replicated, or split over 'model' (Adam's moments too).
    assert report["shardings"][f"{opt_name}_data_in"] == "P()"
    assert report["shardings"][f"{opt_name}_data_out"] == "P()"
    assert report["shardings"][f"{opt_name}_model_in"] == "P('model',)"
    assert report["shardings"][f"{opt_name}_model_out"] == "P('model',)"


def test_compiled_epoch_gathers_each_slice_locally(devices_run):
    """Replicated data and index batches split along B: only the gradient all-reduce."""
    _, report = devices_run
    for opt_name in ("sgd", "adam"):
        ops = report["collectives"][f"{opt_name}_data"]
        assert ops["all-gather"] == ops["all-to-all"] == ops["collective-permute"] == 0, ops
        assert ops["all-reduce"] >= 1, ops


def test_sharded_train_step_equals_torch(devices_run, inputs):
    got, report = devices_run
    _, arrays = inputs
    _, losses = torch_regression(arrays, "sgd", arrays["order"])
    np.testing.assert_allclose(got["sgd_step_loss"], losses, rtol=LOSS_RTOL)
    assert report["shardings"]["step_out"] == "P()"


def test_fit_with_mesh_equals_one_device_and_torch(devices_run, inputs):
    got, report = devices_run
    assert report["shardings"]["fit_data_devices"] == 8
    assert report["shardings"]["fit_single_devices"] == 1
    _, arrays = inputs
    net = torch_net(3)
    net.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k[:2] == "c."})
    opt = torch_optimizer("sgd", net, lr=0.1)
    losses, accuracy = [], []
    for epoch_order in got["fit_order"]:  # (2 epochs, 8 steps, 64)
        losses += torch_train(net, opt, torch.nn.functional.cross_entropy, arrays["cx"],
                              arrays["cy"].astype(np.int64), epoch_order)  # fmt: skip
        with torch.no_grad():
            predicted = net(torch.from_numpy(arrays["ex"])).argmax(-1).numpy()
        accuracy.append(np.mean(predicted == arrays["ey"]))
    np.testing.assert_allclose(got["fit_data_loss"], losses, rtol=LOSS_RTOL)
    np.testing.assert_allclose(got["fit_data_loss"], got["fit_single_loss"], rtol=SHARD_RTOL)
    np.testing.assert_array_equal(got["fit_data_accuracy"], accuracy)
    np.testing.assert_array_equal(got["fit_data_accuracy"], got["fit_single_accuracy"])
    assert accuracy[-1] > 0.7  # the teacher's labels are learnable; chance is 1/3
    assert_params(got, "fit_data.", net.state_dict(), PARAM_ATOL)


def torch_bn_classifier(arrays) -> torch.nn.Sequential:
    net = torch_bn_net()
    net.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k[:2] == "b."})
    return net


def test_fit_with_mesh_normalises_batchnorm_over_the_global_batch(devices_run, inputs):
    """``fit(mesh=...)`` on 8 devices (8 examples each) computes BatchNorm's statistics over
    the global batch of 64: torch's ``BatchNorm1d`` on the whole batch, which is what
    ``SyncBatchNorm`` computes over 8 ranks. The running statistics, the eval-mode
    accuracy and the parameters agree; normalising each device's 8 examples alone (plain
    ``DistributedDataParallel``) would give another loss."""
    got, report = devices_run
    _, arrays = inputs
    assert report["shardings"]["bn_data_devices"] == 8
    assert report["shardings"]["bn_single_devices"] == 1
    net = torch_bn_classifier(arrays)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    losses, accuracy = [], []
    for epoch_order in got["bn_order"]:  # (2 epochs, 8 steps, 64)
        net.train()
        losses += torch_train(net, opt, torch.nn.functional.cross_entropy, arrays["cx"],
                              arrays["cy"].astype(np.int64), epoch_order)  # fmt: skip
        net.eval()
        with torch.no_grad():
            predicted = net(torch.from_numpy(arrays["ex"])).argmax(-1).numpy()
        accuracy.append(np.mean(predicted == arrays["ey"]))
    np.testing.assert_allclose(got["bn_data_loss"], losses, rtol=LOSS_RTOL)
    np.testing.assert_allclose(got["bn_data_loss"], got["bn_single_loss"], rtol=SHARD_RTOL)
    np.testing.assert_array_equal(got["bn_data_accuracy"], accuracy)
    np.testing.assert_array_equal(got["bn_data_accuracy"], got["bn_single_accuracy"])
    expected = net.state_dict()
    assert int(got["bn_data.1.num_batches_tracked"]) == int(expected["1.num_batches_tracked"]) == 16
    del expected["1.num_batches_tracked"]
    assert_params(got, "bn_data.", expected, PARAM_ATOL)
    single = {k.split(".", 1)[1]: got[k] for k in got.files if k.startswith("bn_single.")}
    assert_params(got, "bn_data.", single, SHARD_ATOL)

    # Per-device statistics (each device's 8 examples normalised alone) differ.
    per_device = torch_bn_classifier(arrays)
    idx = torch.from_numpy(got["bn_order"][0, 0].astype(np.int64))
    x, y = torch.from_numpy(arrays["cx"])[idx], torch.from_numpy(arrays["cy"].astype(np.int64))[idx]
    with torch.no_grad():
        logits = torch.cat([per_device(piece) for piece in x.split(8)])
    local_loss = torch.nn.functional.cross_entropy(logits, y).item()
    assert abs(local_loss - got["bn_data_loss"][0]) > 1e3 * LOSS_RTOL * abs(local_loss)


def test_sharded_checkpoints_load_on_one_device_and_in_torch(devices_run, inputs):
    """Weights and the Adam state of the 4x2 run (weights split over 'model')."""
    got, _ = devices_run
    folder, arrays = inputs
    model = nn.MLP(12, [32], 4)
    params = checkpoint.load_weights(folder / "sharded_weights.safetensors", model).params
    x = arrays["x"][:16]
    twin = torch_net(4)
    twin.load_state_dict(safetensors.torch.load_file(folder / "sharded_weights.safetensors"))
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got["sharded_logits"], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.apply(params, x), expected, rtol=1e-6, atol=1e-6)
    assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(params))

    # The whole state resumes here on one device: step 11 equals torch's 11th Adam step.
    opt = optim.Adam(1e-2)
    like = train.TrainState.create(params, opt, jax.random.key(0))
    state = checkpoint.load_state(folder / "sharded_state.safetensors", like)
    assert int(state.step) == 10
    np.testing.assert_array_equal(model.state_dict(state.params)["0.weight"],
                                  model.state_dict(params)["0.weight"])  # fmt: skip
    idx = arrays["order"][0]
    step = jax.jit(train.train_step(lambda p, b: F.mse_loss(model.apply(p, b[0]), b[1])),
                   donate_argnums=0)  # fmt: skip
    state, metrics = step(state, (arrays["x"][idx], arrays["y"][idx]))
    net, losses = torch_regression(arrays, "adam", [*arrays["order"], idx])
    np.testing.assert_allclose(float(metrics["loss"]), losses[-1], rtol=LOSS_RTOL)
    assert_params(model.state_dict(state.params), "", net.state_dict(), PARAM_ATOL)


@pytest.mark.parametrize(
    ("check", "error"),
    [
        ("fit", r"ValueError: fit: batch size 60 does not divide evenly over the 8 devices"),
        ("shard_batch", r"ValueError: shard_batch: batch size 12 .* over the 8 devices"),
        ("global_batch", r"ValueError: global_batch: batch size 12 .* over the 8 devices"),
        ("make_mesh_model", r"ValueError: make_mesh: num_devices=8 is not divisible by model=3"),
        ("make_mesh_count", r"ValueError: make_mesh: num_devices=16 but only 8 devices"),
    ],
)
def test_bad_batch_and_mesh_raise_before_compiling(devices_run, check, error):
    """``fit``'s loss raises if traced: its ValueError comes before any compilation."""
    _, report = devices_run
    assert re.fullmatch(error + ".*", report["errors"][check], flags=re.S), report["errors"][check]


def test_two_processes_train_as_one(process_run, inputs, devices_run):
    """``initialize`` joins 2 processes; each feeds its piece of every global batch."""
    _, arrays = inputs
    (first, _), (second, _) = process_run
    assert [first["process_index"], second["process_index"]] == [0, 1]
    assert first["process_count"] == 2 and first["device_count"] == 4
    for global_batch, piece0, piece1 in zip(first["order"], first["pieces"], second["pieces"],
                                            strict=True):  # fmt: skip
        assert piece0 + piece1 == global_batch and not set(piece0) & set(piece1)
    net, losses = torch_regression(arrays, "sgd", first["order"])
    for report, params in process_run:
        np.testing.assert_allclose(report["step_loss"], losses, rtol=LOSS_RTOL)
        assert_params(params, "", net.state_dict(), PARAM_ATOL)
    got, _ = devices_run
    for report in (first, second):  # fit on 2 hosts x 2 devices against fit on one device
        np.testing.assert_allclose(report["fit_loss"], got["fit_single_loss"], rtol=SHARD_RTOL)
        np.testing.assert_array_equal(report["fit_accuracy"], got["fit_single_accuracy"])


@pytest.mark.parametrize(("n", "batch_size", "processes"), [(100, 32, 4), (100, 8, 2), (100, 3, 1)])
def test_host_batch_order_splits_each_global_batch(n, batch_size, processes):
    key = jax.random.key(5)
    order = jaxnet.datasets.batch_order(key, n, batch_size, drop_last=True)
    pieces = [parallel.host_batch_order(key, n, batch_size, p, processes) for p in range(processes)]
    for step, global_batch in enumerate(order):
        joined = np.concatenate([host[step] for host in pieces])
        np.testing.assert_array_equal(joined, global_batch)  # union in order, hence disjoint
    assert all(len(host) == len(order) for host in pieces)

    # Against torch's DistributedSampler: the same examples make each global step.
    b = batch_size // processes
    ranks = [
        list(torch.utils.data.BatchSampler(torch.utils.data.DistributedSampler(
            range(n), processes, rank, shuffle=False, drop_last=True), b, drop_last=True))
        for rank in range(processes)
    ]  # fmt: skip
    ours = [parallel.host_batch_order(None, n, batch_size, p, processes, shuffle=False)
            for p in range(processes)]  # fmt: skip
    assert len(ranks[0]) == len(ours[0])
    for step in range(len(ranks[0])):
        theirs = sorted(i for rank in ranks for i in rank[step])
        assert sorted(np.concatenate([host[step] for host in ours]).tolist()) == theirs


def test_host_batch_order_defaults_to_this_process():
    key = jax.random.key(1)
    got = parallel.host_batch_order(key, 100, 30)
    expected = jaxnet.datasets.batch_order(key, 100, 30, drop_last=True)
    assert len(got) == 3
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_host_batch_order_errors():
    with pytest.raises(ValueError, match=r"host_batch_order: global batch size 10 .* 4 processes"):
        parallel.host_batch_order(None, 40, 10, 0, 4, shuffle=False)
    with pytest.raises(ValueError, match=r"host_batch_order: need 0 <= process_index < process"):
        parallel.host_batch_order(None, 40, 8, 4, 4, shuffle=False)


def test_one_device_mesh_and_mesh_errors():
    """Holds on any number of devices (the suite also runs on 8, see below)."""
    count = jax.device_count()
    mesh = parallel.make_mesh(1)
    assert dict(mesh.shape) == {"data": 1, "model": 1} and parallel.data_size(mesh) == 1
    every = parallel.make_mesh()
    assert dict(every.shape) == {"data": count, "model": 1} and parallel.data_size(every) == count
    with pytest.raises(
        ValueError, match=rf"make_mesh: num_devices={count + 1} but only {count} devices"
    ):
        parallel.make_mesh(count + 1)
    with pytest.raises(ValueError, match=r"make_mesh: model=0 must be a positive int"):
        parallel.make_mesh(model=0)
    with pytest.raises(TypeError, match=r"data_size: expected a jax.sharding.Mesh, got str"):
        parallel.data_size("data")
    # Explicit axes: the gather would need out_sharding
    explicit = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    with pytest.raises(ValueError, match=r"replicate: expected mesh axes of type AxisType.Auto"):
        parallel.replicate(np.zeros(3, np.float32), explicit)
    with pytest.raises(ValueError, match=r"shard_params: expected a mesh with a 'model' axis"):
        parallel.shard_params({}, jax.sharding.Mesh(jax.devices(), ("data",)))
    with pytest.raises(
        ValueError,
        match=r"shard_batch: batch axis 1 is out of range for an array of rank 1, shape \(4,\)",
    ):
        parallel.shard_batch(np.zeros(4, np.int32), mesh, axis=1)


def test_shard_batch_takes_negative_axes_per_leaf_rank():
    mesh = parallel.make_mesh(1)
    tree = {"x": np.zeros((2, 3), np.float32), "idx": np.zeros((5, 4, 3), np.int32)}
    specs = {
        name: leaf.sharding.spec for name, leaf in parallel.shard_batch(tree, mesh, -1).items()
    }
    assert specs == {"x": P(None, "data"), "idx": P(None, None, "data")}
    specs = {
        name: leaf.sharding.spec for name, leaf in parallel.shard_batch(tree, mesh, -2).items()
    }
    assert specs == {"x": P("data"), "idx": P(None, "data")}
    with pytest.raises(
        ValueError,
        match=r"shard_batch: batch axis -3 is out of range for an array of rank 2, shape \(2, 3\)",
    ):
        parallel.shard_batch(tree, mesh, axis=-3)
    with pytest.raises(TypeError, match=r"shard_batch: axis must be an int, got float"):
        parallel.shard_batch(tree, mesh, axis=1.0)


def test_global_batch_refuses_pieces_of_different_sizes():
    with pytest.raises(
        ValueError,
        match=r"global_batch: every data array needs the same number of examples on axis 0, "
        r"got shapes \{'\[0\]': \(4, 2\), '\[1\]': \(3,\)\}",
    ):
        parallel.global_batch((np.zeros((4, 2)), np.zeros(3)), parallel.make_mesh(1))


# The tests above that look at the devices of this process, in a process with 8 of them.
DEVICE_COUNT_TESTS = (
    "test_one_device_mesh_and_mesh_errors or test_shard_batch_takes_negative_axes or "
    "test_global_batch_refuses or test_host_batch_order"
)


def test_device_dependent_tests_pass_on_eight_devices():
    count = subprocess.run(
        [sys.executable, "-c", "import jax; print(jax.device_count())"],
        env=with_devices(8), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert count.stdout.strip() == "8", count.stderr[-2000:]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__)), "-q", "-p", "no:cacheprovider",
         "-k", DEVICE_COUNT_TESTS],
        env=with_devices(8), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b8 passed, \d+ deselected in", result.stdout), result.stdout[-2000:]
