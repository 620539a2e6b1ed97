"""Every Python block of README.md runs as written (each in a fresh namespace), with JAX's
default rank promotion, as a user runs it."""

import re
from pathlib import Path

import jax
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with jax.numpy_rank_promotion("allow"):
        exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "readme"})
