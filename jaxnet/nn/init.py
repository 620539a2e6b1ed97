"""Parameter initialisers with ``torch.nn.init`` semantics, as pure functions of a key.

Every initialiser is ``name(key, shape, dtype=jnp.float32, ...) -> jax.Array``: where
torch's ``nn.init.kaiming_uniform_(w, a=...)`` fills ``w`` in place, jaxnet's
``init.kaiming_uniform(key, w.shape, w.dtype, a=...)`` returns a new array, and the same
key always gives the same array. Shapes use torch's layout (``Linear.weight`` is
``[out, in]``, a convolution weight ``[out, in, *kernel]``) and fans, gains and bounds
follow torch's formulas, so the distributions equal torch's.

How this differs from ``jax.nn.initializers``:

- jax's named initialisers (``he_normal``, ``glorot_normal``, ``lecun_normal``) draw from a
  *truncated* normal rescaled to the target variance; torch's ``kaiming_normal_`` and
  ``xavier_normal_`` draw from a plain normal. jaxnet follows torch.
- jax computes fans for an ``[in, out]`` layout (``in_axis=-2, out_axis=-1``); on a torch
  ``[out, in]`` weight that swaps fan_in and fan_out. jaxnet computes fans from torch's
  layout (:func:`fan_in_and_fan_out`); ``variance_scaling(gain**2, mode, 'uniform' or
  'normal', in_axis=1, out_axis=0)`` is the jax spelling of the same rule.
- ``jax.nn.initializers.truncated_normal(stddev)`` truncates at ±2 *standard deviations*;
  torch's ``trunc_normal_(mean, std, a, b)`` and :func:`trunc_normal` take *absolute*
  bounds ``a``, ``b`` (default ±2 whatever ``std`` is).
- jax samples float16 and bfloat16 directly in that dtype, from a uniform with 10 or 7
  random bits: 10,000 draws take at most 1,024 or 128 distinct values. torch draws in
  float32 and rounds; so do jaxnet's random initialisers, which then take as many
  distinct values as torch's.

:func:`reinit` is the functional form of torch's ``net.apply(init_fn)``: it re-initialises
the parameters of selected layers and returns a new params tree.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet._checks import check_concrete, check_positive_int, check_real

Shape = Sequence[int]
LayerInit = Callable[[jax.Array, Any, dict], dict]

_LINEAR_GAIN = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)
NONLINEARITIES = (*_LINEAR_GAIN, "tanh", "relu", "leaky_relu", "selu")
FAN_MODES = ("fan_in", "fan_out")


# --- gains and fans ---------------------------------------------------------------


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain for a nonlinearity (``torch.nn.init.calculate_gain``).

    1 for linear/conv/sigmoid, 5/3 for tanh, sqrt(2) for relu, 3/4 for selu and
    ``sqrt(2 / (1 + slope**2))`` for leaky_relu (``param`` is the negative slope,
    default 0.01). Returns a float where torch returns the int ``1``.
    """
    return _gain(nonlinearity, param, "calculate_gain")


def _gain(nonlinearity: str, param: float | None, caller: str) -> float:
    if nonlinearity in _LINEAR_GAIN:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    if nonlinearity == "leaky_relu":
        if param is None:
            param = 0.01
        elif isinstance(param, bool) or not isinstance(param, int | float):
            raise ValueError(
                f"{caller}: the negative slope of leaky_relu must be a number, got {param!r}"
            )
        return math.sqrt(2.0 / (1 + param**2))
    raise ValueError(
        f"{caller}: unsupported nonlinearity {nonlinearity!r}; expected one of "
        f"{list(NONLINEARITIES)}"
    )


def fan_in_and_fan_out(shape: Shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a torch-layout weight shape ``[out, in, *kernel]``.

    ``fan_in = in * prod(kernel)`` and ``fan_out = out * prod(kernel)``, as torch's
    ``nn.init._calculate_fan_in_and_fan_out``; shapes with fewer than 2 dims raise. For a
    grouped convolution the weight is ``[out, in / groups, *kernel]``, so ``fan_in`` is
    ``in / groups * prod(kernel)``, as in torch.
    """
    return _fans(shape, "fan_in_and_fan_out")


def _fans(shape: Shape, caller: str) -> tuple[int, int]:
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(
            f"{caller}: fan in and fan out need a shape with at least 2 dims "
            f"[out, in, *kernel], got {shape}"
        )
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fan(shape: Shape, mode: str, caller: str) -> int:
    mode = mode.lower()  # torch accepts 'FAN_IN' too
    if mode not in FAN_MODES:
        raise ValueError(f"{caller}: mode must be one of {list(FAN_MODES)}, got {mode!r}")
    fan_in, fan_out = _fans(shape, caller)
    return fan_in if mode == "fan_in" else fan_out


def _warn_if_empty(caller: str, shape: Shape) -> None:
    """torch's ``kaiming_uniform_``/``kaiming_normal_`` warn on zero-element tensors: so
    does jaxnet, with torch's words (the result is an empty array)."""
    if math.prod(shape) == 0:
        warnings.warn(
            f"{caller}: Initializing zero-element tensors is a no-op (shape {tuple(shape)})",
            stacklevel=3,
        )


def _std(gain: float, fan: float) -> float:
    """``gain / sqrt(fan)``; fan is 0 only for zero-element shapes, which have no values."""
    return gain / math.sqrt(fan) if fan > 0 else 0.0


# --- basic distributions and constants ----------------------------------------------


def _flat(shape: Shape) -> tuple[int]:
    """The 1-D shape to draw ``shape``'s samples in, before reshaping.

    Same distribution, and with jax's default (partitionable) threefry the very same
    numbers as drawing at ``shape``; but XLA compiles a sampler once per size rather than
    per shape, and an N-D sampler compiles several times slower than a 1-D one.
    """
    return (math.prod(shape),)


def _sampling_dtype(dtype: Any) -> Any:
    """The dtype to draw samples of ``dtype`` in: float32 for float16 and bfloat16 (as
    torch draws them, then rounds), else ``dtype`` itself."""
    return jnp.float32 if jnp.finfo(dtype).bits < 32 else dtype


def uniform(
    key: jax.Array, shape: Shape, dtype: Any = jnp.float32, a: float = 0.0, b: float = 1.0
) -> jax.Array:
    """Samples of ``U(a, b)`` (``torch.nn.init.uniform_``), via ``jax.random.uniform``."""
    if a > b:
        raise ValueError(f"uniform: expected a <= b, got a={a}, b={b}")
    u = jax.random.uniform(key, _flat(shape), _sampling_dtype(dtype), a, b)
    return u.reshape(shape).astype(dtype)


def normal(
    key: jax.Array, shape: Shape, dtype: Any = jnp.float32, mean: float = 0.0, std: float = 1.0
) -> jax.Array:
    """Samples of ``N(mean, std**2)`` (``torch.nn.init.normal_``), not truncated."""
    if std < 0:
        raise ValueError(f"normal: expected std >= 0, got std={std}")
    z = jax.random.normal(key, _flat(shape), _sampling_dtype(dtype)).reshape(shape)
    return (mean + std * z).astype(dtype)


def trunc_normal(
    key: jax.Array,
    shape: Shape,
    dtype: Any = jnp.float32,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
) -> jax.Array:
    """``N(mean, std**2)`` restricted to the absolute interval ``[a, b]`` (``trunc_normal_``).

    Unlike ``jax.nn.initializers.truncated_normal``, ``a`` and ``b`` are values, not
    multiples of ``std``. Sampling is by inverse CDF (``jax.random.truncated_normal`` on
    the standardised bounds) where torch rejects samples; both give the same
    distribution, but far in a tail (the interval more than ~5 std from the mean in
    float32) the inverse CDF loses resolution. Like torch, a mean more than 2 std outside
    ``[a, b]`` warns.
    """
    if std <= 0:
        raise ValueError(f"trunc_normal: expected std > 0, got std={std}")
    if a >= b:
        raise ValueError(f"trunc_normal: expected bounds a < b, got a={a}, b={b}")
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn(
            "trunc_normal: mean is more than 2 std from [a, b]; samples may lose resolution",
            stacklevel=2,
        )
    lower, upper = (a - mean) / std, (b - mean) / std
    z = jax.random.truncated_normal(key, lower, upper, _flat(shape), _sampling_dtype(dtype))
    return jnp.clip(mean + std * z.reshape(shape), a, b).astype(dtype)  # clip: rounding


def constant(
    key: jax.Array | None, shape: Shape, dtype: Any = jnp.float32, *, val: float
) -> jax.Array:
    """An array filled with ``val`` (``torch.nn.init.constant_``); ``key`` is ignored.

    ``val`` is keyword-only so that ``partial(constant, val=42)`` is an initialiser with
    the common ``(key, shape, dtype)`` signature.
    """
    del key
    return jnp.full(tuple(shape), val, dtype)


def zeros(key: jax.Array | None, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """Zeros (``torch.nn.init.zeros_``); ``key`` is ignored."""
    return constant(key, shape, dtype, val=0)


def ones(key: jax.Array | None, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """Ones (``torch.nn.init.ones_``); ``key`` is ignored."""
    return constant(key, shape, dtype, val=1)


def eye(key: jax.Array | None, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """The 2-D identity, rectangular allowed (``torch.nn.init.eye_``); ``key`` is ignored."""
    del key
    shape = tuple(shape)
    if len(shape) != 2:
        raise ValueError(f"eye: expected a 2-D shape, got {shape}")
    return jnp.eye(*shape, dtype=dtype)


# --- fan-scaled initialisers ------------------------------------------------------


def xavier_uniform(
    key: jax.Array, shape: Shape, dtype: Any = jnp.float32, gain: float = 1.0
) -> jax.Array:
    """``U(-bound, bound)``, ``bound = gain * sqrt(6 / (fan_in + fan_out))`` (``xavier_uniform_``).

    Glorot/Xavier uniform; ``jax.nn.initializers.glorot_uniform`` agrees on 2-D shapes.
    """
    fan_in, fan_out = _fans(shape, "xavier_uniform")
    bound = math.sqrt(3.0) * _std(gain, (fan_in + fan_out) / 2)
    return uniform(key, shape, dtype, -bound, bound)


def xavier_normal(
    key: jax.Array, shape: Shape, dtype: Any = jnp.float32, gain: float = 1.0
) -> jax.Array:
    """``N(0, std**2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))`` (``xavier_normal_``).

    A plain normal, where ``jax.nn.initializers.glorot_normal`` truncates.
    """
    fan_in, fan_out = _fans(shape, "xavier_normal")
    return normal(key, shape, dtype, 0.0, _std(gain, (fan_in + fan_out) / 2))


def kaiming_uniform(
    key: jax.Array,
    shape: Shape,
    dtype: Any = jnp.float32,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
) -> jax.Array:
    """``U(-bound, bound)``, ``bound = gain * sqrt(3 / fan)`` (``kaiming_uniform_``).

    ``gain = calculate_gain(nonlinearity, a)``; ``fan`` is fan_in or fan_out of the
    torch-layout shape. torch's default ``Linear`` init is ``a=sqrt(5)``, which gives
    ``bound = 1 / sqrt(in_features)``. A zero-element shape warns, as in torch.
    """
    fan = _fan(shape, mode, "kaiming_uniform")
    _warn_if_empty("kaiming_uniform", shape)
    bound = math.sqrt(3.0) * _std(_gain(nonlinearity, a, "kaiming_uniform"), fan)
    return uniform(key, shape, dtype, -bound, bound)


def kaiming_normal(
    key: jax.Array,
    shape: Shape,
    dtype: Any = jnp.float32,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
) -> jax.Array:
    """``N(0, std**2)``, ``std = gain / sqrt(fan)`` (``kaiming_normal_``).

    A plain normal, where ``jax.nn.initializers.he_normal`` truncates. A zero-element
    shape warns, as in torch.
    """
    fan = _fan(shape, mode, "kaiming_normal")
    _warn_if_empty("kaiming_normal", shape)
    std = _std(_gain(nonlinearity, a, "kaiming_normal"), fan)
    return normal(key, shape, dtype, 0.0, std)


def orthogonal(
    key: jax.Array, shape: Shape, dtype: Any = jnp.float32, gain: float = 1.0
) -> jax.Array:
    """A (semi-)orthogonal matrix times ``gain`` (``torch.nn.init.orthogonal_``).

    As torch: the shape is viewed as ``[rows, cols] = [shape[0], prod(shape[1:])]``; a
    normal matrix is QR-factorised and Q's columns are multiplied by ``sign(diag(R))``,
    which makes the result Haar-distributed. ``jax.random.orthogonal`` runs exactly that
    algorithm. Rows are orthonormal when ``rows <= cols``, columns otherwise.
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal: expected a shape with at least 2 dims, got {shape}")
    if math.prod(shape) == 0:  # torch leaves empty tensors alone
        return jnp.zeros(shape, dtype)
    rows = shape[0]
    cols = math.prod(shape) // rows
    q = jax.random.orthogonal(key, rows, (), _sampling_dtype(dtype), m=cols)  # (rows, cols)
    return (gain * q).reshape(shape).astype(dtype)


def dirac(
    key: jax.Array | None, shape: Shape, dtype: Any = jnp.float32, groups: int = 1
) -> jax.Array:
    """A convolution weight that passes its input through (``torch.nn.init.dirac_``).

    ``shape`` is ``[out, in / groups, *kernel]`` with 1, 2 or 3 kernel dims. In each of
    the ``groups`` blocks of ``out / groups`` output channels, output channel ``d`` has a
    1 at input channel ``d`` and the kernel's centre (``k // 2`` in each dim), for ``d <
    min(out / groups, in / groups)``; everything else is 0. ``key`` is ignored.
    """
    del key
    shape = tuple(shape)
    if len(shape) not in (3, 4, 5):
        raise ValueError(
            f"dirac: expected a 3-, 4- or 5-D convolution weight shape [out, in/groups, "
            f"*kernel], got {shape}"
        )
    check_positive_int("dirac", groups=groups)
    if shape[0] % groups:
        raise ValueError(
            f"dirac: the out channels (dim 0) must be divisible by groups={groups}, "
            f"got shape {shape}"
        )
    per_group = shape[0] // groups
    channels = np.arange(min(per_group, shape[1]))
    centre = tuple(k // 2 for k in shape[2:])
    weight = np.zeros(shape)
    for g in range(groups):
        weight[(g * per_group + channels, channels, *centre)] = 1
    return jnp.asarray(weight, dtype)


def sparse(
    key: jax.Array,
    shape: Shape,
    dtype: Any = jnp.float32,
    *,
    sparsity: float,
    std: float = 0.01,
) -> jax.Array:
    """A 2-D ``N(0, std**2)`` matrix with zeros in each column (``torch.nn.init.sparse_``).

    In every column, ``ceil(sparsity * rows)`` entries at random rows are 0 (Martens,
    2010, "Deep learning via Hessian-free optimization"). ``sparsity`` is keyword-only so
    that ``partial(sparse, sparsity=0.1)`` is an initialiser with the common ``(key,
    shape, dtype)`` signature.
    """
    shape = tuple(shape)
    if len(shape) != 2:
        raise ValueError(f"sparse: expected a 2-D shape, got {shape}")
    check_concrete("sparse", sparsity=sparsity)
    check_real("sparse", "sparsity", sparsity)
    if not 0 <= sparsity <= 1:
        raise ValueError(f"sparse: sparsity must be a fraction in [0, 1], got {sparsity!r}")
    if std < 0:
        raise ValueError(f"sparse: expected std >= 0, got std={std}")
    rows, _ = shape
    normal_key, rows_key = jax.random.split(key)
    values = normal(normal_key, shape, dtype, 0.0, std)
    # Per column, an independent permutation of the row numbers: the rows whose number
    # lands below n_zeros are a uniformly random set of n_zeros rows.
    row_numbers = jnp.broadcast_to(jnp.arange(rows)[:, None], shape)
    shuffled = jax.random.permutation(rows_key, row_numbers, axis=0, independent=True)
    return jnp.where(shuffled < math.ceil(sparsity * rows), jnp.zeros((), dtype), values)


# --- re-initialising layers of a model ------------------------------------------------


def reinit(
    params: dict,
    model: Any,
    fn: LayerInit,
    key: jax.Array,
    *,
    kind: type | tuple[type, ...] | None = None,
    path: str | None = None,
) -> dict:
    """New params with ``fn`` applied to selected layers: torch's ``net.apply(init_fn)``.

    Walks ``model.named_modules()`` and selects each layer whose type is in ``kind``
    (exact type, like torch's ``type(m) == nn.Linear``; all types if ``None``), whose
    dotted path is ``path`` or lies under it (the whole model if ``None``; the root's
    path is ``""``) and which has parameters in ``params`` at its path. For each, it
    calls ``fn(key_i, layer, layer_params) -> new_layer_params`` with its own key and
    puts the result in a new tree; ``params`` is left untouched. Layers are visited in
    the order of torch's ``Module.apply`` (children before their parent, siblings in
    order); a tied layer is visited once, at its first position, where its parameters
    live. ``fn`` returns the layer's whole params dict, with the same names, shapes and
    dtypes.

    torch's ``net[0].apply(init_xavier)`` is ``reinit(params, net, xavier, key,
    kind=Linear, path="0")``.
    """
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if kind is not None and not all(isinstance(k, type) for k in kinds):
        raise TypeError(f"reinit: kind must be a layer type or a tuple of types, got {kind!r}")
    modules = list(model.named_modules()) if hasattr(model, "named_modules") else [("", model)]
    if path is not None and path not in dict(modules):
        raise ValueError(
            f"reinit: unknown path {path!r}; available paths: {[p for p, _ in modules]}"
        )
    selected = [
        (p, layer)
        for p, layer in modules
        if (kind is None or type(layer) in kinds)
        and (path is None or _is_under(p, path))
        and _get(params, p)
    ]
    visits = _post_order(selected)
    new = params
    for layer_key, (p, layer) in zip(jax.random.split(key, len(visits)), visits, strict=True):
        old = _get(new, p)
        out = fn(layer_key, layer, old)
        _check_same_layout(old, out, p, layer)
        new = _set(new, p, out)
    return new


def _is_under(path: str, ancestor: str) -> bool:
    """Whether ``path`` is ``ancestor`` or under it: ``"1"`` holds ``"1.0"``, not ``"10"``."""
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


def _post_order(entries: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Pre-order ``(path, layer)`` entries reordered children first, as ``Module.apply`` visits."""
    out: list[tuple[str, Any]] = []
    open_ancestors: list[tuple[str, Any]] = []
    for entry in entries:
        while open_ancestors and not _is_under(entry[0], open_ancestors[-1][0]):
            out.append(open_ancestors.pop())
        open_ancestors.append(entry)
    return out + open_ancestors[::-1]


def _get(params: dict, path: str) -> Any:
    """The subtree at a dotted path, or ``None`` where there is none."""
    node: Any = params
    for part in path.split(".") if path else ():
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(params: dict, path: str, value: Any) -> Any:
    """A copy of ``params`` with the subtree at ``path`` replaced; only dicts on the path copy."""
    if not path:
        return value
    head, _, rest = path.partition(".")
    return {**params, head: _set(params[head], rest, value)}


def _check_same_layout(old: Any, new: Any, path: str, layer: Any) -> None:
    where = f"reinit: fn for layer {path!r} ({type(layer).__name__})"
    if not isinstance(new, dict):
        raise TypeError(
            f"{where} must return the layer's new params dict, got {type(new).__name__}"
        )
    layout = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), old)
    new_layout = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), new)
    if layout != new_layout:
        raise ValueError(
            f"{where} changed the params' names, shapes or dtypes: expected {layout}, "
            f"got {new_layout}"
        )
