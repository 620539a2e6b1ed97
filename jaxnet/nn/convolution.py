"""Convolution, pooling and padding with PyTorch's names, defaults, layouts and numbers
(``torch.nn.functional.conv1d``, ``conv2d``, ``conv_transpose2d``, ``max_pool2d``,
``avg_pool2d``, ``adaptive_avg_pool2d``, ``adaptive_max_pool2d``, ``pad``).

Layouts are torch's: inputs ``(N, C, L)`` / ``(N, C, H, W)`` (or unbatched ``(C, ...)``
where torch takes it), convolution weights ``[out, in / groups, *kernel]`` and transposed
convolution weights ``[in, out / groups, *kernel]``, so a torch ``state_dict`` needs no
transposes. Every function is pure and works under ``jax.grad``, ``jax.jit`` and
``jax.vmap``; every check is on shapes, in Python, so it costs nothing under ``jit``.

Max pooling sends the gradient of a window to its first maximum (row-major order), as
torch does, also when several elements tie.

Two formulations are chosen for speed on CPU (docs/performance_cnn.md): max pooling folds
the window's strided slices (XLA's ``reduce_window`` has a slow select-and-scatter
gradient), and a convolution with a short contraction (a first layer on grey images) runs
as im2col and one dot instead of XLA's convolution. Results are unchanged.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PAD_MODES = ("constant", "reflect", "replicate", "circular")
# jnp.pad's names for torch's non-constant modes.
_JNP_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_DIMENSION_NUMBERS = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW")}
_LAYOUT = {1: "(N, C, L)", 2: "(N, C, H, W)"}
# A convolution without groups whose contraction (in_channels x kernel elements) is at most
# this long runs as im2col and one dot (see _conv_im2col).
IM2COL_MAX_CONTRACTION = 32

Pairs = list[tuple[int, int]]


# ------------------------------------------------------------------ argument helpers


def _tuple(fn: str, name: str, value: int | Sequence[int], n: int, minimum: int) -> tuple:
    """``value`` as an ``n``-tuple of ints >= ``minimum`` (an int is repeated, as torch's
    ``_pair`` does)."""
    values = (value,) * n if isinstance(value, int | np.integer) else tuple(value)
    if len(values) != n or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values
    ):
        raise TypeError(f"{fn}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in values)


def _batched(fn: str, input: jax.Array, n: int) -> tuple[jax.Array, bool]:
    """``input`` with a batch axis (added for an unbatched ``(C, *spatial)`` input, as
    torch accepts) and whether one was added."""
    input = jnp.asarray(input)
    if input.ndim == n + 2:
        return input, False
    if input.ndim == n + 1:
        return input[None], True
    raise ValueError(
        f"{fn} expected a {n + 2}-d input {_LAYOUT[n]} or a {n + 1}-d unbatched one, "
        f"got shape {input.shape}"
    )


def _unbatched(output: jax.Array, added: bool) -> jax.Array:
    return output[0] if added else output


def _check_kernel_fits(fn: str, spatial: Sequence[int], pads: Pairs, extent: Sequence[int]):
    """Refuse a (dilated) kernel larger than the padded input, as torch does."""
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, pads, strict=True))
    if any(p < e for p, e in zip(padded, extent, strict=True)):
        raise ValueError(
            f"{fn}: kernel size {tuple(extent)} (dilation included) is larger than the "
            f"padded input size {padded}"
        )


# ------------------------------------------------------------------------- padding


def pad(
    input: jax.Array, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> jax.Array:
    """Pad ``input`` (``F.pad``). ``pad`` lists ``(left, right)`` amounts starting with the
    last dimension: ``(1, 2)`` pads the last dimension by 1 before and 2 after,
    ``(1, 1, 2, 2)`` also the second-to-last by 2. ``mode`` is ``'constant'`` (fill with
    ``value``, default 0; negative amounts crop, as in torch), ``'reflect'`` (mirror without
    the edge, amounts below the dimension's size), ``'replicate'`` (repeat the edge) or
    ``'circular'`` (wrap around, amounts at most the dimension's size).
    """
    input = jnp.asarray(input)
    if mode not in PAD_MODES:
        raise ValueError(f"pad: mode must be one of {PAD_MODES}, got {mode!r}")
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(
            f"pad: pad must have an even length of at most 2 * input.ndim = {2 * input.ndim}, "
            f"got {pad} for shape {input.shape}"
        )
    if mode != "constant" and value not in (None, 0):
        raise ValueError(f"pad: value={value!r} is only used with mode='constant', got {mode!r}")
    k = len(pad) // 2
    pairs = [(0, 0)] * (input.ndim - k) + [(pad[2 * i], pad[2 * i + 1]) for i in reversed(range(k))]
    if mode == "constant":
        fill = jnp.asarray(0 if value is None else value, input.dtype)
        return lax.pad(input, fill, [(lo, hi, 0) for lo, hi in pairs])
    _check_pad_amounts(mode, input.shape, pairs)
    return jnp.pad(input, pairs, mode=_JNP_PAD_MODES[mode])


def _check_pad_amounts(mode: str, shape: tuple[int, ...], pairs: Pairs) -> None:
    """torch's limits: no negative amounts outside 'constant', reflect below the size,
    circular at most the size, replicate of a non-empty dimension."""
    for size, (lo, hi) in zip(shape, pairs, strict=True):
        if lo == hi == 0:
            continue
        limit = {"reflect": size - 1, "circular": size, "replicate": math.inf if size else -1}
        if min(lo, hi) < 0 or max(lo, hi) > limit[mode]:
            bound = {"reflect": "smaller than", "circular": "at most", "replicate": "within"}
            raise ValueError(
                f"pad: mode={mode!r} needs non-negative amounts {bound[mode]} the padded "
                f"dimension's size {size}, got ({lo}, {hi}) for shape {shape}"
            )


def _conv_padding(
    fn: str, padding: str | int | Sequence[int], kernel: Sequence[int], dilation, stride, n
) -> Pairs:
    """torch's ``padding`` argument as ``(before, after)`` pairs per spatial dimension.
    ``'same'`` splits ``dilation * (kernel - 1)`` as torch does: the extra element of an
    odd total goes after."""
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * n
        if padding != "same":
            raise ValueError(f"{fn}: padding must be 'valid', 'same' or ints, got {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{fn}: padding='same' needs stride 1, got stride={stride}")
        totals = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(p, p) for p in _tuple(fn, "padding", padding, n, 0)]


# -------------------------------------------------------------------- convolutions


def convolution(
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> jax.Array:
    """The forward pass of ``nn.Conv1d`` / ``nn.Conv2d``: the convolution of ``conv1d`` /
    ``conv2d`` (chosen by ``weight.ndim``) after padding ``input`` with ``padding_mode``
    (``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``), as torch's layers do."""
    n = jnp.ndim(weight) - 2
    fn = f"conv{n}d" if n in _DIMENSION_NUMBERS else "convolution"
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{fn}: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return _conv(fn, n, input, weight, bias, stride, padding, dilation, groups, padding_mode)


def conv1d(
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> jax.Array:
    """1-d convolution (cross-correlation, ``F.conv1d``): ``input`` ``(N, C_in, L)`` or
    ``(C_in, L)``, ``weight`` ``[C_out, C_in / groups, k]``, ``bias`` ``[C_out]``."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups, "zeros")


def conv2d(
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> jax.Array:
    """2-d convolution (cross-correlation, ``F.conv2d``): ``input`` ``(N, C_in, H, W)`` or
    ``(C_in, H, W)``, ``weight`` ``[C_out, C_in / groups, kH, kW]``, ``bias`` ``[C_out]``.
    ``padding`` is an int, a pair, ``'valid'`` or ``'same'`` (stride 1 only; an odd total
    puts the extra row and column after, as torch does)."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups, "zeros")


def _conv(fn, n, input, weight, bias, stride, padding, dilation, groups, padding_mode):
    weight = jnp.asarray(weight)
    if weight.ndim != n + 2:
        raise ValueError(
            f"{fn} expected a {n + 2}-d weight [out, in / groups, *kernel], got shape "
            f"{weight.shape}"
        )
    x, added = _batched(fn, input, n)
    out_channels, in_per_group, *kernel = weight.shape
    _check_groups(fn, groups, out_channels=out_channels)
    _check_channels(fn, x, in_per_group * groups, n)
    stride = _tuple(fn, "stride", stride, n, 1)
    dilation = _tuple(fn, "dilation", dilation, n, 1)
    pads = _conv_padding(fn, padding, kernel, dilation, stride, n)
    if padding_mode != "zeros":
        flat = [a for lo_hi in reversed(pads) for a in lo_hi]
        x = pad(x, flat, mode=padding_mode)
        pads = [(0, 0)] * n
    _check_kernel_fits(fn, x.shape[2:], pads, _extents(kernel, dilation))
    if groups == 1 and in_per_group * math.prod(kernel) <= IM2COL_MAX_CONTRACTION:
        y = _conv_im2col(x, weight, stride, pads, dilation)
    else:
        y = lax.conv_general_dilated(
            x,
            weight,
            window_strides=stride,
            padding=pads,
            rhs_dilation=dilation,
            dimension_numbers=_DIMENSION_NUMBERS[n],
            feature_group_count=groups,
        )
    return _unbatched(_add_bias(fn, y, bias), added)


def _conv_im2col(x: jax.Array, weight: jax.Array, stride, pads: Pairs, dilation) -> jax.Array:
    """The convolution as one dot: the kernel's strided slices of the zero-padded input
    stacked last (im2col), contracted with the weight over channels and kernel elements.
    On CPU this beats XLA's convolution when that contraction is short (a first layer on
    grey images: LeNet's 1 x 5 x 5, 1.5-2x for the forward and weight-gradient pass)."""
    out_channels, in_channels, *kernel = weight.shape
    x = lax.pad(x, np.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in pads)])
    sizes = [
        (size - d * (k - 1) - 1) // s + 1
        for size, k, s, d in zip(x.shape[2:], kernel, stride, dilation, strict=True)
    ]
    patches = jnp.stack(list(_window_slices(x, kernel, stride, dilation, sizes)), axis=-1)
    w = weight.reshape(out_channels, in_channels, -1)
    y = jnp.einsum("nc...k,ock->n...o", patches, w)  # (N, *out, C_out)
    return jnp.moveaxis(y, -1, 1)


def _window_slices(x: jax.Array, kernel, stride, dilation, sizes):
    """For each kernel element in row-major order, the strided slice of ``x``
    ``(N, C, *spatial)`` that it meets in the ``sizes`` output windows."""
    for offsets in itertools.product(*(range(k) for k in kernel)):
        start = (0, 0, *(o * d for o, d in zip(offsets, dilation, strict=True)))
        limit = (
            *x.shape[:2],
            *(b + s * (n - 1) + 1 for b, s, n in zip(start[2:], stride, sizes, strict=True)),
        )
        yield lax.slice(x, start, limit, (1, 1, *stride))


def _check_groups(fn: str, groups: int, **channels: int) -> None:
    if isinstance(groups, bool) or not isinstance(groups, int | np.integer) or groups < 1:
        raise ValueError(f"{fn}: groups must be a positive int, got {groups!r}")
    for name, count in channels.items():
        if count % groups:
            raise ValueError(f"{fn}: groups={groups} must divide {name}={count}")


def _check_channels(fn: str, x: jax.Array, expected: int, n: int) -> None:
    """The input's channel axis (1) must hold ``expected`` channels; channels-last data
    gets told how to reorder it."""
    if x.shape[1] == expected:
        return
    hint = ""
    if x.shape[-1] == expected:
        order = ", ".join(map(str, (0, n + 1, *range(1, n + 1))))
        hint = (
            f"; the channels look last: reorder them with x.transpose({order}) "
            f"(torch: x.permute({order}))"
        )
    raise ValueError(
        f"{fn} expected input {_LAYOUT[n]} with C={expected} channels, got shape {x.shape}{hint}"
    )


def _add_bias(fn: str, y: jax.Array, bias: jax.Array | None) -> jax.Array:
    if bias is None:
        return y
    bias = jnp.asarray(bias)
    if bias.shape != (y.shape[1],):
        raise ValueError(f"{fn} expected bias of shape ({y.shape[1]},), got {bias.shape}")
    return y + bias.reshape(1, -1, *(1,) * (y.ndim - 2))


def conv_transpose2d(
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
) -> jax.Array:
    """2-d transposed convolution (``F.conv_transpose2d``), the gradient of ``conv2d`` with
    respect to its input: ``input`` ``(N, C_in, H, W)`` or ``(C_in, H, W)``, ``weight``
    ``[C_in, C_out / groups, kH, kW]``. The output is
    ``(H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1`` high;
    ``output_padding`` (below ``stride`` or ``dilation``) adds rows and columns after."""
    fn = "conv_transpose2d"
    weight = jnp.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(
            f"{fn} expected a 4-d weight [in, out / groups, kH, kW], got shape {weight.shape}"
        )
    x, added = _batched(fn, input, 2)
    in_channels, out_per_group, *kernel = weight.shape
    _check_groups(fn, groups, in_channels=in_channels)
    _check_channels(fn, x, in_channels, 2)
    stride = _tuple(fn, "stride", stride, 2, 1)
    dilation = _tuple(fn, "dilation", dilation, 2, 1)
    padding = _tuple(fn, "padding", padding, 2, 0)
    output_padding = _tuple(fn, "output_padding", output_padding, 2, 0)
    for op, s, d in zip(output_padding, stride, dilation, strict=True):
        if op >= max(s, d):
            raise ValueError(
                f"{fn}: output_padding={output_padding} must be smaller than stride={stride} "
                f"or dilation={dilation}"
            )
    # [in, out/g, kH, kW] -> [out, in/g, kH, kW], spatially flipped: conv2d's weight for
    # the input-dilated convolution that equals the transpose.
    w = weight.reshape(groups, in_channels // groups, out_per_group, *kernel)
    w = jnp.swapaxes(w, 1, 2).reshape(groups * out_per_group, in_channels // groups, *kernel)
    w = jnp.flip(w, axis=(2, 3))
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for d, k, p, op in zip(dilation, kernel, padding, output_padding, strict=True)
    ]
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=(1, 1),
        padding=pads,
        lhs_dilation=stride,
        rhs_dilation=dilation,
        dimension_numbers=_DIMENSION_NUMBERS[2],
        feature_group_count=groups,
    )
    if any(s < 1 for s in y.shape[2:]):
        raise ValueError(f"{fn}: the output size {y.shape[2:]} is not positive")
    return _unbatched(_add_bias(fn, y, bias), added)


# ------------------------------------------------------------------------- pooling


def _pool_pads(
    fn: str, spatial, kernel, stride, padding, dilation, ceil_mode
) -> tuple[Pairs, list[int]]:
    """``(before, after)`` padding and output sizes of a pooling window, as torch's
    ``pooling_output_shape``: with ``ceil_mode`` a last partial window counts if it starts
    inside the input or the left padding; the extra elements it needs go after."""
    pads, sizes = [], []
    for size, k, s, p, d in zip(spatial, kernel, stride, padding, dilation, strict=True):
        extent = d * (k - 1) + 1
        span = size + 2 * p - extent
        if span < 0:
            _check_kernel_fits(fn, spatial, [(q, q) for q in padding], _extents(kernel, dilation))
        out = (span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (out - 1) * s >= size + p:
            out -= 1
        pads.append((p, p + max(0, (out - 1) * s + extent - size - 2 * p)))
        sizes.append(out)
    return pads, sizes


def _extents(kernel, dilation) -> list[int]:
    return [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]


def _pool_args(fn, kernel_size, stride, padding, dilation=1):
    kernel = _tuple(fn, "kernel_size", kernel_size, 2, 1)
    stride = kernel if stride is None or stride == () else _tuple(fn, "stride", stride, 2, 1)
    padding = _tuple(fn, "padding", padding, 2, 0)
    dilation = _tuple(fn, "dilation", dilation, 2, 1)
    if any(2 * p > k for p, k in zip(padding, kernel, strict=True)):
        raise ValueError(
            f"{fn}: padding={padding} must be at most half of kernel_size={kernel}, as in torch"
        )
    return kernel, stride, padding, dilation


def max_pool2d(
    input: jax.Array,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """The maximum over each window (``F.max_pool2d``) of an ``(N, C, H, W)`` or
    ``(C, H, W)`` input; ``stride`` defaults to ``kernel_size``, padding is ``-inf``
    (at most half the kernel), ``ceil_mode`` keeps a last partial window."""
    fn = "max_pool2d"
    x, added = _batched(fn, input, 2)
    kernel, stride, padding, dilation = _pool_args(fn, kernel_size, stride, padding, dilation)
    pads, sizes = _pool_pads(fn, x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
    x = lax.pad(
        x, jnp.array(-jnp.inf, x.dtype), [(0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in pads)]
    )
    return _unbatched(_window_max(x, kernel, stride, dilation, sizes), added)


def _window_max(x: jax.Array, kernel, stride, dilation, sizes) -> jax.Array:
    """The maximum over each window of the (padded) ``x``, folded over the window's
    strided slices in row-major order: an element replaces the running maximum only if it
    is larger or NaN, so the value and the gradient's route are torch's (first maximum)."""
    best = None
    for window in _window_slices(x, kernel, stride, dilation, sizes):
        if best is None:
            best = window
        else:
            best = jnp.where((window > best) | jnp.isnan(window), window, best)
    return best


def avg_pool2d(
    input: jax.Array,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> jax.Array:
    """The mean over each window (``F.avg_pool2d``) of an ``(N, C, H, W)`` or ``(C, H, W)``
    input. The divisor is ``divisor_override`` if given, else the window's size clipped to
    the zero-padded input (``count_include_pad=True``) or to the input itself; the part of
    a ``ceil_mode`` window beyond the padding never counts, as in torch."""
    fn = "avg_pool2d"
    x, added = _batched(fn, input, 2)
    kernel, stride, padding, _ = _pool_args(fn, kernel_size, stride, padding)
    if divisor_override is not None and (
        not isinstance(divisor_override, int | np.integer) or divisor_override < 1
    ):
        raise ValueError(f"{fn}: divisor_override must be a positive int, got {divisor_override!r}")
    spatial = x.shape[2:]
    pads, sizes = _pool_pads(fn, spatial, kernel, stride, padding, (1, 1), ceil_mode)
    zero = np.zeros((), x.dtype)  # concrete: reduce_window then knows its sum's gradient
    sums = lax.reduce_window(
        x, zero, lax.add, (1, 1, *kernel), (1, 1, *stride), [(0, 0), (0, 0), *pads]
    )
    if divisor_override is not None:
        divisor = np.array(divisor_override)
    else:
        h, w = (
            _window_counts(*args, count_include_pad)
            for args in zip(spatial, sizes, kernel, stride, padding, strict=True)
        )
        divisor = np.outer(h, w)[None, None]
    return _unbatched(sums / jnp.asarray(divisor, x.dtype), added)


def _window_counts(size, out, k, s, p, count_include_pad) -> np.ndarray:
    """How many elements each of the ``out`` windows along one dimension averages."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def _adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive windows: ``[floor(i * size / out), ceil((i + 1) * size / out))``."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _output_size(fn: str, output_size, spatial: tuple[int, ...]) -> tuple[int, int]:
    """``output_size`` as a pair; ``None`` keeps the input's size along that dimension."""
    pair = (
        (output_size,) * 2 if output_size is None or isinstance(output_size, int) else output_size
    )
    pair = tuple(size if o is None else o for o, size in zip(pair, spatial, strict=False))
    return _tuple(fn, "output_size", pair, 2, 1)


def adaptive_avg_pool2d(input: jax.Array, output_size: int | Sequence[int | None]) -> jax.Array:
    """Average pooling to a fixed ``output_size`` (``F.adaptive_avg_pool2d``) over torch's
    windows ``[floor(i * H / out), ceil((i + 1) * H / out))``, which may overlap and differ
    in size when ``out`` does not divide ``H``."""
    fn = "adaptive_avg_pool2d"
    x, added = _batched(fn, input, 2)
    (out_h, out_w) = _output_size(fn, output_size, x.shape[2:])
    # Each dimension's averaging is a (out, in) matrix of 1 / window size on the window.
    mh, mw = (
        _averaging_matrix(size, out, x.dtype)
        for size, out in zip(x.shape[2:], (out_h, out_w), strict=True)
    )
    y = jnp.einsum("nchw,oh,pw->ncop", x, mh, mw, precision=lax.Precision.HIGHEST)
    return _unbatched(y, added)


def _averaging_matrix(size: int, out: int, dtype) -> jax.Array:
    start, end = _adaptive_windows(size, out)
    cols = np.arange(size)
    inside = (cols >= start[:, None]) & (cols < end[:, None])
    return jnp.asarray(inside / (end - start)[:, None], dtype)


def adaptive_max_pool2d(input: jax.Array, output_size: int | Sequence[int | None]) -> jax.Array:
    """Max pooling to a fixed ``output_size`` (``F.adaptive_max_pool2d``, without
    ``return_indices``) over torch's windows ``[floor(i * H / out), ceil((i + 1) * H / out))``;
    the gradient goes to each window's first maximum."""
    fn = "adaptive_max_pool2d"
    x, added = _batched(fn, input, 2)
    (out_h, out_w) = _output_size(fn, output_size, x.shape[2:])
    ih, iw = (
        _window_indices(size, out) for size, out in zip(x.shape[2:], (out_h, out_w), strict=True)
    )
    # (N, C, out_h, Lh, out_w, Lw) -> (N, C, out_h, out_w, Lh * Lw), windows in row-major order.
    windows = x[:, :, ih[:, :, None, None], iw[None, None, :, :]]
    windows = windows.transpose(0, 1, 2, 4, 3, 5).reshape(*x.shape[:2], out_h, out_w, -1)
    first = jnp.argmax(windows, axis=-1, keepdims=True)
    return _unbatched(jnp.take_along_axis(windows, first, axis=-1)[..., 0], added)


def _window_indices(size: int, out: int) -> np.ndarray:
    """``(out, longest window)`` indices of each adaptive window, a shorter window padded
    with its own last index (a repeat leaves the maximum and its first position alone)."""
    start, end = _adaptive_windows(size, out)
    length = int(np.max(end - start))
    return np.minimum(start[:, None] + np.arange(length), end[:, None] - 1)
