"""Smoke test of the benchmark in its tiny configuration (no timing is asserted)."""

import json
import math

import jax
import numpy as np
import pytest

from experiments import benchmark
from jaxnet import optim, train


def test_benchmark_fast_writes_its_tables(tmp_path):
    report = benchmark.main(["--fast", "--rounds", "1", "--no-progress", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    markdown = (tmp_path / "benchmark.md").read_text()
    cnn = {"PyTorch eager", "jaxnet step", "jaxnet epoch", "raw JAX step", "raw JAX epoch"}
    expected = cnn | {"Flax NNX", "Equinox"}
    workloads = saved["workloads"]
    assert {"LeNet train step, batch 16", "small ResNet (widths 4) train step, batch 16"} < set(
        workloads
    )
    for name, results in workloads.items():
        assert name in markdown
        if "MLP" in name:
            assert set(results) == expected
        if "LeNet" in name or "ResNet" in name:
            assert set(results) == cnn
        for contender in results:
            assert f"| {contender} |" in markdown
            assert math.isfinite(results[contender]["median_s"])
            assert results[contender]["median_s"] > 0
    assert saved["roofline_gflops"] > 0 and report["first_step_compile_s"] > 0
    assert "jaxnet's time over hand-written raw JAX's: step" in markdown


def test_speedups_are_medians_of_ratios_within_rounds():
    # Round times of two contenders on a machine that slows down in round 2:
    # per-round ratios 2, 4, 3 -> median 3, where the ratio of medians would say 4.
    assert benchmark.paired_ratio([2.0, 4.0, 9.0], [1.0, 1.0, 3.0]) == 3.0


def test_flop_count_of_the_seed_mlp():
    # forward 2*B*(784*256 + 256*64 + 64*10), weight grads the same, input grads
    # for the two upper layers only
    forward = 2 * 64 * (784 * 256 + 256 * 64 + 64 * 10)
    assert benchmark.mlp_flops(64) == 2 * forward + 2 * 64 * (256 * 64 + 64 * 10)


def test_benchmark_refuses_no_rounds(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--fast", "--rounds", "0"])
    assert "--rounds 0 must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("below", ["", "sub"])
def test_benchmark_refuses_an_out_that_is_or_is_under_a_file(below, tmp_path, capsys):
    path = tmp_path / "results.txt"
    path.write_text("not a directory")
    with pytest.raises(SystemExit):
        benchmark.main(["--fast", "--out", str(path / below)])
    assert f"argument --out: {path} exists and is not a directory" in capsys.readouterr().err
    assert path.read_text() == "not a directory"


def test_benchmark_does_not_offer_no_torch(capsys):
    """Its tables are relative to PyTorch eager, so it cannot run without PyTorch."""
    with pytest.raises(SystemExit):
        benchmark.main(["--fast", "--no-torch"])
    assert "unrecognized arguments: --no-torch" in capsys.readouterr().err


def test_measure_rotates_the_order_of_the_rounds():
    calls = []
    contenders = {name: (lambda k, name=name: calls.append(name)) for name in "abc"}
    result = benchmark.measure(contenders, 1, 3, progress=False)
    assert calls == list("abc" + "abc" + "bca" + "cab")  # first calls, then three rounds
    assert {name: len(r["samples_s"]) for name, r in result.items()} == dict.fromkeys("abc", 3)


def test_an_optional_contender_that_fails_is_reported_unavailable():
    def broken(k):
        raise RuntimeError("no C++ compiler")

    contenders = {"PyTorch eager": lambda k: None, "torch.compile": broken}
    result = benchmark.measure(contenders, 1, 2, progress=False, optional={"torch.compile"})
    assert result["torch.compile"] == {"unavailable": "RuntimeError: no C++ compiler"}
    assert len(result["PyTorch eager"]["samples_s"]) == 2
    assert "| torch.compile | unavailable |" in benchmark.table("t", result, 10, 1.0)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        benchmark.measure(contenders, 1, 1, progress=False)  # not optional: the error stands


def test_flop_count_of_lenet():
    # conv1 6x28x28 outputs of 1*5*5, conv2 16x10x10 of 6*5*5, then the three Linears;
    # a train step: 3x the forward less the first layer's input gradient
    conv1, conv2 = 2 * 6 * 28 * 28 * 25, 2 * 16 * 10 * 10 * 150
    forward = conv1 + conv2 + 2 * (400 * 120 + 120 * 84 + 84 * 10)
    workload = benchmark.lenet_workload()
    assert benchmark.cnn_flops(workload.torch_model(), 4) == 4 * (3 * forward - conv1)


@pytest.mark.parametrize("workload", [benchmark.lenet_workload, benchmark.resnet_workload],
                         ids=["lenet", "resnet"])  # fmt: skip
def test_cnn_first_step_losses_match_torch(workload):
    """jaxnet's and the raw-JAX step's first loss equal torch's from the same weights, and
    (ResNet) the running statistics after the step too."""
    import torch

    w = workload() if workload is benchmark.lenet_workload else workload((4, 8))
    x, y = benchmark.mnist_shaped(16, 1, image_shape=(1, 28, 28), one_hot=False)
    torch.manual_seed(0)
    model = w.torch_model()
    loss_fn, params, buffers = benchmark.jaxnet_cnn_variables(w, model)
    raw_params, raw_buffers = w.raw_variables(model)
    expected = torch.nn.functional.cross_entropy(
        model(torch.from_numpy(x)), torch.from_numpy(y).long()
    )
    opt = optim.SGD(benchmark.CNN_LR, momentum=benchmark.MOMENTUM)
    step = jax.jit(train.train_step(loss_fn, has_state=buffers is not None), donate_argnums=0)
    state = train.TrainState.create(params, opt, jax.random.key(0), buffers)
    state, metrics = step(state, (x, y))
    raw_step = jax.jit(benchmark.raw_sgd_step(w.raw_loss, benchmark.CNN_LR))
    zeros = jax.tree.map(np.zeros_like, raw_params)
    (_, _, raw_new), raw_loss = raw_step((raw_params, zeros, raw_buffers), x, y)
    np.testing.assert_allclose(float(metrics["loss"]), expected.item(), rtol=1e-5)
    np.testing.assert_allclose(float(raw_loss), expected.item(), rtol=1e-5)
    ours = dict(w.jaxnet_model.named_buffers(state.buffers)) if buffers else {}
    for name, value in model.named_buffers():
        if not name.endswith("num_batches_tracked"):
            np.testing.assert_allclose(raw_new[name], value.numpy(), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(ours[name], value.numpy(), rtol=1e-4, atol=1e-6)
    assert set(raw_new) == {n for n in ours if not n.endswith("num_batches_tracked")}
