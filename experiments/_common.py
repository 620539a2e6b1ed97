"""What every experiment script shares: its argument parser (``--out``, and ``--no-torch``
where a script can run without PyTorch), its output directory, how it saves a figure,
the interleaved order of timing rounds, the machine description and the PyTorch twin of
the seed MLP."""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SEED_MLP_SIZES = (784, 256, 64, 10)


def _out_path(value: str) -> Path:
    """``--out``'s type: a directory, or a path that can become one (its nearest existing
    ancestor is a directory)."""
    path = Path(value)
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise argparse.ArgumentTypeError(f"{ancestor} exists and is not a directory")
            break
    return path


def parser(
    doc: str,
    *,
    fast: str | None = None,
    no_torch: bool = True,
    no_torch_help: str = "run the jaxnet half alone",
) -> argparse.ArgumentParser:
    """An argument parser described by the first line of ``doc`` (the script's docstring),
    with ``--out`` (where plots and files go; refused when it names something that is not
    a directory); unless ``no_torch`` is false (scripts that cannot run without PyTorch),
    ``--no-torch`` with ``no_torch_help`` as its help; and, when ``fast`` is given,
    ``--fast`` (the short run the tests use) with ``fast`` as its help."""
    # No abbreviations: benchmark's --no-torch-compile would take a --no-torch.
    p = argparse.ArgumentParser(description=doc.splitlines()[0], allow_abbrev=False)
    p.add_argument(
        "--out",
        type=_out_path,
        default=None,
        help="output directory for plots and files (default: $TMPDIR/jaxnet-runs/<script>)",
    )
    if no_torch:
        p.add_argument("--no-torch", action="store_true", help=no_torch_help)
    if fast is not None:
        p.add_argument("--fast", action="store_true", help=fast)
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


def round_order(names: list[str], r: int) -> list[str]:
    """The order of timing round ``r``: ``names`` rotated left by ``r``, so that over the
    rounds every contender runs in every position (interleaved rounds)."""
    shift = r % len(names)
    return names[shift:] + names[:shift]


def machine_info(flax: bool = False) -> dict[str, Any]:
    """CPU count, platform, JAX and PyTorch versions, torch's threads, JAX's device (and
    Flax's version with ``flax``): what a timing report states about its machine."""
    import jax
    import torch

    info = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(jax.devices()[0]),
    }
    if flax:
        import flax as flax_module

        info["flax"] = flax_module.__version__
    return info


def torch_mlp(sizes: tuple[int, ...] = SEED_MLP_SIZES):
    """The PyTorch twin of ``jaxnet.nn.MLP(sizes[0], sizes[1:-1], sizes[-1])``: Linear
    layers with ReLU between them (the seed's 784-256-64-10 MLP by default)."""
    import torch

    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(torch.nn.ReLU())
        layers.append(torch.nn.Linear(n_in, n_out))
    return torch.nn.Sequential(*layers)
