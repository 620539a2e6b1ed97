"""The dropout and batch-norm experiment in --fast mode, on a small learnable MNIST-shaped set."""

import math

import jax
import numpy as np
import pytest
import torch
from test_mnist_mlp import synthetic_mnist

from experiments import dropout_batchnorm as experiment
from experiments.__main__ import experiments


@pytest.fixture(scope="module", params=["float64", "float32"])
def report(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("dropout_batchnorm")
    return experiment.run(synthetic_mnist(), fast=True, out=out, precision=request.param,
                          progress=False)  # fmt: skip


# float64: measured about 1e-15; float32 (a few steps): losses about 1e-7, statistics 5e-7
TIGHT = {"float64": 1e-12, "float32": 1e-5}


def test_batchnorm_agrees_with_torch(report):
    d, tight = report["batchnorm_diffs"], TIGHT[report["precision"]]
    assert d["loss_rel_diff"] < tight
    assert d["param_diff"] < tight
    assert d["running_mean_diff"] < tight and d["running_var_diff"] < tight
    assert d["num_batches_tracked_equal"]
    assert report["batchnorm_accuracy"] == report["torch_batchnorm_accuracy"]
    assert report["batchnorm_agrees"]


def test_dropout_with_injected_masks_agrees_with_torch(report):
    d, tight = report["injected_diffs"], TIGHT[report["precision"]]
    assert d["loss_rel_diff"] < tight
    assert d["param_diff"] < tight
    assert report["injected_accuracy"] == report["torch_injected_accuracy"]
    assert report["injected_agrees"]


def test_dropout_with_own_masks_differs_in_training_only(report):
    d = report["dropout_diffs"]
    assert d["eval_logits_diff"] < TIGHT[report["precision"]]  # eval mode: the plain MLP
    assert d["loss_rel_diff"] > 1e-3  # each framework drew its own masks
    assert report["dropout_agrees"]


def test_every_run_learns(report):
    for kind in experiment.KINDS:
        for prefix in ("", "torch_"):
            assert report[f"{prefix}{kind}_accuracy"][-1] > 0.25  # chance is 0.1


def test_plots_are_written(report):
    for path in report["plots"]:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_injected_masks_keep_one_minus_p_and_scale_as_torch():
    masks = experiment.dropout_masks(jax.random.key(3), 4096)
    for mask, p, width in zip(masks, experiment.DROPOUT, experiment.HIDDEN, strict=True):
        assert mask.shape == (4096, width) and mask.dtype == np.bool_
        n = mask.size
        assert abs(float(mask.mean()) - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    # the jaxnet layer with a mask equals torch's dropout arithmetic with that mask
    x = np.random.default_rng(0).standard_normal((4096, 256)).astype(np.float32)
    layer = experiment.MaskedSequential(experiment.MaskedDropout(0.2))
    ours = layer.apply({}, x, masks[:1])
    expected = torch.from_numpy(x) * torch.from_numpy(np.array(masks[0])) / (1 - 0.2)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(layer.apply({}, x, training=False), x)


def test_step_masks_are_the_masks_fit_derives_for_that_step():
    key = jax.random.key(7)
    state = experiment.train.TrainState.create({}, experiment.optim.SGD(0.1), key)
    for step in (0, 5):
        expected = experiment.dropout_masks(
            experiment.train.step_key(state.key, state.step + step), 256
        )
        for a, b in zip(experiment.step_masks(key, step), expected, strict=True):
            np.testing.assert_array_equal(a, b)


def test_no_torch_trains_the_jaxnet_runs_alone(tmp_path):
    r = experiment.run(synthetic_mnist(512, 128), fast=True, out=tmp_path, with_torch=False,
                       precision="float32", progress=False)  # fmt: skip
    assert [k for k in r if "torch" in k or "diffs" in k] == []
    assert all(len(r[f"{kind}_accuracy"]) == 1 for kind in experiment.KINDS)


def test_cli_refuses_no_epochs(capsys):
    with pytest.raises(SystemExit):
        experiment.main(["--fast", "--epochs", "0"])
    assert "--epochs 0 must be at least 1" in capsys.readouterr().err


def test_python_m_experiments_lists_it():
    assert dict(experiments())["dropout_batchnorm"].startswith("Dropout and batch normalisation")


def test_an_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"precision must be one of \['float64', 'float32'\]"):
        experiment.run(synthetic_mnist(512, 128), fast=True, out=tmp_path, precision="float16")
