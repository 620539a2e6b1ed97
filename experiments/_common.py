"""What every experiment script shares: its output directory, the ``--no-torch`` flag and
how it saves a figure."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--out`` (where plots go) and ``--no-torch``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory for plots and files (default: $TMPDIR/jaxnet-runs/<script>)",
    )
    p.add_argument("--no-torch", action="store_true", help="run the jaxnet half alone")
    return p


def output_dir(out: Path | None, name: str) -> Path:
    """``out`` or ``$TMPDIR/jaxnet-runs/<name>``, created; never inside the repository."""
    path = out if out is not None else Path(tempfile.gettempdir()) / "jaxnet-runs" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def plot_backend() -> None:
    """Select matplotlib's file-only backend (experiments write PNGs, never open windows)."""
    os.environ.setdefault("MPLBACKEND", "Agg")


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Lay out ``fig``, write it to ``path`` and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def max_abs_diff(a, b) -> float:
    """The largest absolute difference of two arrays (torch or jax values), in float64."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
