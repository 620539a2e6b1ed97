"""The port_from_torch experiment in its fast mode: resnet18 converted, every layer within
tolerance, both frameworks timed, the Markdown table written."""

import json

from experiments import port_from_torch


def test_port_from_torch_fast(tmp_path, capsys):
    report = port_from_torch.main(["--fast", "--out", str(tmp_path)])
    assert report["compare_ok"] and report["first_mismatch"] is None
    assert report["image_size"] == 64 and report["batch"] == 2
    for what in ("inference", "train step"):
        assert len(report[what]["jaxnet_s"]) == len(report[what]["torch_s"]) == 3
        assert all(t > 0 for t in report[what]["jaxnet_s"] + report[what]["torch_s"])
        assert report[what]["speedup"] > 0
    markdown = (tmp_path / "compare.md").read_text()
    assert "| layer1.0.conv1 | Conv2d | 2x64x16x16 |" in markdown
    assert "all 76 layer calls within tolerance" in markdown
    assert "| train step |" in markdown and "| inference |" in markdown
    assert json.loads((tmp_path / "report.json").read_text())["compare_ok"] is True
    printed = capsys.readouterr().out
    assert "layer1.0.bn2" in printed and "speed-up (torch / jaxnet)" in printed


def test_port_from_torch_refuses_a_batch_of_one(capsys):
    import pytest

    with pytest.raises(SystemExit):
        port_from_torch.main(["--batch", "1"])
    assert "--batch 1 must be at least 2" in capsys.readouterr().err
