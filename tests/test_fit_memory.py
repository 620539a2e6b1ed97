"""experiments.fit_memory runs its three contenders in child processes and reports each
one's peak memory over the train state (the figures themselves are in
docs/performance.md, from the full-size run)."""

import pytest

from experiments import fit_memory


def test_fit_memory_reports_every_contender(tmp_path):
    results = fit_memory.main(["--fast", "--out", str(tmp_path)])
    assert set(results) == set(fit_memory.CONTENDERS)
    for r in results.values():
        assert r["params"] == 784 * 128 + 128 + 3 * (128 * 128 + 128) + 128 * 10 + 10
        assert r["state_gib"] > 0 and r["peak_increase_gib"] >= 0
    assert (tmp_path / "fit_memory.json").exists()


def test_fit_memory_refuses_sizes_below_one(capsys):
    for flag in ("--width", "--depth"):
        with pytest.raises(SystemExit) as exit_:
            fit_memory.main([flag, "0"])
        assert exit_.value.code == 2
        assert f"{flag} 0 must be at least 1" in capsys.readouterr().err
