"""The tensor-ops and lr-schedule experiments, end to end in their ``--fast`` form.

The tensor table: every row of ``experiments.tensor_ops.TORCH_TO_JAX`` runs in both styles and
agrees (float32 rows within |Δ| <= 1e-5 + 1e-5·|torch|, integer and layout rows exactly,
random rows in mean and std within 0.02 σ), and a dtype difference (float64 asked of JAX
without x64) is reported, not cast away; each trap's naive jnp translation differs
from PyTorch while jaxnet.tensor's helper equals it. The schedules: every jaxnet schedule
(and the momentum schedules, and ReduceLROnPlateau on a stalling metric) equals PyTorch's
scheduler to 1e-12 in float64 and 1e-6 in float32; seed 000's curve
starts at ``lr_init · lr_delay_mult`` (with a delay), passes the geometric mean of
``lr_init`` and ``lr_final`` half way and ends at ``lr_final``.
"""

import math
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import lr_schedules, tensor_ops
from experiments.__main__ import experiments
from jaxnet import tensor as jt


@pytest.fixture(scope="module")
def tensor_report(tmp_path_factory):
    return tensor_ops.main(["--fast", "--out", str(tmp_path_factory.mktemp("tensor_ops"))])


@pytest.fixture(scope="module")
def lr_report(tmp_path_factory):
    return lr_schedules.main(["--fast", "--out", str(tmp_path_factory.mktemp("lr_schedules"))])


# ------------------------------------------------------------------ tensor_ops


def test_every_table_row_runs_in_both_styles_and_agrees(tensor_report):
    rows = [r.torch for r in tensor_ops.TORCH_TO_JAX]
    assert tensor_report["rows"] == rows
    assert set(tensor_ops.checks(None)) == set(rows)  # no check without a row, nor the reverse
    kinds = {expr: check.kind for expr, check in tensor_ops.checks(None).items()}
    bound = {"exact": 0.0, "values": 1e-5, "moments": tensor_ops.MOMENTS_TOL}
    for expr in rows:
        assert tensor_report["torch_row_agrees"][expr], expr
        assert tensor_report["torch_row_diff"][expr] <= bound[kinds[expr]], expr
    assert tensor_ops.format_table() in Path(tensor_report["markdown"]).read_text()


def test_dtype_differences_are_reported_not_hidden(tensor_report):
    """Values are compared in float64; a dtype difference is shown, not cast away."""
    import torch

    row = "x.float(), x.to(torch.float64)"
    assert tensor_report["torch_row_dtypes_match"][row]  # the test configuration enables x64
    with jax.enable_x64(False):  # the user's default: JAX keeps float32
        rows = {r["torch"]: r for r in tensor_ops.run_rows(tensor_ops.inputs(True), torch)}
    assert rows[row]["torch_dtype"] == "float32, float64"  # every leaf's dtype, not the first
    assert rows[row]["jax_dtype"] == "float32"
    assert rows[row]["agrees"] and not rows[row]["dtypes_match"]
    assert "| values yes, dtype differs |" in tensor_ops.rows_table([rows[row]])
    same = tensor_ops.rows_table([rows["x.t()"]])
    assert rows["x.t()"]["dtypes_match"] and same.endswith("| yes |")
    int_row = "x.argmax(dim=1, keepdim=True), x.argmin(dim=1)"  # torch: int64 indices
    assert rows[int_row]["torch_dtype"] == "int64"
    assert rows[int_row]["dtypes_match"] == (rows[int_row]["jax_dtype"] == "int64")


def test_each_trap_bites_naively_and_the_helper_fixes_it(tensor_report):
    found = tensor_report["torch_traps"]
    for trap in tensor_ops.traps(None):
        result = found[trap.name]
        assert not result["naive_equals_torch"], trap.name
        if trap.helper_is_torch:
            assert result["helper_equals_torch"], trap.name
    # the two whose fix is no jnp function: where(cond) cannot be traced (the helper says
    # so), and view of a transposed tensor raises in torch while JAX gives torch's reshape
    where = tensor_report["traps"]["where(cond) under jit"]
    assert where["helper"].startswith("TypeError: where:")
    view = tensor_report["traps"]["view of a transposed tensor"]
    assert found["view of a transposed tensor"]["torch"].startswith("RuntimeError")
    assert view["naive_equals_helper"] and view["helper"] == "[0. 4. 1. 5. 2. 6.]"
    covered = " ".join(found)
    for op in (
        "chunk",
        "split",
        "gather",
        "std",
        "var",
        "topk",
        "kthvalue",
        "expand",
        "repeat",
        "clamp",
        "norm",
        "where",
        "view",
    ):
        assert op in covered, op


def test_compare_sees_values_structure_and_errors():
    failure = tensor_ops.Failure("ValueError", "bad")
    a = np.array([1.0, 2.0], np.float32)
    assert tensor_ops.compare(a, a + 1e-7, "values") == (pytest.approx(1.19e-7, rel=0.01), True)
    assert not tensor_ops.compare(a, a + 1e-7, "exact")[1]
    assert tensor_ops.compare(a, a[:1], "values") == (math.inf, False)
    assert tensor_ops.compare((a, a), a, "values") == (math.inf, False)
    assert tensor_ops.compare(failure, failure._replace(error="TypeError"), "values")[1]
    assert tensor_ops.compare(failure, a, "values") == (math.inf, False)
    assert tensor_ops.compare(np.array([np.nan]), np.array([0.0]), "values")[1] is False


# ------------------------------------------------------------------ lr_schedules


def test_every_schedule_matches_torch_float64(lr_report):
    """Every scheduler torch ships (SWALR aside), the momentum OneCycleLR and CyclicLR
    cycle, seed 000's helper and ReduceLROnPlateau, each beside torch's."""
    import torch

    names = [
        *lr_schedules.jaxnet_schedules(50),
        *lr_schedules.seed000_settings(True),
        "ReduceLROnPlateau",
    ]
    assert lr_report["schedules"] == names
    assert len(names) == 19
    shipped = {
        name
        for name, value in vars(torch.optim.lr_scheduler).items()
        if isinstance(value, type)
        and issubclass(value, torch.optim.lr_scheduler.LRScheduler)
        and not name.startswith("_")
    }
    assert shipped - set(names) == {"LRScheduler"}
    assert {"OneCycleLR momentum", "CyclicLR momentum"} <= set(names)
    assert lr_report["dtype"] == "float64"  # the test configuration enables x64
    for name in names:
        assert lr_report["torch_max_diff"][name] <= 1e-12, name
    assert Path(lr_report["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_schedule_matches_torch_float32():
    """The user's path: without x64 the schedules compute in float32."""
    steps, seed000 = 50, lr_schedules.seed000_settings(True)
    theirs = lr_schedules.run_torch(steps, seed000)
    with jax.enable_x64(False):
        ours = lr_schedules.run_jaxnet(steps, seed000)
    for name, lrs in ours.items():
        assert lrs.dtype == np.float32
        np.testing.assert_allclose(lrs, theirs[name], rtol=0, atol=1e-6, err_msg=name)


def test_seed000_curve(lr_report):
    for name, kw in lr_schedules.seed000_settings(True).items():
        delay = kw.get("lr_delay_steps", 0)
        first = kw["lr_init"] * (kw["lr_delay_mult"] if delay > 0 else 1.0)
        half = math.sqrt(kw["lr_init"] * kw["lr_final"])  # log-linear: the geometric mean
        for figures in (lr_report[name], lr_report[f"torch_{name}"]):
            assert figures["lr_at_0"] == pytest.approx(first, rel=1e-12)
            assert figures[f"lr_at_{kw['max_steps'] // 2}"] == pytest.approx(half, rel=1e-12)
            assert figures[f"lr_at_{kw['max_steps']}"] == pytest.approx(kw["lr_final"], rel=1e-12)
        if delay:
            assert lr_report[name][f"lr_at_{delay}"] == pytest.approx(
                kw["lr_init"] * (kw["lr_final"] / kw["lr_init"]) ** (delay / kw["max_steps"]),
                rel=1e-12,
            )  # the delay is over: the plain log-linear value


# ------------------------------------------------------------------ both


def test_no_torch_runs_omit_the_torch_figures(tmp_path, capsys):
    tensor = tensor_ops.main(["--fast", "--no-torch", "--out", str(tmp_path)])
    lr = lr_schedules.main(["--fast", "--no-torch", "--out", str(tmp_path)])
    for report in (tensor, lr):
        assert report
        assert not [key for key in report if key.startswith("torch")]
    assert tensor["traps"]["repeat"]["helper"] == "[1. 2. 3. 1. 2. 3.]"
    assert not tensor["traps"]["repeat"]["naive_equals_helper"]
    assert (tmp_path / "lr_schedules.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "max abs diff" not in out and "max |Δ|" not in out
    assert "update_learning_rate" not in out


def test_listed_by_python_m_experiments():
    listed = dict(experiments())
    assert listed["tensor_ops"].startswith("The PyTorch→JAX tensor table")
    assert listed["lr_schedules"].startswith("Learning-rate schedules")


# ----------------------------------------------------------------------------- the mapping table


def test_torch_to_jax_rows_are_well_formed():
    assert len(tensor_ops.TORCH_TO_JAX) >= 40
    for row in tensor_ops.TORCH_TO_JAX:
        assert isinstance(row, tensor_ops.Correspondence)
        for field in row:
            assert isinstance(field, str) and field.strip() == field and field
            assert "|" not in field and "\n" not in field and "`" not in field
    assert len({row.torch for row in tensor_ops.TORCH_TO_JAX}) == len(tensor_ops.TORCH_TO_JAX)


def test_torch_to_jax_names_every_helper_and_only_real_ones():
    named = set()
    for row in tensor_ops.TORCH_TO_JAX:
        named |= set(re.findall(r"jaxnet\.tensor\.(\w+)", row.jax))
    # jt.__all__ leaves out max and min, which shadow the builtins (test_tensor pins that)
    helpers = {name for name in [*jt.__all__, "max", "min"] if name.islower()}
    assert named == helpers


def test_format_table_is_markdown_with_every_row():
    table = tensor_ops.format_table()
    lines = table.splitlines()
    assert lines[:2] == ["| PyTorch | JAX | difference |", "|---|---|---|"]
    assert len(lines) == 2 + len(tensor_ops.TORCH_TO_JAX)
    for line, row in zip(lines[2:], tensor_ops.TORCH_TO_JAX, strict=True):
        assert line == f"| `{row.torch}` | `{row.jax}` | {row.note} |"
        assert line.count("|") == 4
