"""End to end: the main job on a small learnable MNIST-shaped data set, both styles."""

import numpy as np
import pytest

from experiments import mnist_mlp
from jaxnet import datasets
from jaxnet.datasets.mnist import IDX_NAMES


def synthetic_mnist(n_train=1024, n_test=256, seed=0):
    """Ten random 28x28 prototypes plus noise: learnable, so accuracy must beat chance."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, (10, 28, 28))

    def split(n):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        noise = rng.normal(0, 60, (n, 28, 28))
        images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
        return images, labels

    return datasets.MNIST(*split(n_train), *split(n_test))


@pytest.mark.parametrize("recipe", ["seed", "best"])
def test_main_job_learns_matches_torch_and_checkpoints(recipe, tmp_path):
    report = mnist_mlp.run(synthetic_mnist(), recipe, compare_torch=True, out=tmp_path,
                           epochs=3, progress=False)  # fmt: skip
    assert len(report["epoch_seconds"]) == len(report["torch_epoch_seconds"]) == 3
    assert report["epoch_accuracy"] == pytest.approx(report["torch_epoch_accuracy"], abs=1 / 256)
    assert report["epoch_loss"][-1] < report["epoch_loss"][0]
    assert report["accuracy"] > 0.25  # chance is 0.1; the seed recipe gets 6 steps here
    assert abs(report["accuracy"] - report["torch_accuracy"]) <= 1 / 256  # one test example
    assert report["max_rel_loss_diff"] < 1e-5  # float32 (measured about 1e-7)
    assert report["checkpoint_max_diff"] < 1e-5
    assert (tmp_path / f"mnist_mlp_{recipe}.png").stat().st_size > 10_000
    assert (tmp_path / f"mnist_mlp_{recipe}.safetensors").exists()


def test_speedup_is_the_median_of_epoch_ratios_and_trusted_on_a_quiet_machine():
    # torch / jaxnet per epoch: 2.0, 2.1, 2.0 -> median 2.0
    speedup, unreliable = mnist_mlp.speedup_figure([1.0, 1.0, 1.1], [2.0, 2.1, 2.2], [0.4, 1.9], 2)
    assert speedup == pytest.approx(2.0)
    assert unreliable is None


@pytest.mark.parametrize(
    ("loads", "seconds", "reason"),
    [
        ([3.2, 1.0], [2.0, 2.0], "the machine was busy (load average 3.2 on the 2 cores"),
        ([0.1, 0.1], [2.0, 5.0], "the per-epoch speed-ups spread from 2.00x to 5.00x"),
    ],
)
def test_speedup_on_a_busy_or_unsteady_machine_is_called_unreliable(loads, seconds, reason):
    _, unreliable = mnist_mlp.speedup_figure([1.0, 1.0], seconds, loads, 2)
    assert reason in unreliable


def test_a_busy_machine_gets_no_bare_speed_up(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(mnist_mlp, "load_average", lambda: 64.0)
    report = mnist_mlp.run(synthetic_mnist(), "seed", compare_torch=True, out=tmp_path,
                           epochs=2, progress=False)  # fmt: skip
    printed = capsys.readouterr().out
    assert report["load_average"] == [64.0, 64.0]
    assert "the machine was busy (load average 64.0" in report["speedup_unreliable"]
    line = next(line for line in printed.splitlines() if "speed-up" in line)
    assert "unreliable, the machine was busy (load average 64.0" in line
    assert "do not quote it" in line


def test_cli_reads_idx_directory(tmp_path, capsys):
    """The --data-dir path: IDX files the user already has, written here at full size."""
    data = synthetic_mnist(60_000, 10_000)
    for field, name in IDX_NAMES.items():
        array = getattr(data, field)
        header = bytes([0, 0, 8, array.ndim]) + b"".join(
            int(d).to_bytes(4, "big") for d in array.shape)  # fmt: skip
        (tmp_path / name).write_bytes(header + array.tobytes())
    report = mnist_mlp.main(["--data-dir", str(tmp_path), "--subset", "2048", "--epochs", "1",
                             "--recipe", "best", "--out", str(tmp_path / "out")])  # fmt: skip
    assert report["accuracy"] > 0.3
    assert "final test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subset", "0"], "--subset 0 must be at least the seed recipe's batch size 512"),
        (["--subset", "-5"], "--subset -5 must be at least"),
        (["--subset", "100"], "--subset 100 must be at least"),
        (["--recipe", "best", "--subset", "100"], "the best recipe's batch size 128"),
        (["--epochs", "0"], "--epochs 0 must be at least 1"),
        (["--devices", "0"], "--devices 0 must be a positive divisor"),
        (["--devices", "3"], "--devices 3 must be a positive divisor of the seed recipe's"),
        (["--data-dir", "missing"], "is not an existing directory"),
    ],
)
def test_cli_refuses_bad_arguments(args, message, tmp_path, capsys):
    args = [a.replace("missing", str(tmp_path / "missing")) for a in args]
    with pytest.raises(SystemExit) as error:
        mnist_mlp.main([*args, "--out", str(tmp_path / "out")])
    assert error.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_cli_refuses_an_out_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "out"
    path.write_text("")
    with pytest.raises(SystemExit):
        mnist_mlp.main(["--out", str(path)])
    assert "argument --out:" in capsys.readouterr().err


def test_no_torch_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        mnist_mlp.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split()).replace(
        "--compare- torch", "--compare-torch"
    )
    assert "never train the PyTorch twin, even with --compare-torch" in help_text
    assert "torch still loads the checkpoint to check it" in help_text
