"""The LeNet experiment on a small learnable MNIST-shaped set, beside its PyTorch twin."""

import jax
import numpy as np
import pytest
import torch
from test_mnist_mlp import synthetic_mnist

from experiments import lenet
from experiments.__main__ import experiments
from jaxnet import datasets, train


@pytest.fixture(scope="module")
def seed_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("lenet")
    return lenet.run(synthetic_mnist(512, 256), "seed", compare_torch=True, out=out, epochs=1,
                     progress=False)  # fmt: skip


def test_seed_recipe_agrees_with_torch(seed_report):
    d = seed_report["diffs"]
    # Two SGD steps of the same batches from the same weights: the same test predictions.
    assert d["correct"] == d["torch_correct"]
    assert seed_report["epoch_accuracy"] == seed_report["torch_epoch_accuracy"]
    assert d["loss_rel_diff"] < 1e-5  # float32 (measured about 1e-7)
    assert d["param_diff"] < 1e-5
    assert seed_report["agrees"]
    assert "running_mean_diff" not in d  # no BatchNorm in the seed LeNet
    assert len(seed_report["epoch_seconds"]) == len(seed_report["torch_epoch_seconds"]) == 1


def test_seed_recipe_plots_loss_and_accuracy(seed_report):
    with open(seed_report["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_best_recipe_trains_on_fits_crops_beside_torch(tmp_path, capsys):
    report = lenet.run(synthetic_mnist(512, 256), "best", compare_torch=True, out=tmp_path,
                       epochs=1, progress=False)  # fmt: skip
    d = report["diffs"]
    # The first step sees the same crops and weights: the same loss to float32 rounding.
    assert d["step_loss_rel_diff"][0] < 1e-6
    # Four steps on this set stay as close (measured: losses 1e-7 relative, weights 1e-6,
    # statistics 3e-7); on real MNIST, BatchNorm twins drift apart over more steps.
    assert d["loss_rel_diff"] < 1e-5
    assert d["param_diff"] < 1e-4
    assert d["correct"] == d["torch_correct"]
    assert d["running_mean_diff"] < 1e-5 and d["running_var_diff"] < 1e-5
    assert d["num_batches_tracked_equal"]
    printed = capsys.readouterr().out
    assert "check: per-epoch accuracy |jaxnet - PyTorch| <= 0.2 pp" in printed
    assert "running statistics: running_mean" in printed


def test_step_batch_is_the_crop_the_loss_sees():
    """The torch twin's batches: the crop of fit's step key, zero padded as RandomCrop."""
    key, x = jax.random.key(1), np.random.default_rng(0).random((8, 1, 28, 28), np.float32)
    expected = datasets.random_crop(train.step_key(key, 3), x, 28, 2)
    np.testing.assert_array_equal(lenet.step_batch(key, 3, x, 2), expected)
    np.testing.assert_array_equal(lenet.step_batch(key, 3, x, 0), x)
    assert not np.array_equal(lenet.step_batch(key, 4, x, 2), expected)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_the_twins_share_names_shapes_and_outputs(batch_norm):
    net, twin = lenet.make_model(batch_norm), lenet.torch_model(batch_norm).eval()
    params, buffers = net.init(jax.random.key(0)), net.init_buffers()
    twin.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in net.state_dict(params, buffers).items()},
        strict=True,
    )
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    ours, _ = net.apply(params, x, buffers=buffers, training=False)
    with torch.no_grad():
        np.testing.assert_allclose(ours, twin(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_without_torch_only_jaxnet_trains(tmp_path):
    report = lenet.run(synthetic_mnist(512, 256), "seed", out=tmp_path, epochs=1,
                       progress=False)  # fmt: skip
    assert [k for k in report if "torch" in k or k == "diffs"] == []
    assert len(report["epoch_accuracy"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subset", "100"], "--subset 100 must be at least the seed recipe's batch size 256"),
        (["--recipe", "best", "--subset", "100"], "the best recipe's batch size 128"),
        (["--epochs", "0"], "--epochs 0 must be at least 1"),
    ],
)
def test_cli_refuses_bad_arguments(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        lenet.main([*args, "--out", str(tmp_path / "out")])
    assert error.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_python_m_experiments_lists_it():
    assert dict(experiments())["lenet"].startswith("LeNet-5 (d2l's, ReLU and max-pooling)")
