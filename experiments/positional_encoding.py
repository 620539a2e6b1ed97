"""Positional encoding (seed 000): the closure-list embedder vs nn.PositionalEncoding, and the trap.

The seed's NeRF embedder builds one closure per frequency band and function,
``lambda x, p_fn=p_fn, freq=freq: p_fn(x * freq)``, and concatenates their outputs.
The default arguments matter: they capture ``p_fn`` and ``freq`` when each lambda is
made. Without them (``lambda x: p_fn(x * freq)``) every closure looks the names up when
it is *called*, after the loop has finished, so every band computes the last function
at the last frequency, ``cos(x · 2⁹)``. That is Python's late binding, not torch's:
closures over ``jnp`` functions fall into it the same way (ruff reports it as B023).
``jaxnet.nn.PositionalEncoding`` has no closures: it computes all bands in one
broadcast, with the same output order.

    python -m experiments.positional_encoding
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from jaxnet import nn

NUM_FREQS = 10  # NeRF positions: multires 10, max_freq_log2 9 -> 3 * (1 + 2 * 10) = 63 features
PLOT_FREQS = 4


def closure_embedder(sin, cos, cat, freq_bands, *, bind_defaults: bool = True):
    """The seed's embedder over any library's ``sin``, ``cos``, ``cat(list, dim)``.

    ``bind_defaults=False`` is the trap: the lambdas read ``p_fn`` and ``freq`` when called.
    """
    embed_fns = [lambda x: x]  # include_input
    for freq in freq_bands:
        for p_fn in (sin, cos):
            if bind_defaults:
                embed_fns.append(lambda x, p_fn=p_fn, freq=freq: p_fn(x * freq))
            else:
                embed_fns.append(lambda x: p_fn(x * freq))  # noqa: B023 -- the trap on purpose
    return lambda x: cat([fn(x) for fn in embed_fns], -1)


def inputs(fast: bool) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (64 if fast else 1024, 3)).astype(np.float32)


def trap_figures(wrong: np.ndarray, right: np.ndarray, x: np.ndarray, last_freq: float) -> dict:
    """How wrong the late-bound embedder is, and that every band is ``cos(x · last_freq)``."""
    bands = wrong[..., x.shape[-1] :].reshape(*x.shape[:-1], -1, x.shape[-1])  # (N, 2F, D)
    last = np.cos(x.astype(np.float64) * last_freq)[..., None, :]  # (N, 1, D)
    return {
        "trap_max_diff": _common.max_abs_diff(wrong, right),
        "trap_every_band_is_last": bool(np.allclose(bands, last, atol=1e-3)),
    }


def run_jaxnet(x: np.ndarray) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for sampling in ("log", "linear"):
        layer = nn.PositionalEncoding(3, NUM_FREQS, log_sampling=sampling == "log")
        res[f"frequencies_{sampling}"] = np.asarray(layer.frequencies()).tolist()
        res[f"encoding_{sampling}"] = np.asarray(jax.jit(layer.apply)({}, x))
    res["out_features"] = layer.out_features
    freqs = jnp.asarray(res["frequencies_log"], jnp.float32)
    wrong = closure_embedder(jnp.sin, jnp.cos, jnp.concatenate, freqs, bind_defaults=False)
    res["trap_output"] = np.asarray(wrong(jnp.asarray(x)))
    res.update(trap_figures(res["trap_output"], res["encoding_log"], x, float(freqs[-1])))
    return res


def run_torch(x: np.ndarray) -> dict[str, Any]:
    import torch

    res: dict[str, Any] = {}
    tx = torch.from_numpy(x)
    max_freq_log2 = NUM_FREQS - 1
    bands = {
        "log": 2.0 ** torch.linspace(0.0, max_freq_log2, steps=NUM_FREQS),
        "linear": torch.linspace(2.0**0.0, 2.0**max_freq_log2, steps=NUM_FREQS),
    }
    for sampling, freq_bands in bands.items():
        embed = closure_embedder(torch.sin, torch.cos, torch.cat, freq_bands)
        res[f"frequencies_{sampling}"] = freq_bands.tolist()
        res[f"encoding_{sampling}"] = embed(tx).numpy()
    res["out_features"] = res["encoding_log"].shape[-1]
    wrong = closure_embedder(torch.sin, torch.cos, torch.cat, bands["log"], bind_defaults=False)
    res["trap_output"] = wrong(tx).numpy()
    res.update(trap_figures(res["trap_output"], res["encoding_log"], x, bands["log"][-1].item()))
    return res


def plot(path: Path) -> str:
    """sin and cos of each band over ``x ∈ [−1, 1]`` (one input feature), and the trap.

    Returns the trap panel's title, which names the layer's highest frequency."""
    _common.plot_backend()
    import matplotlib.pyplot as plt

    x = np.linspace(-1, 1, 801, dtype=np.float32)[:, None]  # (N, 1)
    layer = nn.PositionalEncoding(1, PLOT_FREQS)
    encoded = np.asarray(layer.apply({}, x))  # (N, 1 + 2F): x, sin f0 x, cos f0 x, ...
    wrong = closure_embedder(jnp.sin, jnp.cos, jnp.concatenate, layer.frequencies(),
                             bind_defaults=False)(jnp.asarray(x))  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), sharey=True)
    for k, freq in enumerate(np.asarray(layer.frequencies())):
        axes[0].plot(x[:, 0], encoded[:, 1 + 2 * k], label=f"sin({freq:g}x)")
        axes[1].plot(x[:, 0], encoded[:, 2 + 2 * k], label=f"cos({freq:g}x)")
    for j in range(1, wrong.shape[1]):
        axes[2].plot(x[:, 0], wrong[:, j], lw=3 - 2 * j / wrong.shape[1])
    axes[0].set(title="sin bands", xlabel="x")
    axes[1].set(title="cos bands", xlabel="x")
    last = float(layer.frequencies()[-1])  # the late-bound closures all read the last band
    trap_title = f"closures without defaults: all {2 * PLOT_FREQS} = cos({last:g}x)"
    axes[2].set(title=trap_title, xlabel="x")
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        ax.legend(fontsize=8, loc="lower left")
    _common.save_figure(fig, path)
    return trap_title


def run(*, fast: bool = False, out: Path | None = None, with_torch: bool = True) -> dict[str, Any]:
    """Compare, print and plot; returns jaxnet's figures and, with torch, ``torch_*``."""
    out = _common.output_dir(out, "positional_encoding")
    x = inputs(fast)
    ours = run_jaxnet(x)
    theirs = run_torch(x) if with_torch else {}

    print(f"{len(x)} points in [−1, 1]³, num_freqs {NUM_FREQS}, include_input: "
          f"{ours['out_features']} features")  # fmt: skip
    report = {k: v for k, v in ours.items() if not k.endswith("_output") and "encoding" not in k}
    for sampling in ("log", "linear"):
        freqs = ", ".join(f"{f:g}" for f in ours[f"frequencies_{sampling}"])
        print(f"  {sampling} sampling, bands [{freqs}]")
        if theirs:
            gap = _common.max_abs_diff(ours[f"encoding_{sampling}"], theirs[f"encoding_{sampling}"])
            report[f"torch_vs_jaxnet_{sampling}_max_diff"] = gap
            report[f"torch_frequencies_{sampling}"] = theirs[f"frequencies_{sampling}"]
            print(f"    closure list (PyTorch) vs PositionalEncoding (jaxnet): max diff {gap:.2e}")
    if theirs:
        report.update(torch_out_features=theirs["out_features"],
                      torch_trap_max_diff=theirs["trap_max_diff"],
                      torch_trap_every_band_is_last=theirs["trap_every_band_is_last"])  # fmt: skip

    last = ours["frequencies_log"][-1]
    print(f"\nlambdas without default arguments: every band computes cos(x · {last:g})")
    for name, res in (("PyTorch", theirs), ("jnp", ours)):
        if res:
            print(f"  {name:8s} max |late-bound − correct| {res['trap_max_diff']:.3f}; every band "
                  f"equals cos(x · {last:g}): {res['trap_every_band_is_last']}")  # fmt: skip
    right, wrong = ours["encoding_log"][0, 3:9], ours["trap_output"][0, 3:9]
    print(f"  first point, features 3..8: correct {np.array2string(right, precision=3)}")
    print(f"  {'':29s}late-bound {np.array2string(wrong, precision=3)}")

    report["plot"] = str(out / "frequency_bands.png")
    plot(Path(report["plot"]))
    print(f"plot {report['plot']}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _common.parser(__doc__, fast="64 points instead of 1024 (for CI)").parse_args(argv)
    return run(fast=args.fast, out=args.out, with_torch=not args.no_torch)


if __name__ == "__main__":
    main()
