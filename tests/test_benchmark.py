"""Smoke test of the benchmark in its tiny configuration (no timing is asserted)."""

import json

import pytest

from experiments import benchmark


def test_benchmark_fast_writes_its_tables(tmp_path):
    report = benchmark.main(["--fast", "--rounds", "1", "--no-progress", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    markdown = (tmp_path / "benchmark.md").read_text()
    expected = {"PyTorch eager", "jaxnet step", "jaxnet epoch", "raw JAX step", "raw JAX epoch",
                "Flax NNX", "Equinox"}  # fmt: skip
    for name, results in saved["workloads"].items():
        assert name in markdown
        if "MLP" in name:
            assert set(results) == expected
        for contender in results:
            assert f"| {contender} |" in markdown
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
