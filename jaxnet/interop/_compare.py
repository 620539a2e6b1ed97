"""``jaxnet.compare``: run a torch module and its jaxnet twin, layer by layer, and find the
first layer where they diverge.

How each side is observed:

* torch: forward pre-hooks and hooks on every named module of a deep copy of the module
  (the caller's module keeps its mode, buffers and hooks) record each call's inputs and
  output (cloned, so an in-place ``ReLU(inplace=True)`` cannot overwrite them), in the
  order the calls finish;
* jaxnet has no hooks (a forward is a pure function): each recorded call is re-run on
  the jaxnet layer of the same name, on torch's recorded inputs to that layer, with that
  layer's own params and buffers (``layer.apply(...)``). So each row measures the layer
  itself, not the difference it inherited from the layers before it, and the first row
  beyond tolerance is the first layer whose own computation differs. The root's row runs
  the whole jaxnet model on the given inputs: the end-to-end difference.

With ``grads=True`` both models also run one backward pass of ``sum(output * v)`` (``v``
a fixed random cotangent of the output's shape, the same for both) through the whole
model, and each row gets the largest difference of the gradients of that layer's own
parameters.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxnet.nn.module import Module, Params

# (rtol, atol) by dtype: a float32 model computed with another summation order differs in
# its last few bits per layer; a gradient through a deep network accumulates more.
_TOLERANCES = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-4, 1e-6),
    "bfloat16": (2e-2, 1e-3),
    "float16": (5e-3, 1e-4),
}


@dataclasses.dataclass(frozen=True)
class LayerDiff:
    """One row: a call of a layer (``call`` counts the calls of a layer used twice).

    ``out_abs`` / ``out_rel``: the largest absolute difference of the outputs, and that
    divided by the largest absolute torch value. ``grad_abs`` / ``grad_rel``: the same for
    the gradients of the layer's own parameters (first call only). ``ok`` is ``None`` when
    the layer could not be compared (``note`` says why).
    """

    name: str
    layer: str
    call: int
    shape: tuple[int, ...] | None
    out_abs: float | None
    out_rel: float | None
    grad_abs: float | None
    grad_rel: float | None
    ok: bool | None
    note: str = ""

    @property
    def label(self) -> str:
        name = self.name or "<root>"
        return name if self.call == 1 else f"{name} (call {self.call})"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """What :func:`compare` returns: the rows in the order torch finished the calls, the
    tolerances, and the first layer beyond them."""

    rows: tuple[LayerDiff, ...]
    rtol: float
    atol: float
    training: bool
    first_mismatch: str | None
    first_mismatch_kind: str | None

    @property
    def ok(self) -> bool:
        """Every compared layer within tolerance."""
        return self.first_mismatch is None

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        head = ["layer", "type", "shape", "out |Δ|", "out rel", "grad |Δ|", "grad rel", "ok"]

        def num(x: float | None) -> str:
            return "-" if x is None else f"{x:.2e}"

        body = [
            [
                row.label,
                row.layer,
                "-" if row.shape is None else "x".join(map(str, row.shape)) or "()",
                num(row.out_abs),
                num(row.out_rel),
                num(row.grad_abs),
                num(row.grad_rel),
                {True: "ok", False: "FAIL", None: "n/a"}[row.ok]
                + (f" {row.note}" if row.note else ""),
            ]
            for row in self.rows
        ]
        return head, body

    def summary(self) -> str:
        """One sentence: all within tolerance, or the first layer beyond it."""
        mode = "training" if self.training else "eval"
        tol = f"rtol={self.rtol:g}, atol={self.atol:g}, {mode} mode"
        skipped = sum(row.ok is None for row in self.rows)
        extra = f"; {skipped} call(s) not compared" if skipped else ""
        if self.ok:
            return f"all {len(self.rows) - skipped} layer calls within tolerance ({tol}){extra}"
        kind = self.first_mismatch_kind
        return f"first beyond tolerance: {self.first_mismatch!r} ({kind}; {tol}){extra}"

    def __str__(self) -> str:
        head, body = self._cells()
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(head), rule, *map(line, body), self.summary()])

    def to_markdown(self) -> str:
        """The table in Markdown, with the summary line under it."""
        head, body = self._cells()
        rows = [head, ["---"] * len(head), *body]
        table = "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows)
        return f"{table}\n\n{self.summary()}\n"


def _tolerance(dtype: Any, rtol: float | None, atol: float | None) -> tuple[float, float]:
    default = _TOLERANCES.get(np.dtype(dtype).name, _TOLERANCES["float32"])
    return (default[0] if rtol is None else rtol), (default[1] if atol is None else atol)


def _leaves(value: Any) -> list[Any]:
    """The array leaves of an output (a tensor or array, or tuples/lists/dicts of them)."""
    if isinstance(value, tuple | list):
        return [leaf for v in value for leaf in _leaves(v)]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [value] if hasattr(value, "shape") else []


def _to_numpy(value: Any) -> np.ndarray:
    from jaxnet.params import to_numpy

    return np.asarray(to_numpy(value), np.float64)


def _diff(ours: Sequence[Any], theirs: Sequence[Any]) -> tuple[float, float, float]:
    """(largest |ours - theirs|, that over the largest |theirs|, the largest |theirs|)."""
    if len(ours) != len(theirs):
        raise ValueError(f"the outputs have {len(ours)} arrays, torch's {len(theirs)}")
    worst, scale = 0.0, 0.0
    for a, b in zip(ours, theirs, strict=True):
        a, b = _to_numpy(a), _to_numpy(b)
        if a.shape != b.shape:
            raise ValueError(f"output shape {a.shape}, torch's {b.shape}")
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - b))))
            scale = max(scale, float(np.max(np.abs(b))))
    return worst, worst / scale if scale else worst, scale


def _subtree(tree: Params | None, path: str) -> Params:
    node: Any = tree or {}
    for part in path.split(".") if path else ():
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _map_tensors(fn: Callable[[Any], Any], value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple | list):
        return type(value)(_map_tensors(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(fn, v) for k, v in value.items()}
    return value


def _record_calls(module: Any, inputs: Sequence[Any]) -> tuple[list[tuple], Any]:
    """Run ``module`` on ``inputs`` with hooks on every named module: the calls
    ``(name, layer, args, kwargs, output)`` in the order they finished, and the output."""

    def clone(value: Any) -> Any:
        return _map_tensors(lambda t: t.detach().clone(), value)

    pending: dict[str, list[tuple]] = {}
    calls: list[tuple] = []
    handles = []
    for name, sub in module.named_modules():

        def pre(m: Any, args: Any, kwargs: Any, name: str = name) -> None:
            pending.setdefault(name, []).append((clone(args), clone(kwargs)))

        def post(m: Any, args: Any, kwargs: Any, output: Any, name: str = name) -> None:
            recorded_args, recorded_kwargs = pending[name].pop()
            calls.append((name, m, recorded_args, recorded_kwargs, clone(output)))

        handles.append(sub.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(sub.register_forward_hook(post, with_kwargs=True))
    try:
        output = module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls, output


def compare(
    torch_module: Any,
    model: Module,
    params: Params,
    *inputs: Any,
    buffers: Params | None = None,
    grads: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    training: bool = False,
) -> Comparison:
    """Every layer of ``torch_module`` beside the jaxnet layer of the same name.

    ``inputs`` are arrays or tensors (each converted for the other side). ``training``
    selects the mode of both (batch statistics, not running ones, when true); a model with
    active dropout cannot be compared in training mode (the masks differ) and raises.
    ``rtol``/``atol`` default to the dtype's (float32: 1e-4 and 1e-6); a row is within
    tolerance when its largest difference is at most ``atol + rtol * max|torch value|``.
    The torch module itself is not modified. See the module docstring for how each side
    is observed.
    """
    import torch

    if not isinstance(torch_module, torch.nn.Module):
        raise TypeError(
            f"compare: torch_module must be a torch.nn.Module, got {type(torch_module).__name__}"
        )
    if not isinstance(model, Module):
        raise TypeError(f"compare: model must be a jaxnet Module, got {type(model).__name__}")
    if not isinstance(training, bool):
        raise TypeError(f"compare: training must be a bool, got {type(training).__name__}")
    module = copy.deepcopy(torch_module).train(training)
    dropouts = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)
    if training and any(isinstance(m, dropouts) and m.p > 0 for m in module.modules()):
        raise ValueError(
            "compare: the model has dropout, whose masks differ between torch and jaxnet in "
            "training mode; compare with training=False"
        )
    torch_inputs = [
        torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x for x in inputs
    ]
    jax_inputs = [jnp.asarray(_to_numpy_keep(x)) for x in inputs]
    first_param = next(module.parameters(), None)
    dtype = _to_numpy_keep(first_param.detach()).dtype if first_param is not None else np.float32
    rtol, atol = _tolerance(dtype, rtol, atol)

    with torch.set_grad_enabled(grads):
        calls, output = _record_calls(module, torch_inputs)
    torch_grads, jax_grads = {}, {}
    if grads and first_param is not None:
        cotangents = _cotangents(output)
        sum(
            (leaf * torch.as_tensor(v)).sum()
            for leaf, v in zip(_leaves(output), cotangents, strict=True)
        ).backward()
        torch_grads = {  # no gradient reached a trainable parameter: it is zero
            n: torch.zeros_like(p) if p.grad is None else p.grad
            for n, p in module.named_parameters()
            if p.requires_grad
        }
        jax_grads = _jax_grads(model, params, buffers, jax_inputs, training, cotangents)

    layers = dict(model.named_modules())
    seen: dict[str, int] = {}
    rows = []
    for name, torch_layer, args, kwargs, out in calls:
        seen[name] = seen.get(name, 0) + 1
        row = dict(
            name=name, layer=type(torch_layer).__name__, call=seen[name],
            shape=tuple(_leaves(out)[0].shape) if _leaves(out) else None,
            out_abs=None, out_rel=None, grad_abs=None, grad_rel=None, ok=None,
        )  # fmt: skip
        layer = model if name == "" else layers.get(name)
        if layer is None:
            rows.append(LayerDiff(**row, note="no jaxnet layer of this name"))
            continue
        try:
            if name == "":
                ours = _run(model, params, buffers, jax_inputs, {}, training)
            else:
                jax_args = _map_tensors(lambda t: jnp.asarray(_to_numpy_keep(t)), (args, kwargs))
                ours = _run(
                    layer,
                    _subtree(params, name),
                    None if buffers is None else _subtree(buffers, name),
                    *jax_args,
                    training,
                )
            out_abs, out_rel, scale = _diff(_leaves(ours), _leaves(out))
        except (TypeError, ValueError) as err:
            rows.append(LayerDiff(**{**row, "ok": False}, note=f"error: {err}"))
            continue
        ok = out_abs <= atol + rtol * scale
        row.update(out_abs=out_abs, out_rel=out_rel, ok=ok)
        own = [n for n, _ in torch_layer.named_parameters(recurse=False)]
        if seen[name] == 1 and torch_grads and own:
            keys = [f"{name}.{n}" if name else n for n in own]
            present = [k for k in keys if k in torch_grads and k in jax_grads]
            if present:
                g_abs, g_rel, g_scale = _diff(
                    [jax_grads[k] for k in present], [torch_grads[k] for k in present]
                )
                grad_ok = g_abs <= atol + rtol * g_scale
                row.update(grad_abs=g_abs, grad_rel=g_rel, ok=ok and grad_ok)
                row["note"] = "" if grad_ok or not ok else "gradient"
        rows.append(LayerDiff(**row))
    first, kind = _first_mismatch(rows)
    return Comparison(tuple(rows), rtol, atol, training, first, kind)


def _to_numpy_keep(value: Any) -> np.ndarray:
    from jaxnet.params import to_numpy

    return to_numpy(value)


def _cotangents(output: Any) -> list[np.ndarray]:
    """A fixed random cotangent per output array (seed 0), in its dtype."""
    rng = np.random.default_rng(0)
    return [
        rng.standard_normal(tuple(leaf.shape)).astype(_to_numpy_keep(leaf.detach()).dtype)
        for leaf in _leaves(output)
    ]


def _run(
    layer: Module, params: Params, buffers: Params | None, args: Any, kwargs: Any, training: bool
) -> Any:
    """``layer``'s output on ``args`` (its new buffers dropped)."""
    if buffers is None:
        return layer.apply(params, *args, training=training, **kwargs)
    return layer.apply(params, *args, buffers=buffers, training=training, **kwargs)[0]


def _jax_grads(
    model: Module,
    params: Params,
    buffers: Params | None,
    inputs: list,
    training: bool,
    cotangents: list,
) -> dict[str, Any]:
    """The gradient of ``sum(output * v)`` by torch parameter name."""

    def loss(p: Params, b: Params | None, xs: list, vs: list) -> jax.Array:
        leaves = _leaves(_run(model, p, b, xs, {}, training))
        return sum(jnp.sum(leaf * v) for leaf, v in zip(leaves, vs, strict=True))

    grads = jax.jit(jax.grad(loss))(params, buffers, inputs, cotangents)
    return traverse_util.flatten_dict(grads, sep=".")


def _first_mismatch(rows: Sequence[LayerDiff]) -> tuple[str | None, str | None]:
    """The first row (in the order the calls finished) whose output is beyond tolerance;
    if every output is within it, the gradient mismatch nearest the output (the first one
    the backward pass meets)."""
    for row in rows:
        if row.ok is False and row.note != "gradient":
            return row.label, "error" if row.note.startswith("error") else "output"
    for row in reversed(rows):
        if row.ok is False:
            return row.label, "gradient"
    return None, None
