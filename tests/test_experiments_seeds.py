"""The seed experiments, fast mode: both styles print the seeds' numbers and agree."""

import math

import jax
import numpy as np
import pytest

from experiments import (
    activations_losses,
    autograd_basics,
    blocks_params,
    gradient_descent,
    linear_layer,
    positional_encoding,
)
from experiments.__main__ import experiments

SCRIPTS = {
    "autograd_basics": (autograd_basics, ["finite_differences.png"]),
    "gradient_descent": (gradient_descent, ["lr_sweep.png", "linear_regression.png"]),
    "activations_losses": (activations_losses, ["activations.png"]),
    "blocks_params": (blocks_params, ["tied_gradient.png"]),
    "linear_layer": (linear_layer, ["two_layer_sgd.png"]),
    "positional_encoding": (positional_encoding, ["frequency_bands.png"]),
}
BOTH = ("", "torch_")  # jaxnet's figure, then PyTorch's


def run(name, tmp_path, *extra):
    module, plots = SCRIPTS[name]
    report = module.main(["--fast", "--out", str(tmp_path), *extra])
    for plot in plots:
        assert (tmp_path / plot).stat().st_size > 10_000, plot
    return report


def test_autograd_basics_prints_the_seed_values(tmp_path, capsys):
    r = run("autograd_basics", tmp_path)
    # seed 002 prints these five (its h = h * 0.1 loop, float64)
    table = [6.5000000000000036, 6.050000000000021, 6.004999999999148, 6.00050000000074,
             6.000050000043442]  # fmt: skip
    for p in BOTH:
        assert r[p + "finite_differences"] == table
        assert r[p + "derivative"] == 6.0
        assert r[p + "grad_dot"] == [0.0, 4.0, 8.0, 12.0]
        assert r[p + "grad_sum"] == [1.0, 1.0, 1.0, 1.0]
        assert r[p + "grad_detach"] == r[p + "u"] == [0.0, 1.0, 4.0, 9.0]
        assert r[p + "grad_square"] == [0.0, 2.0, 4.0, 6.0]
        assert r[p + "cube"] == [75.0, 150.0, 75.0]
        assert r[p + "reciprocal"] == [-0.25, -0.5, -0.25]
    x, w, b, y = autograd_basics.regression_data()
    expected = 2 / len(y) * x.astype(np.float64).T @ (x @ w + b - y)  # d mean((Xw + b − y)²)/dw
    np.testing.assert_allclose(r["grad_w"], expected, rtol=1e-5)
    np.testing.assert_allclose(r["torch_grad_w"], expected, rtol=1e-5)
    assert r["torch_b_grad_is_none"]
    printed = capsys.readouterr().out
    assert "PyTorch float64 tensor" in printed and "jaxnet (Python float)" in printed
    assert printed.count("6.000050000043442") == 2
    assert printed.count("[75, 150, 75]") == 2
    assert printed.count("[-0.25, -0.5, -0.25]") == 2
    assert printed.count("[0, 4, 8, 12]") == 2


def test_gradient_descent_regimes_and_regression(tmp_path):
    r = run("gradient_descent", tmp_path)
    steps = len(r["trajectories"][0]) - 1
    for p in BOTH:
        assert r[p + "behaviour"] == ["converges", "converges", "oscillates, converges", "diverges"]
        for lr, path in zip(gradient_descent.LEARNING_RATES, r[p + "trajectories"], strict=True):
            # x_t − 5 = (1 − 2 lr)^t (x_0 − 5) on (x − 5)²
            exact = 5.0 - 5.0 * (1 - 2 * lr) ** np.arange(steps + 1)
            np.testing.assert_allclose(path, exact, rtol=1e-5, atol=1e-5)
        for how in ("hand", "autodiff"):
            assert abs(r[f"{p}w_{how}"] - 2.0) < 0.1 and abs(r[f"{p}b_{how}"] - 1.0) < 0.1
            assert abs(r[f"{p}w_{how}"] - r["lstsq_w"]) < 5e-3
            assert abs(r[f"{p}b_{how}"] - r["lstsq_b"]) < 5e-3
        assert r[p + "max_grad_diff"] < 1e-5
        assert abs(r[p + "w_hand"] - r[p + "w_autodiff"]) < 1e-5
        assert r[p + "loss_autodiff"][-1] < r[p + "loss_autodiff"][0] / 10
    assert r["torch_vs_jaxnet_trajectory_max_rel_diff"] < 1e-5
    assert r["torch_vs_jaxnet_param_max_diff"] < 1e-5


def test_activations_losses_gradients_agree(tmp_path):
    r = run("activations_losses", tmp_path)
    for name in activations_losses.ACTIVATIONS:
        assert r[f"{name}_formula_diff"] < 1e-6
        assert r[f"torch_vs_jaxnet_{name}_value_diff"] < 1e-6
        if name != "step":
            assert r[f"torch_{name}_formula_diff"] < 1e-6
            assert r[f"torch_vs_jaxnet_{name}_grad_diff"] < 1e-6
    assert "torch_vs_jaxnet_step_grad_diff" not in r  # torch's step has no gradient
    assert "not implemented" in r["torch_step_error"]
    for loss in ("mse", "cross_entropy"):
        for reduction in ("mean", "sum"):
            key = f"{loss}_{reduction}"
            assert math.isclose(r[f"{key}_loss"], r[f"torch_{key}_loss"], rel_tol=1e-6)
            for p in BOTH:
                assert r[f"{p}{key}_hand_diff"] < 1e-6
            assert r[f"torch_vs_jaxnet_{key}_grad_diff"] < 1e-6
    for key in ("single", "multi"):
        for p in BOTH:
            assert r[f"{p}perceptron_{key}_hand_diff"] < 1e-6
        assert r[f"torch_vs_jaxnet_perceptron_{key}_grad_diff"] < 1e-6


def test_blocks_params_names_inits_tying_custom_layers(tmp_path):
    r = run("blocks_params", tmp_path)
    bound = math.sqrt(6 / (20 + 256))  # Xavier's bound for Linear(20, 256)
    for p in BOTH:
        assert r[p + "block_names"] == [("hidden.weight", (256, 20)), ("hidden.bias", (256,)),
                                        ("out.weight", (10, 256)), ("out.bias", (10,))]  # fmt: skip
        assert r[p + "net0_names"] == [("weight", (256, 20)), ("bias", (256,))]
        assert [n for n, _ in r[p + "net_names"]] == ["0.weight", "0.bias", "2.weight", "2.bias"]
        init = r[p + "init"]
        assert abs(init["normal"]["std"] - 0.01) < 1e-3 and init["normal"]["bias_all_zero"]
        assert init["constant"] == {"all_one": True, "bias_all_zero": True}
        assert init["xavier_42"]["max_abs"] <= bound * (1 + 1e-6)
        assert abs(init["xavier_42"]["std"] / (bound / math.sqrt(3)) - 1) < 0.05
        assert init["xavier_42"]["all_42"]
        assert abs(init["my_init"]["zero_fraction"] - 0.5) < 0.05
        assert init["my_init"]["min_nonzero_abs"] >= 5
        assert r[p + "tied_keys"] == ["0", "2", "6"]
        assert r[p + "tied_equal_before"] and r[p + "tied_equal_after"]
        assert r[p + "tied_alias_value"] == 100.0
        assert r[p + "tied_grad_vs_sum"] < 1e-6
        np.testing.assert_array_equal(r[p + "centered"], [-2.0, -1.0, 0.0, 1.0, 2.0])
        assert abs(r[p + "centered_mean"]) < 1e-6
        assert r[p + "mylinear_input_grad_nonzero"]
        assert r[p + "seq_output_shape"] == (2, 1)
    assert r["tied_grad_uses_differ"]  # the sum is of two different gradients
    assert r["mylinear_params_grad_zero"] and r["torch_mylinear_params_grad_none"]
    assert r["mylinear_live_grad_nonzero"]
    for key in ("block_output", "bias2", "tied_grad", "mylinear_output"):
        assert r[f"torch_vs_jaxnet_{key}_diff"] < 1e-5


def test_linear_layer_and_two_layer_sgd(tmp_path):
    r = run("linear_layer", tmp_path)
    for p in BOTH:
        assert r[p + "weight_shape"] == [3, 2]
        assert r[p + "numpy_diff"] < 1e-6
        assert r[p + "losses"][-1] < r[p + "losses"][0]
    assert r["torch_vs_jaxnet_demo_diff"] < 1e-6
    assert r["torch_vs_jaxnet_output_diff"] < 1e-6
    assert r["torch_vs_jaxnet_grad_diff"] < 1e-6
    np.testing.assert_allclose(r["losses"], r["torch_losses"], rtol=1e-5)
    assert r["torch_vs_jaxnet_param_diff"] < 1e-5


def test_positional_encoding_equals_closures_and_shows_the_trap(tmp_path):
    r = run("positional_encoding", tmp_path)
    for p in BOTH:
        assert r[p + "out_features"] == 63
        assert r[p + "frequencies_log"] == [2.0**k for k in range(10)]
        np.testing.assert_allclose(r[p + "frequencies_linear"], np.linspace(1, 512, 10), rtol=1e-6)
        assert r[p + "trap_max_diff"] > 1.0
        assert r[p + "trap_every_band_is_last"]
    assert r["torch_vs_jaxnet_log_max_diff"] < 1e-6
    assert r["torch_vs_jaxnet_linear_max_diff"] < 1e-4  # sin of ~500 rad in float32


@pytest.mark.parametrize("num_freqs", [4, 3])
def test_positional_encoding_plot_names_the_last_band(num_freqs, tmp_path, monkeypatch):
    monkeypatch.setattr(positional_encoding, "PLOT_FREQS", num_freqs)
    title = positional_encoding.plot(tmp_path / "bands.png")
    last = 2.0 ** (num_freqs - 1)  # log sampling: 1, 2, ..., 2^(F−1)
    assert title == f"closures without defaults: all {2 * num_freqs} = cos({last:g}x)"


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_torch_runs_the_jaxnet_half_alone(name, tmp_path):
    r = run(name, tmp_path, "--no-torch")
    assert [key for key in r if key.startswith("torch")] == []
    assert len(r) >= 5  # jaxnet's figures are all there


def test_python_m_experiments_lists_the_scripts():
    listed = dict(experiments())
    for name in SCRIPTS:
        assert listed[name] and "\n" not in listed[name]


def test_numerical_derivative_table_seed002():
    f = lambda x: 5 * x**2 - 4 * x  # noqa: E731
    hs = [0.1, 0.01, 0.001, 0.0001, 0.00001]
    values = [autograd_basics.numerical_derivative(f, 1.0, h) for h in hs]
    np.testing.assert_allclose(values, [6.5, 6.05, 6.005, 6.0005, 6.00005], rtol=1e-10)
    assert float(jax.grad(f)(1.0)) == 6.0
