"""The small-ResNet experiment on a small learnable MNIST-shaped set, beside its PyTorch twin."""

import jax
import numpy as np
import pytest
import torch
from test_mnist_mlp import synthetic_mnist

from experiments import resnet
from experiments.__main__ import experiments

NARROW = (4, 8, 8, 16)  # the experiment's structure at a fraction of its cost


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet")
    return resnet.run(synthetic_mnist(256, 256), out=out, subset=None, epochs=1,
                      progress=False, widths=NARROW)  # fmt: skip


def test_accuracy_and_running_statistics_agree_with_torch(report):
    d = report["diffs"]
    # Two SGD steps from the same weights on the same batches: the same test predictions.
    assert d["correct"] == d["torch_correct"]
    assert report["epoch_accuracy"] == report["torch_epoch_accuracy"]
    assert report["agrees"]
    # float32 (measured: running statistics 6e-8, losses 1e-7 relative, weights 7e-8)
    assert d["running_mean_diff"] < 1e-5 and d["running_var_diff"] < 1e-5
    assert d["param_diff"] < 1e-5
    assert d["num_batches_tracked_equal"]
    assert d["loss_rel_diff"] < 1e-5
    assert len(report["epoch_seconds"]) == len(report["torch_epoch_seconds"]) == 1


def test_plot_is_written(report):
    with open(report["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_twins_share_names_shapes_and_outputs():
    net, twin = resnet.make_model(), resnet.torch_model()
    params, buffers = net.init(jax.random.key(0)), net.init_buffers()
    state_dict = net.state_dict(params, buffers)
    assert list(state_dict) == list(twin.state_dict())
    assert "4.conv3.weight" in state_dict and "1.conv3.weight" not in state_dict  # shortcuts
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    ours, new_buffers = net.apply(params, x, buffers=buffers)  # training mode
    theirs = twin.train()(torch.from_numpy(x))
    np.testing.assert_allclose(ours, theirs.detach().numpy(), atol=1e-4)
    for name, value in net.named_buffers(new_buffers):
        np.testing.assert_allclose(value, twin.state_dict()[name].numpy(), atol=1e-5)


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    for args, message in [
        (["--subset", "100"], "--subset 100 must be 0 (all) or at least the batch size 128"),
        (["--epochs", "0"], "--epochs 0 must be at least 1"),
    ]:
        with pytest.raises(SystemExit):
            resnet.main([*args, "--out", str(tmp_path / "out")])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_python_m_experiments_lists_it():
    assert dict(experiments())["resnet"].startswith("A small ResNet (d2l's ResNet-18")
