"""PyTorch, Flax NNX and jaxnet side by side: nine small programs, their outputs, length and speed.

Runs every section of :mod:`experiments.styles` in the three styles from the same
initial weights (torch's default initialisation, copied into NNX and jaxnet), checks
that the outputs agree, counts lines of code, times each section's repeated unit of work
(medians of interleaved rounds, with ratios to PyTorch) and writes ``styles_report.md``
— with the source of every version, taken by ``inspect.getsource`` from the functions
that ran — plus two plots, to the output directory.

    python -m experiments.compare_styles           # full timing, for reading
    python -m experiments.compare_styles --fast    # few timing repeats (the CI smoke test)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import math
import statistics
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments import _common
from experiments.styles import jaxnet_style, nnx_style, torch_style
from jaxnet import nn

STYLES = {"PyTorch": torch_style, "Flax NNX": nnx_style, "jaxnet": jaxnet_style}
REPORT = "styles_report.md"
TIME_PLOT = "styles_step_time.png"
LINES_PLOT = "styles_lines_of_code.png"
# An output agrees with PyTorch's when max |other - torch| <= ATOL + RTOL * max |torch|.
RTOL, ATOL = 1e-5, 1e-6


def _regression(rng: np.random.Generator, shape: tuple[int, ...], w: list[float], b: float):
    """Features ``(..., len(w))`` and noisy targets ``x @ w + b`` of shape ``(..., 1)``."""
    x = rng.standard_normal((*shape, len(w))).astype(np.float32)
    y = x @ np.asarray(w, np.float32)[:, None] + b + 0.01 * rng.standard_normal((*shape, 1))
    return x, y.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Section:
    name: str  # the function's name in every style module
    title: str
    data: Callable[[np.random.Generator], tuple]  # the inputs after ``weights``
    explicit: str  # what the functional version makes explicit
    cost: str  # what that costs


SECTION_LIST = (
    Section(
        "mlp_block",
        "MLP block",
        lambda rng: (rng.random((2, 20), dtype=np.float32),),
        """The PyTorch and NNX blocks create their parameters in the constructor and keep
        them on the object, so `net(x)` reads state the call does not show. The jaxnet block
        is written as torch's is, a constructor assigning `hidden` and `out` and a
        `forward`, but the constructor only records the structure: `net.init(key)` returns
        the parameters as a dict whose dotted paths are torch's `state_dict` keys
        (`hidden.weight`, `out.bias`) in torch's order, and `net.apply(params, X)` is a
        pure function of them. That is why torch's initial weights load with one
        `net.load_state_dict(weights)` call, with no renaming and no transposes, while NNX
        needs a translation of names and layout (its `Linear.kernel` is `[in, out]`, the
        transpose of torch's `weight`; see the appendix).""",
        """`forward` takes a `scope` (this call's view of the parameters, mode and key) and
        passes it to every child, `self.hidden(scope, X)`; and the parameters are not on
        the object, so looking at them means holding the `params` dict and passing it back
        into every call.""",
    ),
    Section(
        "parameter_tying",
        "Parameter tying",
        lambda rng: (rng.random((2, 4), dtype=np.float32),),
        """In the object styles tying is object identity: the shared module appears twice
        and its gradient accumulates into one `.grad` (PyTorch) or one `nnx.Param` (NNX).
        In jaxnet the same layer object at positions 2 and 4 is stored once in the params,
        under `"2"` (where torch's `named_parameters()` lists it); both positions read it,
        and plain `jax.grad` returns one gradient for it, the sum over both uses.
        `net.load_state_dict(weights)` accepts torch's repeated `4.*` keys and checks that
        they equal `2.*`.""",
        """Changing a tied weight is not an in-place write: jaxnet builds a new params tree
        (`.at[0, 0].set(100.0)` inside two rebuilt dicts) where PyTorch writes
        `net[2].weight[0, 0] = 100.0`. In exchange the old `params` stay valid, and nothing
        that holds them sees the edit.""",
    ),
    Section(
        "custom_layers",
        "Custom layers",
        lambda rng: (rng.random((4, 64), dtype=np.float32),),
        """A parameter-free layer is a function in jaxnet (`nn.Lambda`), a class in the
        object styles. A parameterised layer states where its randomness comes from:
        jaxnet's `nn.Parameter(shape, jax.random.normal)` declares an initialiser that
        `net.init(key)` calls with a key of its own split from `key`, NNX draws from the
        `nnx.Rngs` stream
        passed to the constructor, and PyTorch's `torch.randn` reads the global generator
        seeded by `torch.manual_seed`, which the layer's code does not show. Seed 003's
        original `MyLinear` read `self.weight.data`, which silently detaches the parameter
        from autograd; jaxnet has no `.data`, and blocking a gradient takes an explicit
        `jax.lax.stop_gradient` (`jaxnet.autograd.detach`).""",
        """A jaxnet parameter is a declaration (a shape and an initialiser), not an array:
        its value lives in the params dict and `forward` reads it as `scope.weight`; and
        both JAX versions
        broadcast the bias explicitly (`[None, :]`), as jaxnet does everywhere so that
        accidental rank promotion can be made an error.""",
    ),
    Section(
        "training_loop",
        "Training loop",
        lambda rng: _regression(rng, (10, 10), [2.0, -3.4], 4.2),
        """PyTorch's step works by side effects: `backward()` writes `.grad` into every
        parameter, `optimizer.step()` overwrites the parameters in place, and `zero_grad()`
        must clear `.grad` before the next backward. NNX keeps that shape
        (`optimizer.update(net, grads)` mutates the module) and compiles it with `nnx.jit`.
        The jaxnet step is a pure function `(params, opt_state, x, y) -> (params,
        opt_state, loss)`: gradients are the return value of `jax.value_and_grad`, the
        optimiser is an `optax.GradientTransformation` whose state is data, and nothing
        accumulates, so there is nothing to zero. Being pure, it compiles with `jax.jit`,
        and the same inputs give the same result: the timed step is re-run on identical
        inputs.""",
        """Every piece of state is threaded by hand: the loop rebinds `params, opt_state`
        at each step, and forgetting to would train from the same start every time.
        `jaxnet.train.TrainState` and `train_step` package this (the MNIST
        section).""",
    ),
    Section(
        "gradient_accumulation",
        "Gradient accumulation",
        lambda rng: (
            rng.standard_normal((4, 8, 8), dtype=np.float32),
            rng.standard_normal((4, 8, 1), dtype=np.float32),
        ),
        """PyTorch accumulates by side effect: every `backward()` adds into `.grad` until
        `zero_grad()`, and this program relies on it (the mechanism that also makes a
        forgotten `zero_grad()` a silent bug). In jaxnet gradients are values, so the
        accumulation is a sum you can see: `jaxnet.autograd.accumulate_grads` takes
        `jax.grad` of each micro-batch inside one `lax.scan` and adds the trees, and the
        mean is an explicit division in the loss. NNX gets one gradient `State` per
        micro-batch from `nnx.grad` and sums them with `jax.tree.map`.""",
        """The tree arithmetic is code you write, and for the scan the micro-batches are
        stacked arrays with a leading axis (`(4, 8, 8)`) rather than any iterable.""",
    ),
    Section(
        "lr_schedule",
        "Learning-rate schedule",
        lambda rng: (*_regression(rng, (16,), [1.0, -2.0, 0.5], 0.3), 10),
        """PyTorch's scheduler mutates `optimizer.param_groups[0]['lr']` once per
        `scheduler.step()`, so the lr of a step depends on how many times, and in which
        order with `optimizer.step()`, the two were called. jaxnet's
        `CosineAnnealingLR(0.1, T_max)` is a pure function `step -> lr`, and the optimiser
        evaluates it at the update count kept in its own state: the whole schedule is one
        vectorised call (`schedule(jnp.arange(steps))`) without training, and restoring an
        optimiser state restores its lr. NNX uses optax schedules the same way;
        `optax.cosine_decay_schedule` equals torch's cosine up to `T_max` and holds the
        minimum after it, where jaxnet's follows torch past `T_max` too.""",
        """The step count lives in the optimiser state, so "the current lr" is the schedule
        evaluated at that count, by you; and a schedule driven by a metric (torch's
        `ReduceLROnPlateau`) is not a function of the step: it needs state of its own,
        threaded like the rest.""",
    ),
    Section(
        "mnist_step",
        "MNIST step",
        lambda rng: (
            rng.standard_normal((512, 784), dtype=np.float32),
            rng.integers(0, 10, 512),
        ),
        """Seed 001's recipe on one MNIST-shaped random batch of 512. PyTorch runs the step
        eagerly, op by op; NNX and jaxnet compile forward, backward and the momentum update
        into one XLA program. jaxnet's jitted `train.train_step` is that compiled pure
        step, and `train.TrainState` holds everything training changes (params, optimiser
        state with the momentum buffers, step count, data key) as one pytree, which is
        also what a checkpoint saves.""",
        """The state is donated to each call (its buffers are reused for the result), so
        after `train_step(state, batch)` the old `state` is dead and must be rebound: the
        `nonlocal state` in `next_step`. The first call pays for tracing and compiling (the
        "first result" column).""",
    ),
    Section(
        "cnn_step",
        "Convolutional network (LeNet step)",
        lambda rng: (
            rng.standard_normal((64, 1, 28, 28), dtype=np.float32),
            rng.integers(0, 10, 64),
        ),
        """d2l's LeNet with ReLU and max-pooling, one SGD step on a random batch of 64
        images. PyTorch and jaxnet share the layout: inputs `(N, C, H, W)` and kernels
        `[out, in, kh, kw]`, so torch's `state_dict` loads into jaxnet as it is and the
        model is written line for line (`nn.Conv2d(1, 6, 5, padding=2)`,
        `nn.MaxPool2d(2)`, `nn.Flatten()`). NNX convolves channels-last: its kernels are
        `[kh, kw, in, out]` (each torch weight is transposed on the way in and out), the
        input is transposed to `(N, H, W, C)`, and before the first Linear the activations
        go back to channels-first so that the flatten order is torch's.""",
        """jaxnet's convolution and pooling layers run XLA's CPU kernels, which are slower
        than the oneDNN kernels torch calls (the step times below; `docs/performance_cnn.md`
        has the profile), and the first call compiles the whole step.""",
    ),
    Section(
        "dropout",
        "Dropout (randomness)",
        lambda rng: (
            rng.standard_normal((32, 20), dtype=np.float32),
            rng.standard_normal((32, 1), dtype=np.float32),
        ),
        """The masks differ between the three libraries (three random number generators), so
        what is compared is what does not depend on them: the eval pass, that the same seed
        replays the same masks and the next call draws new ones, and the 1 / (1 - p)
        scaling. Where the randomness and the mode live is what differs. PyTorch draws
        from a global generator and reads a flag on every module (`net.train()`,
        `net.eval()`): replaying a mask means re-seeding the generator that every other
        random draw shares. NNX keeps a stream (`nnx.Rngs(dropout=...)`) inside the Dropout
        layer, advanced in place by each call, and `net.eval()` sets `deterministic` on it;
        replaying means copying the module (`nnx.clone`). In jaxnet both are arguments of
        the call: `net.apply(params, x, key=key)` gives the same masks for the same key,
        `training=False` is eval, a new step passes a new key (`fold_in(key, step)`), and
        each Dropout layer derives its own key from the call's and its position, so adding
        a layer leaves the others' masks alone.""",
        """The caller chooses and advances the keys: passing the same key at every step
        trains with the same masks every time, and a model with Dropout called in training
        mode without a key is an error rather than a default. `training` is a Python bool
        (a static argument under `jax.jit`), so the training and the eval pass are two
        compilations.""",
    ),
    Section(
        "batchnorm",
        "BatchNorm (state)",
        lambda rng: (
            rng.standard_normal((3, 32, 8), dtype=np.float32),
            rng.standard_normal((3, 32, 1), dtype=np.float32),
            rng.standard_normal((16, 8), dtype=np.float32),
        ),
        """Three SGD steps in training mode, then an eval pass: the running statistics, the
        losses, the weights and the eval outputs agree. PyTorch updates the running mean
        and variance in place inside `forward`, as a side effect of a training-mode call,
        and `state_dict()` lists them beside the weights. NNX marks them `nnx.BatchStat`
        and mutates them in place too; `nnx.BatchNorm` keeps flax's conventions (the biased
        batch variance in the running variance, momentum as the weight of the old value),
        so torch's numbers take the small module written here. In jaxnet the running
        statistics are a second pytree, `buffers`, beside `params`: a training-mode
        `net.apply(params, x, buffers=buffers)` returns the output and the new buffers, the
        loss returns them as its auxiliary output (`has_aux=True`, so `jax.grad` never
        differentiates them), the optimiser never sees them, and `training=False` reads
        them. One `net.load_state_dict(weights)` loads torch's parameters and buffers
        together, under torch's names.""",
        """A second tree threaded through every step beside params and optimiser state: the
        step takes and returns `buffers`, and forgetting to keep the returned ones silently
        freezes the statistics at their initial values. `jaxnet.train.fit(has_state=True)`
        packages this (`loss_fn(params, buffers, batch, key) -> (loss, buffers)`).""",
    ),
)

ENSEMBLE_TEXT = """Because a jaxnet model is a pair of pure functions over an explicit params
pytree, `jax.vmap` applies to the model itself. Mapping `init` over 8 keys returns 8
independently initialised parameter sets stacked on a new leading axis; mapping `apply`
(params batched, input shared) evaluates all 8 members in one call, which `jax.jit`
compiles into one program (as this report runs it). The
object styles have no direct counterpart: a PyTorch module owns one set of tensors, so an
ensemble is a list of modules in a Python loop, unless the model leaves the object style
through `torch.func.stack_module_state` and `torch.func.functional_call`; NNX reaches it
through its lifted transforms (`nnx.vmap` over the constructor, with `nnx.split_rngs`),
which split the module into a graph and its state underneath."""

SUMMARY_TEXT = """**Made explicit.** *State*: parameters,
optimiser state, the step count and the random key are values passed in and returned,
so a step is `(state, batch) -> state`; nothing is hidden on objects or in `.grad`.
*Randomness*: every initialiser receives a key; no global generator. *Purity*: a step
depends only on its arguments, which is what lets `jax.jit` compile it once and re-run
it, and makes a run reproducible from its inputs. *Transformations*: `jax.grad`,
`jax.jit` and `jax.vmap` apply to the model's own functions, so gradients of tied
weights add by construction and an ensemble is one `vmap` (the ensemble section).
*Interop*: jaxnet's params and buffers use torch's names and layout, so torch's weights
and running statistics load without translation.

**The price.** Threading params and optimiser state through every call and loop;
tree plumbing where the object styles write in place (editing one weight rebuilds the
dicts on its path; accumulating gradients is a `tree.map`); a `scope` passed through
every `forward`; donation semantics (a donated state is dead after the call); and a trace and
compile on the first call of every new shape. NNX sits in between: PyTorch's object
model on JAX, compiled, with the translation between objects and pytrees done by
`nnx.jit`/`nnx.grad` on every call."""


# ---- running the sections --------------------------------------------------------------


def to_numpy(outputs: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Flat ``{dotted name: NumPy copy}`` of a section's outputs (any style)."""
    flat = {}
    for name, value in outputs.items():
        if isinstance(value, dict):
            flat.update(to_numpy(value, f"{prefix}{name}."))
        elif isinstance(value, list | tuple):
            flat[prefix + name] = np.array([_array(v) for v in value])
        else:
            flat[prefix + name] = _array(value)
    return flat


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().numpy()
    return np.array(value, dtype=np.float64)


def max_differences(reference: dict, other: dict, section: str, style: str) -> dict[str, float]:
    """Per output, ``max |other - reference|``; the names and shapes must match."""
    if set(reference) != set(other):
        raise ValueError(
            f"{section}: {style} returned outputs {sorted(other)}, PyTorch {sorted(reference)}"
        )
    diffs = {}
    for name, value in reference.items():
        if value.shape != other[name].shape:
            raise ValueError(
                f"{section}: output {name!r} has shape {other[name].shape} in {style}, "
                f"{value.shape} in PyTorch"
            )
        diffs[name] = float(np.max(np.abs(other[name] - value), initial=0.0))
    return diffs


def run_section(section: Section, seed: int) -> dict[str, Any]:
    """Run the three versions from torch's initial weights; outputs, differences, steps.

    Every output gets the tolerance ``ATOL + RTOL * max |PyTorch's value|``.
    """
    import torch

    data = section.data(np.random.default_rng(seed))
    torch.manual_seed(seed)
    tic = time.perf_counter()
    outputs, torch_step, weights = getattr(torch_style, section.name)(*data)
    first = {"PyTorch": time.perf_counter() - tic}
    outputs = {"PyTorch": to_numpy(outputs)}
    steps = {"PyTorch": torch_step}
    for style in ("Flax NNX", "jaxnet"):
        tic = time.perf_counter()
        out, steps[style] = getattr(STYLES[style], section.name)(weights, *data)
        outputs[style] = to_numpy(jax.block_until_ready(out))
        first[style] = time.perf_counter() - tic
    diffs = {
        style: max_differences(outputs["PyTorch"], outputs[style], section.name, style)
        for style in ("Flax NNX", "jaxnet")
    }
    tolerances = {
        name: ATOL + RTOL * float(np.max(np.abs(value), initial=0.0))
        for name, value in outputs["PyTorch"].items()
    }
    return {
        "outputs": outputs,
        "diffs": diffs,
        "tolerances": tolerances,
        "max_abs_diff": {
            "torch_vs_nnx": max(diffs["Flax NNX"].values()),
            "torch_vs_jaxnet": max(diffs["jaxnet"].values()),
        },
        "agree": all(d[name] <= tol for d in diffs.values() for name, tol in tolerances.items()),
        "first_call_seconds": first,
        "steps": steps,
    }


def time_steps(steps: dict[str, Callable[[], Any]], rounds: int, min_sample_s: float) -> dict:
    """Median seconds per call of each step, over ``rounds`` interleaved rounds.

    Each sample repeats a step enough times to last ``min_sample_s``; results are waited
    for (``jax.block_until_ready``; PyTorch on the CPU is synchronous).
    """
    calls = {}
    for name, step in steps.items():
        jax.block_until_ready(step())  # warm: compiled and cached
        tic = time.perf_counter()
        jax.block_until_ready(step())
        calls[name] = max(1, math.ceil(min_sample_s / max(time.perf_counter() - tic, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in _common.round_order(names, r):
            tic = time.perf_counter()
            for _ in range(calls[name]):
                jax.block_until_ready(steps[name]())
            samples[name].append((time.perf_counter() - tic) / calls[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def lines_of_code(function: Callable) -> int:
    """Non-blank lines of ``function``'s source that are neither comments nor its docstring."""
    source = inspect.getsource(function)
    node = ast.parse(textwrap.dedent(source)).body[0]
    docstring = set()
    if ast.get_docstring(node) is not None:
        docstring = set(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    return sum(
        1
        for number, line in enumerate(source.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#") and number not in docstring
    )


def run_ensemble(seed: int) -> dict[str, Any]:
    """The vmap demonstration, checked against initialising and applying each member alone."""
    x = np.random.default_rng(seed).random((2, 20), dtype=np.float32)
    net = nn.MLP(20, [256], 10)  # seed 003's block
    keys, params, logits = jax.jit(jaxnet_style.ensemble, static_argnums=(0, 2))(net, x)
    init, apply = jax.jit(net.init), jax.jit(net.apply)
    one_by_one = np.stack([np.asarray(apply(init(key), x)) for key in keys])
    logits = np.asarray(logits)
    spread = min(
        float(np.abs(logits[i] - logits[j]).max())
        for i, j in itertools.combinations(range(len(logits)), 2)
    )
    return {
        "members": len(keys),
        "param_shapes": {name: tuple(v.shape) for name, v in _flat_shapes(params).items()},
        "logits_shape": tuple(logits.shape),
        "max_abs_diff_vs_one_by_one": float(np.abs(logits - one_by_one).max()),
        "min_member_difference": spread,
    }


def _flat_shapes(params: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for name, value in params.items():
        if isinstance(value, dict):
            flat.update(_flat_shapes(value, f"{prefix}{name}."))
        else:
            flat[prefix + name] = value
    return flat


# ---- the report ------------------------------------------------------------------------


def code_block(function: Callable) -> str:
    """``function``'s source, exactly as ``inspect.getsource`` gives it, fenced."""
    return f"```python\n{inspect.getsource(function)}```\n"


def _prose(text: str) -> str:
    return " ".join(textwrap.dedent(text).split())


def _preview(value: np.ndarray) -> str:
    flat = value.ravel()
    shown = ", ".join(f"{v:.6g}" for v in flat[:4])
    return f"[{shown}{', …' if flat.size > 4 else ''}]"


def _micro(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def summary_table(results: dict[str, dict]) -> str:
    head = (
        "| section | max abs diff vs PyTorch: NNX / jaxnet | within tolerance | lines of code: "
        "PyTorch / NNX / jaxnet | µs per step: PyTorch / NNX / jaxnet | speed-up vs "
        "PyTorch: NNX / jaxnet | first result, ms: PyTorch / NNX / jaxnet |\n"
        "|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for section in SECTION_LIST:
        r = results[section.name]
        t = r["step_seconds"]
        rows.append(
            f"| {section.title} | {r['max_abs_diff']['torch_vs_nnx']:.1e} / "
            f"{r['max_abs_diff']['torch_vs_jaxnet']:.1e} | {'yes' if r['agree'] else 'NO'} | "
            + " / ".join(str(r["lines"][s]) for s in STYLES)
            + " | "
            + " / ".join(_micro(t[s]) for s in STYLES)
            + f" | {r['speedup_vs_torch']['Flax NNX']:.2f}x / "
            f"{r['speedup_vs_torch']['jaxnet']:.2f}x | "
            + " / ".join(f"{r['first_call_seconds'][s] * 1e3:.0f}" for s in STYLES)
            + " |"
        )
    return "\n".join(rows)


def section_markdown(number: int, section: Section, r: dict) -> str:
    outputs = r["outputs"]
    lines = [
        f"## {number}. {section.title}",
        "",
        f"**What jaxnet makes explicit.** {_prose(section.explicit)}",
        "",
        f"**What it costs.** {_prose(section.cost)}",
        "",
        "Outputs (all three start from PyTorch's initial weights; max abs difference "
        f"vs PyTorch: NNX {r['max_abs_diff']['torch_vs_nnx']:.2e}, jaxnet "
        f"{r['max_abs_diff']['torch_vs_jaxnet']:.2e}; tolerance of each output "
        f"{ATOL:g} + {RTOL:g} × max |PyTorch's value|):",
        "",
        "| output | shape | PyTorch | max abs diff NNX | max abs diff jaxnet | tolerance |",
        "|---|---|---|---|---|---|",
    ]
    for name, value in outputs["PyTorch"].items():
        lines.append(
            f"| `{name}` | {value.shape} | {_preview(value)} | "
            f"{r['diffs']['Flax NNX'][name]:.2e} | {r['diffs']['jaxnet'][name]:.2e} | "
            f"{r['tolerances'][name]:.1e} |"
        )
    t = r["step_seconds"]
    lines += [
        "",
        "Lines of code: "
        + ", ".join(f"{s} {r['lines'][s]}" for s in STYLES)
        + ". Median µs per step: "
        + ", ".join(f"{s} {_micro(t[s])}" for s in STYLES)
        + f" (speed-up vs PyTorch: NNX {r['speedup_vs_torch']['Flax NNX']:.2f}x, "
        f"jaxnet {r['speedup_vs_torch']['jaxnet']:.2f}x).",
        "",
    ]
    for style, module in STYLES.items():
        lines += [f"### {section.title}: {style}", "", code_block(getattr(module, section.name))]
    return "\n".join(lines)


def ensemble_markdown(number: int, e: dict) -> str:
    shapes = ", ".join(f"`{name}` {shape}" for name, shape in e["param_shapes"].items())
    return "\n".join(
        [
            f"## {number}. Ensembles with jax.vmap (jaxnet only)",
            "",
            _prose(ENSEMBLE_TEXT),
            "",
            f"Result: {e['members']} members; parameter shapes {shapes}; logits "
            f"{e['logits_shape']}. Largest difference from initialising and applying each "
            f"member alone: {e['max_abs_diff_vs_one_by_one']:.1e}. Smallest difference "
            f"between two members' logits: {e['min_member_difference']:.3g} (they are distinct).",
            "",
            code_block(jaxnet_style.ensemble),
        ]
    )


def appendix_markdown() -> str:
    return "\n".join(
        [
            "## Appendix: loading PyTorch's weights",
            "",
            "PyTorch's version snapshots its initial `state_dict`; jaxnet loads it with "
            "the model's `load_state_dict` (the names and layout are torch's); NNX needs the "
            "translation below (outside the counted lines of the sections).",
            "",
            code_block(torch_style.initial_weights),
            code_block(nnx_style.torch_names),
            code_block(nnx_style.load_torch_weights),
            code_block(nnx_style.state_dict),
        ]
    )


def write_report(path: Path, results: dict, ensemble: dict, machine: dict, timing: dict) -> None:
    parts = [
        "# The same programs in PyTorch, Flax NNX and jaxnet",
        "",
        "Each section runs three versions of one program: PyTorch (object-oriented, "
        "stateful, eager), Flax NNX (object-oriented on JAX, compiled with `nnx.jit`) and "
        "jaxnet (functional, compiled with `jax.jit`). All three start from PyTorch's "
        "initial weights, and their outputs are compared with PyTorch's. The code shown "
        "is the source of the functions that ran (`experiments/styles/`); lines of code "
        "count non-blank lines that are not comments or the docstring. A step is the "
        "section's unit of work (a forward pass, one training step); times are medians of "
        f"{timing['rounds']} interleaved rounds, each repeating the step for at least "
        f"{timing['min_sample_s'] * 1e3:g} ms; speed-up is PyTorch's time over the other's. "
        "'First result' is the wall time of the whole section function: building the "
        "model, loading the weights and, for the JAX versions, tracing and compiling.",
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPU cores, JAX "
        f"{machine['jax']} on {machine['device']}, PyTorch {machine['torch']} with "
        f"{machine['torch_threads']} threads, Flax {machine['flax']}.",
        "",
        summary_table(results),
        "",
        f"![median time per step]({TIME_PLOT})",
        "",
        f"![lines of code]({LINES_PLOT})",
        "",
        "## In short: what the functional style makes explicit, and what it costs",
        "",
        *(_prose(paragraph) + "\n" for paragraph in SUMMARY_TEXT.split("\n\n")),
    ]
    for number, section in enumerate(SECTION_LIST, start=1):
        parts += [section_markdown(number, section, results[section.name]), ""]
    parts += [ensemble_markdown(len(SECTION_LIST) + 1, ensemble), "", appendix_markdown()]
    path.write_text("\n".join(parts))


def plot(out: Path, results: dict) -> list[Path]:
    """Grouped bars per section and style: median step time (log scale), lines of code."""
    _common.plot_backend()
    import matplotlib.pyplot as plt

    titles = [s.title for s in SECTION_LIST]
    x = np.arange(len(titles))
    width = 0.27
    paths = []
    for filename, key, ylabel, title, scale, log in (
        (TIME_PLOT, "step_seconds", "median µs per step (log scale)",
         "Time per step (lower is faster)", 1e6, True),
        (LINES_PLOT, "lines", "lines of code",
         "Lines of code (non-blank, not comments or docstring)", 1, False),
    ):  # fmt: skip
        fig, ax = plt.subplots(figsize=(11, 4.5))
        for i, style in enumerate(STYLES):
            values = [results[s.name][key][style] * scale for s in SECTION_LIST]
            ax.bar(x + (i - 1) * width, values, width, label=style)
        ax.set_xticks(x, titles, rotation=20, ha="right")
        ax.set(ylabel=ylabel, title=title, yscale="log" if log else "linear")
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
        _common.save_figure(fig, out / filename)
        paths.append(out / filename)
    return paths


def _non_negative_int(value: str) -> int:
    """``--seed``'s type: NumPy's generators take no negative seed."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{number} is negative; seeds are 0 or more")
    return number


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = _common.parser(__doc__, fast="few timing repeats (smoke test)", no_torch=False)
    p.add_argument("--seed", type=_non_negative_int, default=0, help="data seed, 0 or more")
    args = p.parse_args(argv)
    out = _common.output_dir(args.out, "compare_styles")
    timing = (
        {"rounds": 3, "min_sample_s": 0.002} if args.fast else {"rounds": 21, "min_sample_s": 0.02}
    )

    results = {}
    for section in SECTION_LIST:
        r = run_section(section, args.seed)
        r["step_seconds"] = time_steps(r.pop("steps"), **timing)
        r["speedup_vs_torch"] = {
            s: r["step_seconds"]["PyTorch"] / t for s, t in r["step_seconds"].items()
        }
        r["lines"] = {s: lines_of_code(getattr(m, section.name)) for s, m in STYLES.items()}
        results[section.name] = r
        diffs = r["max_abs_diff"]
        times = ", ".join(f"{s} {_micro(t)}" for s, t in r["step_seconds"].items())
        print(
            f"{section.title:24s} max abs diff vs PyTorch: NNX {diffs['torch_vs_nnx']:.1e}, "
            f"jaxnet {diffs['torch_vs_jaxnet']:.1e}; µs per step {times}"
        )
    ensemble = run_ensemble(args.seed)
    machine = _common.machine_info(flax=True)
    report_path = out / REPORT
    write_report(report_path, results, ensemble, machine, timing)
    plots = plot(out, results)
    print(f"\nwrote {report_path} and {', '.join(str(p) for p in plots)}")
    return {
        "sections": {
            name: {k: v for k, v in r.items() if k != "outputs"} for name, r in results.items()
        },
        "ensemble": ensemble,
        "machine": machine,
        "timing": timing,
        "report": str(report_path),
        "plots": [str(p) for p in plots],
    }


if __name__ == "__main__":
    main()
