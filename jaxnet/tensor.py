"""PyTorch tensor operations as pure ``jax.numpy`` functions, where jnp's semantics differ.

Most of ``torch``'s tensor API maps one to one onto ``jax.numpy`` (``experiments.tensor_ops``
lists the correspondences).
The helpers here cover the operations whose jnp namesake behaves differently: chunk and
split sizes, gather bounds, std/var's correction, topk/kthvalue along any dim, expand's -1,
repeat-as-tile, clamp's and norm's gradients at the boundaries, squeeze of non-singleton dims,
and max/min returning ``(values, indices)``. Each takes a ``dim`` like torch (negative dims
count from the end) and returns indices as int32, JAX's index dtype when x64 is off
(torch: int64).

Names: functions carry torch's names, even where they shadow a builtin (``max``, ``min``;
``clamp`` and ``topk`` take torch's ``min``/``max``/``sorted`` arguments); the module uses
``builtins.`` for Python's. Call them qualified, ``tensor.max(x, dim)`` as ``torch.max``.
Unlike ``torch.__all__``, ``__all__`` leaves out the names that shadow a builtin, so
``from jaxnet.tensor import *`` never replaces Python's ``max`` and ``min``.
"""

import functools
import math
import operator
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [  # every public name except max and min, which would shadow the builtins
    "ValuesIndices",
    "argmax",
    "argmin",
    "chunk",
    "clamp",
    "expand",
    "gather",
    "kthvalue",
    "norm",
    "repeat",
    "split",
    "squeeze",
    "std",
    "topk",
    "var",
    "view",
    "where",
]

_INDEX_DTYPE = jnp.int32


class ValuesIndices(NamedTuple):
    """``(values, indices)``, like ``torch.return_types.max/min/topk/kthvalue``."""

    values: jax.Array
    indices: jax.Array


# ----------------------------------------------------------------------------- argument checks


def _dim(dim, ndim: int, fn: str) -> int:
    """One torch-style dim (negative counts from the end) as a non-negative axis."""
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"{fn}: dim must be an int, got {dim!r}") from None
    if not -ndim <= dim < ndim:
        raise ValueError(
            f"{fn}: dim {dim} out of range for a {ndim}-d tensor (expected {-ndim} <= dim < {ndim})"
        )
    return dim % ndim


def _dims(dim, ndim: int, fn: str) -> tuple[int, ...]:
    """None, an int or a sequence of ints as sorted axes; None and () mean every dim (torch)."""
    if dim is None or (isinstance(dim, Sequence) and len(dim) == 0):
        return tuple(range(ndim))
    if not isinstance(dim, Sequence):
        return (_dim(dim, ndim, fn),)
    axes = tuple(_dim(d, ndim, fn) for d in dim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{fn}: dim {tuple(dim)} names a dimension twice")
    return tuple(sorted(axes))


def _sizes(sizes: tuple, fn: str) -> tuple[int, ...]:
    """Sizes given as ``f(x, 2, 3)`` or ``f(x, (2, 3))``, as torch accepts both."""
    if len(sizes) == 1 and isinstance(sizes[0], Sequence):
        sizes = tuple(sizes[0])
    try:
        return tuple(operator.index(s) for s in sizes)
    except TypeError:
        raise TypeError(f"{fn}: sizes must be ints, got {sizes!r}") from None


def _floating(x, fn: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{fn}: expected a floating-point tensor (as torch), got dtype {x.dtype}")
    return x


# ----------------------------------------------------------------------------- shapes


def view(x, *shape) -> jax.Array:
    """``x.view(*shape)``: a reshape, with at most one -1.

    torch's ``view`` shares memory, so it needs strides compatible with the new shape and
    raises on a non-contiguous tensor (e.g. after ``transpose``), asking for ``.reshape``
    or ``.contiguous().view``. JAX arrays have no strides, so this is ``jnp.reshape`` and
    always equals torch's ``x.contiguous().view(*shape)`` and ``x.reshape(*shape)``.
    """
    x = jnp.asarray(x)
    shape = _sizes(shape, "view")
    known = math.prod(s for s in shape if s != -1)
    bad = shape.count(-1) > 1 or any(s < -1 for s in shape)
    fits = (known > 0 and x.size % known == 0) if -1 in shape else known == x.size
    if bad or not fits:
        raise ValueError(f"view: shape {shape} is invalid for input of size {x.size}")
    return jnp.reshape(x, shape)


def squeeze(x, dim=None) -> jax.Array:
    """``torch.squeeze(x, dim)``: drop the named size-1 dims, silently keep the others.

    ``jnp.squeeze(x, axis)`` raises when a named axis is not of size 1; torch leaves it.
    ``dim`` is None (every size-1 dim), an int or a tuple of ints.
    """
    x = jnp.asarray(x)
    if dim is None:
        return jnp.squeeze(x)
    if isinstance(dim, Sequence) and len(dim) == 0:
        return x  # torch squeezes nothing here, while reductions read () as every dim
    if x.ndim == 0:
        _dims(dim, 1, "squeeze")  # torch accepts dim 0 or -1 on a 0-d tensor
        return x
    axes = _dims(dim, x.ndim, "squeeze")
    return jnp.squeeze(x, tuple(a for a in axes if x.shape[a] == 1))


def expand(x, *sizes) -> jax.Array:
    """``x.expand(*sizes)``: broadcast singleton dims; -1 keeps a dim; new dims go in front.

    ``jnp.broadcast_to`` has no -1. As in torch, only size-1 dims may change size and a new
    leading dim may not be -1.
    """
    x = jnp.asarray(x)
    sizes = _sizes(sizes, "expand")
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(
            f"expand: {len(sizes)} sizes {sizes} for a tensor of shape {x.shape}; "
            f"expected at least {x.ndim}"
        )
    target = []
    for i, s in enumerate(sizes):
        old = x.shape[i - lead] if i >= lead else None
        if s == -1 and old is not None:
            s = old
        if s < 0 or (old is not None and old not in (1, s)):
            raise ValueError(
                f"expand: cannot expand shape {x.shape} to {sizes}: dim {i} "
                f"{'is new and' if old is None else f'has size {old} and'} got size {s} "
                "(only size-1 dims expand; -1 keeps an existing dim)"
            )
        target.append(s)
    return jnp.broadcast_to(x, tuple(target))


def repeat(x, *sizes) -> jax.Array:
    """``x.repeat(*sizes)``: tile the whole tensor, which is ``jnp.tile``.

    ``jnp.repeat`` repeats each element instead (torch's ``repeat_interleave``). As in
    torch, there must be at least ``x.ndim`` sizes; extra ones add leading dims.
    """
    x = jnp.asarray(x)
    sizes = _sizes(sizes, "repeat")
    if len(sizes) < x.ndim or any(s < 0 for s in sizes):
        raise ValueError(
            f"repeat: expected at least {x.ndim} non-negative sizes for a tensor of shape "
            f"{x.shape}, got {sizes}"
        )
    return jnp.tile(x, sizes)


# ----------------------------------------------------------------------------- split and gather


def _split_sizes(x: jax.Array, sizes: Sequence[int], axis: int) -> tuple[jax.Array, ...]:
    return tuple(jnp.split(x, np.cumsum(sizes)[:-1].tolist(), axis=axis))


def split(x, split_size_or_sections, dim=0) -> tuple[jax.Array, ...]:
    """``torch.split``: an int is the size of each piece (the last may be smaller); a list
    gives every piece's size and must sum to the dim's size.

    ``jnp.split`` reads an int as the number of equal pieces and a list as split indices.
    """
    x = jnp.asarray(x)
    axis = _dim(dim, x.ndim, "split")
    n = x.shape[axis]
    if isinstance(split_size_or_sections, Sequence):
        sizes = _sizes((split_size_or_sections,), "split")
        if any(s < 0 for s in sizes) or sum(sizes) != n:
            raise ValueError(
                f"split: sizes {list(sizes)} must be non-negative and sum to the size of "
                f"dim {dim}, which is {n}"
            )
        return _split_sizes(x, sizes, axis)
    size = _sizes((split_size_or_sections,), "split")[0]
    if size < 0 or (size == 0 and n > 0):
        raise ValueError(f"split: split size must be positive for a dim of size {n}, got {size}")
    if n == 0:
        return (x,)
    sizes = [size] * (n // size)
    return _split_sizes(x, [*sizes, n % size] if n % size else sizes, axis)


def chunk(x, chunks: int, dim=0) -> tuple[jax.Array, ...]:
    """``torch.chunk``: pieces of size ``ceil(n / chunks)``, the last smaller; may return
    fewer than ``chunks`` pieces (6 rows in 4 chunks gives 3 pieces of 2).

    ``jnp.array_split`` always returns ``chunks`` pieces with sizes differing by at most one
    (10 in 4: 3, 3, 2, 2; torch: 3, 3, 3, 1).
    """
    x = jnp.asarray(x)
    chunks = operator.index(chunks)
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    axis = _dim(dim, x.ndim, "chunk")
    n = x.shape[axis]
    if n == 0:
        return _split_sizes(x, [0] * chunks, axis)
    return split(x, -(-n // chunks), axis)


def gather(x, dim, index) -> jax.Array:
    """``torch.gather(x, dim, index)``: ``out[i][j] = x[index[i][j]][j]`` for ``dim=0``.

    The output has ``index``'s shape; ``index`` has ``x``'s rank and may be smaller than ``x``
    in the other dims. torch raises on an index outside ``[0, size)``; ``jnp.take_along_axis``
    wraps negative indices and fills too-large ones (NaN, or the integer minimum). Here a
    concrete ``index`` is checked and raises ValueError; a traced one (under ``jit``) cannot
    be, and every out-of-range position, negative ones included, is filled.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(jnp.result_type(index), jnp.integer):
        raise TypeError(
            f"gather: index must be an integer tensor, got dtype {jnp.result_type(index)}"
        )
    axis = _dim(dim, x.ndim, "gather")
    shape = np.shape(index)
    if len(shape) != x.ndim or any(shape[a] > x.shape[a] for a in range(x.ndim) if a != axis):
        raise ValueError(
            f"gather: index of shape {shape} must have the rank of x {x.shape} and "
            f"be no larger outside dim {dim}"
        )
    n = x.shape[axis]
    if not isinstance(index, jax.core.Tracer):
        concrete = np.asarray(index)
        out = concrete[(concrete < 0) | (concrete >= n)]
        if out.size:
            raise ValueError(
                f"gather: index {out[0]} out of range for dim {dim} of size {n} "
                f"(expected 0 <= index < {n})"
            )
    index = jnp.asarray(index)
    x = x[tuple(slice(None) if a == axis else slice(i) for a, i in enumerate(index.shape))]
    return jnp.take_along_axis(x, jnp.where(index < 0, n, index), axis=axis, mode="fill")


# ----------------------------------------------------------------------------- reductions


def var(x, dim=None, correction=1, keepdim=False) -> jax.Array:
    """``torch.var(x, dim, correction=1, keepdim)``: divides by ``N - correction``.

    ``jnp.var`` defaults to ``ddof=0`` (the biased estimate). With ``N <= correction``
    torch divides by 0 (inf, or NaN for a constant input); ``jnp.var`` returns NaN.
    """
    x = _floating(x, "var")
    axes = _dims(dim, x.ndim, "var")
    n = math.prod(x.shape[a] for a in axes)
    if n - correction > 0:
        return jnp.var(x, axis=axes, ddof=correction, keepdims=keepdim)
    return jnp.var(x, axis=axes, keepdims=keepdim) / 0.0


def std(x, dim=None, correction=1, keepdim=False) -> jax.Array:
    """``torch.std(x, dim, correction=1, keepdim)``: ``sqrt(var)``; ``jnp.std``'s ``ddof`` is 0."""
    return jnp.sqrt(var(_floating(x, "std"), dim, correction, keepdim))


def argmax(x, dim=None, keepdim=False) -> jax.Array:
    """``torch.argmax(x, dim, keepdim)``: first index of the largest value (NaN counts as
    largest); ``dim=None`` indexes the flattened tensor. Same as ``jnp.argmax``, int32."""
    x = jnp.asarray(x)
    axis = None if dim is None else _dim(dim, x.ndim, "argmax")
    return jnp.argmax(x, axis=axis, keepdims=keepdim).astype(_INDEX_DTYPE)


def argmin(x, dim=None, keepdim=False) -> jax.Array:
    """``torch.argmin(x, dim, keepdim)``: first index of the smallest value; int32."""
    x = jnp.asarray(x)
    axis = None if dim is None else _dim(dim, x.ndim, "argmin")
    return jnp.argmin(x, axis=axis, keepdims=keepdim).astype(_INDEX_DTYPE)


def _select(x: jax.Array, idx: jax.Array, axis: int, keepdim: bool) -> ValuesIndices:
    """Values at ``idx`` (kept dim) along ``axis``; the gradient goes to those positions only."""
    values = jnp.take_along_axis(x, idx, axis=axis)
    if not keepdim:
        values, idx = jnp.squeeze(values, axis), jnp.squeeze(idx, axis)
    return ValuesIndices(values, idx)


def _extreme(x, dim, keepdim: bool, fn: str, reduce, arg) -> jax.Array | ValuesIndices:
    x = jnp.asarray(x)
    if dim is None:
        if keepdim:
            raise TypeError(f"{fn}: keepdim needs a dim; torch.{fn}(x) reduces every dim")
        return reduce(x)
    axis = _dim(dim, x.ndim, fn)
    return _select(x, arg(x, axis, keepdim=True), axis, keepdim)


def max(x, dim=None, keepdim=False) -> jax.Array | ValuesIndices:
    """``torch.max(x)`` (a scalar) or ``torch.max(x, dim, keepdim)`` (``(values, indices)``).

    With a dim, the gradient flows to the returned index only, as in torch; ``jnp.max``
    splits it evenly among tied maxima (torch does that too, but only for ``torch.max(x)``).
    """
    return _extreme(x, dim, keepdim, "max", jnp.max, argmax)


def min(x, dim=None, keepdim=False) -> jax.Array | ValuesIndices:
    """``torch.min(x)`` or ``torch.min(x, dim, keepdim)`` -> ``(values, indices)``; see ``max``."""
    return _extreme(x, dim, keepdim, "min", jnp.min, argmin)


def _check_k(k, n: int, low: int, fn: str) -> int:
    k = operator.index(k)
    if not low <= k <= n:
        raise ValueError(f"{fn}: k={k} out of range for a dim of size {n} (expected {low}..{n})")
    return k


def topk(x, k, dim=-1, largest=True, sorted=True) -> ValuesIndices:
    """``torch.topk(x, k, dim, largest, sorted)`` -> ``(values, indices)``.

    ``jax.lax.top_k`` works on the last axis and only for the largest; here any dim and
    either end. NaN counts as largest, as in torch. Among tied values the lower index comes
    first (torch's order of ties is unspecified). Results are always sorted (torch's order
    for ``sorted=False`` is unspecified too).
    """
    x = jnp.asarray(x)
    axis = _dim(dim, x.ndim, "topk")
    k = _check_k(k, x.shape[axis], 0, "topk")
    moved = jnp.moveaxis(x, axis, -1)
    if largest:
        idx = jax.lax.top_k(moved, k)[1]
    else:
        idx = jnp.argsort(moved, axis=-1, stable=True)[..., :k]
    return _select(x, jnp.moveaxis(idx.astype(_INDEX_DTYPE), -1, axis), axis, keepdim=True)


def kthvalue(x, k, dim=-1, keepdim=False) -> ValuesIndices:
    """``torch.kthvalue(x, k, dim, keepdim)``: the k-th smallest (1-based) and its index.

    jnp has no kthvalue (``jnp.partition`` gives no index). Ties give the lowest index.
    """
    x = jnp.asarray(x)
    axis = _dim(dim, x.ndim, "kthvalue")
    k = _check_k(k, x.shape[axis], 1, "kthvalue")
    order = jnp.argsort(x, axis=axis, stable=True)
    idx = jax.lax.slice_in_dim(order, k - 1, k, axis=axis).astype(_INDEX_DTYPE)
    return _select(x, idx, axis, keepdim)


# ----------------------------------------------------------------------------- clamp and norm


def clamp(x, min=None, max=None) -> jax.Array:
    """``torch.clamp(x, min, max)``, with torch's gradient: 1 where ``min <= x <= max``
    (boundaries included), else 0 for ``x`` and 1 for the bound that was taken.

    ``jnp.clip`` has the same values, but at ``x == min`` or ``x == max`` its gradient
    is 0.5 (``jnp.maximum``/``jnp.minimum`` split ties). As in torch, ``min > max``
    gives ``max`` everywhere.
    """
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must not be None")
    x = jnp.asarray(x)
    inside = jnp.ones(x.shape, dtype=bool)
    if min is not None:
        inside = inside & (x >= min)
    if max is not None:
        inside = inside & (x <= max)
    return jnp.where(inside, x, jnp.clip(x, min, max))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _vector_norm(x: jax.Array, p: float, axes: tuple[int, ...], keepdim: bool) -> jax.Array:
    return jnp.linalg.vector_norm(x, ord=p, axis=axes, keepdims=keepdim)


@_vector_norm.defjvp
def _vector_norm_jvp(p, axes, keepdim, primals, tangents):
    """torch's ``norm_backward``: 0 at a zero norm, ties of the inf-norms share the gradient."""
    (x,), (t,) = primals, tangents
    n = _vector_norm(x, p, axes, True)
    if p == 0:
        slope = jnp.zeros_like(x)
    elif math.isinf(p):
        ties = (jnp.abs(x) == n).astype(x.dtype)
        slope = jnp.sign(x) * ties / jnp.sum(ties, axis=axes, keepdims=True)
    elif p < 1:
        slope = jnp.sign(x) * jnp.where(x == 0, 0, jnp.abs(x) ** (p - 1)) * n ** (1 - p)
    else:  # d/dx (sum |x|^p)^(1/p) = sign(x) |x|^(p-1) / n^(p-1)
        slope = jnp.sign(x) * jnp.abs(x) ** (p - 1) * jnp.where(n == 0, 0, n ** (1 - p))
    out = n if keepdim else jnp.squeeze(n, axes)
    return out, jnp.sum(slope * t, axis=axes, keepdims=keepdim)


def norm(x, p="fro", dim=None, keepdim=False) -> jax.Array:
    """``torch.norm(x, p, dim, keepdim)`` = ``torch.linalg.vector_norm`` over ``dim``.

    ``p`` is 'fro' (= 2), any float, ``inf``, ``-inf`` or 0 (count of non-zeros); ``dim``
    None means every element, even for a matrix, where ``jnp.linalg.norm(x, ord)`` would
    take a matrix norm (``ord=1``: largest column sum). Gradients follow torch: 0 where
    the norm is 0 (``sqrt`` gives NaN there) and for p=1 at ``x == 0`` (``jnp.abs``
    gives 1); the inf-norms share the gradient among tied entries.
    Matrix norms ('nuc', 'fro' over more than 2 dims) are ``jnp.linalg.matrix_norm``'s job.
    """
    if isinstance(p, str):
        if p != "fro" or (isinstance(dim, Sequence) and len(dim) > 2):
            raise ValueError(
                f"norm: p={p!r} with dim={dim!r} is a matrix norm; expected 'fro' over at "
                "most 2 dims or a number (use jnp.linalg.matrix_norm for matrix norms)"
            )
        p = 2.0
    x = _floating(x, "norm")
    return _vector_norm(x, float(p), _dims(dim, x.ndim, "norm"), bool(keepdim))


# ----------------------------------------------------------------------------- where


def where(condition, x=None, y=None):
    """``torch.where(condition, x, y)`` (= ``jnp.where``) or ``torch.where(condition)``.

    The one-argument form is ``torch.nonzero(condition, as_tuple=True)``: a tuple of int32
    index arrays, one per dim. Its length depends on the data, so it cannot be traced
    under ``jit`` (pass ``size=`` to ``jnp.nonzero`` there); a traced condition raises.
    """
    if x is None and y is None:
        if isinstance(condition, jax.core.Tracer):
            raise TypeError(
                "where: where(condition) has a data-dependent shape and cannot be traced "
                "under jit; use where(condition, x, y) or jnp.nonzero(condition, size=...)"
            )
        return tuple(i.astype(_INDEX_DTYPE) for i in jnp.nonzero(condition))
    if x is None or y is None:
        raise TypeError("where: expected both x and y, or neither")
    return jnp.where(condition, x, y)
