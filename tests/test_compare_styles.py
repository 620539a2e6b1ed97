"""The style comparison: the three versions agree, and the report shows the code that ran.

One ``--fast`` run of ``experiments.compare_styles`` (module fixture) feeds every test;
timings are reported, never asserted.
"""

import inspect
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments import compare_styles
from experiments.styles import jaxnet_style, nnx_style, torch_style

MODULES = (torch_style, nnx_style, jaxnet_style)
SECTIONS = ("mlp_block", "parameter_tying", "custom_layers", "training_loop",
            "gradient_accumulation", "lr_schedule", "mnist_step", "cnn_step", "dropout",
            "batchnorm")  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("styles")
    result = compare_styles.main(["--fast", "--out", str(out)])
    return result, out, (out / "styles_report.md").read_text()


def test_every_section_has_its_header_and_all_three_versions(run):
    result, _, markdown = run
    assert list(result["sections"]) == list(SECTIONS)
    titles = ["MLP block", "Parameter tying", "Custom layers", "Training loop",
              "Gradient accumulation", "Learning-rate schedule", "MNIST step",
              "Convolutional network (LeNet step)", "Dropout (randomness)",
              "BatchNorm (state)"]  # fmt: skip
    for number, title in enumerate(titles, start=1):
        assert f"\n## {number}. {title}\n" in markdown
        for style in ("PyTorch", "Flax NNX", "jaxnet"):
            assert f"\n### {title}: {style}\n" in markdown
    assert "\n## 11. Ensembles with jax.vmap (jaxnet only)\n" in markdown
    assert markdown.count("**What jaxnet makes explicit.**") == len(SECTIONS)
    assert markdown.count("**What it costs.**") == len(SECTIONS)


def test_the_three_versions_agree_in_every_section(run):
    result, _, markdown = run
    for name, section in result["sections"].items():
        tolerances = section["tolerances"]
        assert tolerances, name
        for style, key in (("Flax NNX", "torch_vs_nnx"), ("jaxnet", "torch_vs_jaxnet")):
            diffs = section["diffs"][style]
            assert set(diffs) == set(tolerances), (name, style)
            for output, diff in diffs.items():
                assert 0 <= diff <= tolerances[output], (name, style, output, diff)
            assert section["max_abs_diff"][key] == max(diffs.values())
            assert f"{section['max_abs_diff'][key]:.2e}" in markdown
        assert section["agree"], name
    # Tolerances are 1e-6 + 1e-5 * the output's scale: loose only where outputs are large.
    assert result["sections"]["mnist_step"]["tolerances"]["loss"] < 1e-5


def test_dropout_and_batchnorm_outputs_show_what_each_style_claims():
    sections = {s.name: s for s in compare_styles.SECTION_LIST}
    dropout = compare_styles.run_section(sections["dropout"], seed=0)["outputs"]
    batchnorm = compare_styles.run_section(sections["batchnorm"], seed=0)["outputs"]
    for style in ("PyTorch", "Flax NNX", "jaxnet"):
        assert dropout[style]["replay_diff"] == 0  # the same seed or key: the same masks
        assert dropout[style]["redraw_differs"] == 1  # the next call: new masks
        np.testing.assert_array_equal(dropout[style]["kept_values"], [2.0, 2.0])  # 1 / (1 - p)
        assert batchnorm[style]["1.num_batches_tracked"] == 3
        assert np.abs(batchnorm[style]["1.running_var"] - 1).max() > 0.05  # the stats moved


def test_code_blocks_are_the_source_of_the_functions_that_ran(run):
    _, _, markdown = run
    blocks = re.findall(r"```python\n(.*?)```\n", markdown, flags=re.DOTALL)
    expected = [inspect.getsource(getattr(m, name)) for name in SECTIONS for m in MODULES]
    expected.append(inspect.getsource(jaxnet_style.ensemble))
    helpers = (torch_style.initial_weights, nnx_style.torch_names, nnx_style.load_torch_weights,
               nnx_style.state_dict)  # fmt: skip
    expected += [inspect.getsource(helper) for helper in helpers]
    assert blocks == expected


def test_lines_of_code_count_the_extracted_source(run):
    result, _, _ = run
    styles = dict(zip(("PyTorch", "Flax NNX", "jaxnet"), MODULES, strict=True))
    for name, section in result["sections"].items():
        for style, module in styles.items():
            count = section["lines"][style]
            assert count == compare_styles.lines_of_code(getattr(module, name))
            source = inspect.getsource(getattr(module, name))
            assert 5 < count < len(source.splitlines())


def test_lines_of_code_skip_blanks_comments_and_the_docstring():
    def sample(x):
        """A docstring
        on two lines."""
        # a comment

        y = x + 1  # a trailing comment keeps the line
        return y

    assert compare_styles.lines_of_code(sample) == 3


def test_step_times_are_reported_with_ratios(run):
    result, _, markdown = run
    for section in result["sections"].values():
        times = section["step_seconds"]
        assert set(times) == {"PyTorch", "Flax NNX", "jaxnet"}
        assert all(t > 0 for t in times.values())
        for style, ratio in section["speedup_vs_torch"].items():
            assert ratio == pytest.approx(times["PyTorch"] / times[style])
    assert "speed-up vs PyTorch" in markdown
    assert result["timing"]["rounds"] == 3  # --fast


def test_plots_exist_and_are_real_images(run):
    result, out, markdown = run
    assert len(result["plots"]) == 2
    for path in result["plots"]:
        data = Path(path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
        assert width >= 800 and height >= 400
        assert len(data) > 10_000
        assert Path(path).parent == out and f"]({Path(path).name})" in markdown


def test_ensemble_is_eight_distinct_members_equal_to_one_by_one(run):
    result, _, _ = run
    ensemble = result["ensemble"]
    assert ensemble["members"] == 8
    assert ensemble["logits_shape"] == (8, 2, 10)
    assert ensemble["param_shapes"]["0.weight"] == (8, 256, 20)
    assert ensemble["param_shapes"]["2.bias"] == (8, 10)
    assert ensemble["max_abs_diff_vs_one_by_one"] <= 1e-6
    assert ensemble["min_member_difference"] > 1e-3


def test_outputs_are_compared_by_name_and_shape():
    reference = compare_styles.to_numpy({"w": torch.ones(2, 3, requires_grad=True)})
    nested = compare_styles.to_numpy({"w": np.full((2, 3), 1.5, np.float32)})
    assert compare_styles.max_differences(reference, nested, "demo", "jaxnet") == {"w": 0.5}
    flat = compare_styles.to_numpy({"grad": {"0": {"bias": np.zeros(2)}}, "lr": [0.1, 0.05]})
    assert set(flat) == {"grad.0.bias", "lr"} and flat["lr"].shape == (2,)
    with pytest.raises(ValueError, match=r"demo: jaxnet returned outputs \['v'\], PyTorch \['w'\]"):
        compare_styles.max_differences(reference, {"v": np.ones((2, 3))}, "demo", "jaxnet")
    with pytest.raises(ValueError, match=r"demo: output 'w' has shape \(3, 2\) in jaxnet"):
        compare_styles.max_differences(reference, {"w": np.ones((3, 2))}, "demo", "jaxnet")


def test_nnx_loader_names_the_missing_or_misshapen_weight():
    from flax import nnx

    net = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    weights = {
        "weight": np.arange(6, dtype=np.float32).reshape(3, 2),
        "bias": np.ones(3, np.float32),
    }
    nnx_style.load_torch_weights(net, weights)
    np.testing.assert_array_equal(np.asarray(net.kernel[...]), weights["weight"].T)
    np.testing.assert_array_equal(
        np.asarray(nnx_style.state_dict(net)["weight"]), weights["weight"]
    )
    with pytest.raises(ValueError, match="load_torch_weights: no 'bias' in the torch state dict"):
        nnx_style.load_torch_weights(net, {"weight": weights["weight"]})
    with pytest.raises(ValueError, match=r"'weight' expected shape \(2, 3\), got \(3, 3\)"):
        nnx_style.load_torch_weights(net, {**weights, "weight": np.ones((3, 3), np.float32)})


def test_no_torch_flag_is_not_offered(tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare_styles.main(["--no-torch", "--out", str(tmp_path)])
    assert "unrecognized arguments: --no-torch" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seed", "message"), [("-1", "-1 is negative"), ("x", "'x' is not an integer")]
)
def test_bad_seed_is_refused(seed, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare_styles.main(["--fast", "--seed", seed, "--out", str(tmp_path)])
    assert f"argument --seed: {message}" in capsys.readouterr().err
