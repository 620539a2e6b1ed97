"""Activations, dropout, normalisation, convolution, pooling, ``one_hot`` and losses with
PyTorch's names, defaults and numbers (``torch.nn.functional``); the convolution and
pooling functions live in :mod:`jaxnet.nn.convolution`.

Every function is pure and works under ``jax.grad``, ``jax.jit`` and ``jax.vmap``. Dropout
takes its randomness as an argument (a PRNG key or a keep-mask) and ``batch_norm`` returns
its updated running statistics instead of modifying them: see :func:`dropout` and
:func:`batch_norm`.

Values *and* gradients follow torch, including the places where JAX's own choice
differs: ``leaky_relu``'s slope and ``l1_loss``'s zero gradient at 0, the exact-erf
``gelu`` by default, ``binary_cross_entropy``'s clamped logs and clamped gradient, and
``mse_loss`` without ``optax.l2_loss``'s factor 0.5.

Losses refuse what torch would broadcast or clamp silently:

* every loss takes a floating-point ``input`` and raises ``TypeError`` for an integer or
  bool one (torch refuses those too), so no loss computes in integers and wraps around;
  the targets of the elementwise losses may be integers or bools (0/1 labels): they are
  converted to the input's dtype before any arithmetic;
* ``input`` and ``target`` of different shapes raise ``ValueError`` (torch only warns);
* integer class labels outside ``[0, C)`` (other than ``ignore_index``) raise
  ``ValueError`` when the labels are concrete; under ``jax.jit``, where their values are
  unknown while tracing, the affected losses are NaN instead of gathering a clamped,
  wrong class.

Every other check is on shapes and dtypes, in Python, so it costs nothing under ``jit``.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet.nn._arrays import check_floating
from jaxnet.nn._dropout import dropout as dropout
from jaxnet.nn._dropout import dropout1d as dropout1d
from jaxnet.nn._dropout import dropout2d as dropout2d
from jaxnet.nn._norm import BatchNormOutput as BatchNormOutput
from jaxnet.nn._norm import batch_norm as batch_norm
from jaxnet.nn._norm import layer_norm as layer_norm
from jaxnet.nn.convolution import adaptive_avg_pool2d as adaptive_avg_pool2d
from jaxnet.nn.convolution import adaptive_max_pool2d as adaptive_max_pool2d
from jaxnet.nn.convolution import avg_pool2d as avg_pool2d
from jaxnet.nn.convolution import conv1d as conv1d
from jaxnet.nn.convolution import conv2d as conv2d
from jaxnet.nn.convolution import conv_transpose2d as conv_transpose2d
from jaxnet.nn.convolution import max_pool2d as max_pool2d
from jaxnet.nn.convolution import pad as pad

_REDUCTIONS = ("none", "mean", "sum")
_GELU_APPROXIMATIONS = ("none", "tanh")
# torch's floor on x(1 - x) in binary_cross_entropy's gradient: 1e-12 as a float32
# constant, whatever the input's dtype.
_BCE_GRAD_EPS = float(np.float32(1e-12))

# ---------------------------------------------------------------- activations


def relu(input: jax.Array) -> jax.Array:
    """``max(input, 0)`` (``F.relu``); the gradient at 0 is 0, as in torch."""
    return jax.nn.relu(input)


def sigmoid(input: jax.Array) -> jax.Array:
    """``1 / (1 + exp(-input))`` (``F.sigmoid``); gradient ``σ(1 - σ)``."""
    return jax.nn.sigmoid(input)


def tanh(input: jax.Array) -> jax.Array:
    """Hyperbolic tangent (``F.tanh``); gradient ``1 - tanh²``."""
    return jnp.tanh(input)


def step(input: jax.Array) -> jax.Array:
    """Heaviside step: 1 where ``input > 0``, else 0, in the input's dtype.

    PyTorch has no ``F.step``; the value equals ``torch.heaviside(input, values=0)``.
    The step is the perceptron's activation that is not differentiable (its jump at 0
    has no derivative and it is flat everywhere else), so its gradient is 0 everywhere:
    nothing learns through it, which is why sigmoid replaced it.
    """
    input = jnp.asarray(input)
    return (input > 0).astype(input.dtype)


def softmax(input: jax.Array, dim: int) -> jax.Array:
    """``exp(x) / sum(exp(x))`` along ``dim`` (``F.softmax``; ``dim`` is required)."""
    input = jnp.asarray(input)
    _check_dim("softmax", input, dim)
    return jnp.reshape(jax.nn.softmax(jnp.atleast_1d(input), axis=dim), input.shape)


def log_softmax(input: jax.Array, dim: int) -> jax.Array:
    """``log(softmax(input, dim))``, computed stably (``F.log_softmax``; ``dim`` is required)."""
    input = jnp.asarray(input)
    _check_dim("log_softmax", input, dim)
    return jnp.reshape(jax.nn.log_softmax(jnp.atleast_1d(input), axis=dim), input.shape)


def leaky_relu(input: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """``input`` where positive, else ``negative_slope * input`` (``F.leaky_relu``).

    The gradient at 0 is ``negative_slope`` as in torch (``jax.nn.leaky_relu`` gives 1).
    """
    return jnp.where(input > 0, input, input * negative_slope)


def gelu(input: jax.Array, approximate: str = "none") -> jax.Array:
    """``x Φ(x)`` (``F.gelu``): exact erf form by default, ``approximate='tanh'`` for the tanh form.

    ``jax.nn.gelu`` defaults to the tanh form; jaxnet follows torch's default.
    """
    if approximate not in _GELU_APPROXIMATIONS:
        raise ValueError(
            f"gelu: approximate must be one of {_GELU_APPROXIMATIONS}, got {approximate!r}"
        )
    return jax.nn.gelu(input, approximate=approximate == "tanh")


def silu(input: jax.Array) -> jax.Array:
    """``x * sigmoid(x)``, also called swish (``F.silu``)."""
    return jax.nn.silu(input)


def elu(input: jax.Array, alpha: float = 1.0) -> jax.Array:
    """``input`` where positive, else ``alpha * (exp(input) - 1)`` (``F.elu``).

    The gradient at 0 is ``alpha``, as in torch.
    """
    return jax.nn.elu(input, alpha)


# ------------------------------------------------------------------ labels


def one_hot(tensor, num_classes: int = -1) -> jax.Array:
    """Integer labels of shape ``(*)`` -> one-hot rows ``(*, num_classes)`` (``F.one_hot``).

    The result is an integer array, as torch's int64: int64 when ``jax_enable_x64`` is on,
    else JAX's default int (int32). For float targets write
    ``F.one_hot(y, 10).astype(jnp.float32)``, as torch users write ``.float()``.
    ``num_classes=-1`` (the default) means one more than the largest label, as in torch; it
    needs concrete, non-empty labels (the output shape depends on their values), so pass
    ``num_classes`` under ``jax.jit``. Unlike ``jax.nn.one_hot`` (which silently yields
    all-zero rows), a label outside ``0..num_classes-1`` raises ``ValueError`` as in
    torch; the check needs concrete labels, so under ``jax.jit`` it is skipped. Labels of
    any integer dtype are taken (torch takes only int64); others raise ``TypeError``.
    """
    if not jnp.issubdtype(jnp.result_type(tensor), jnp.integer):
        raise TypeError(f"one_hot expected integer labels, got {jnp.result_type(tensor)}")
    try:
        if isinstance(num_classes, bool):
            raise TypeError
        num_classes = operator.index(num_classes)  # ints, NumPy and concrete 0-d JAX ints
    except TypeError:
        raise TypeError(
            f"one_hot: num_classes must be an int, got {type(num_classes).__name__}"
        ) from None
    if num_classes == 0 or num_classes < -1:
        raise ValueError(
            f"one_hot: num_classes must be positive, or -1 to infer it from the labels, "
            f"got {num_classes}"
        )
    if isinstance(tensor, jax.core.Tracer):
        if num_classes == -1:
            raise ValueError(
                "one_hot: num_classes=-1 infers the class count from the labels' values, "
                "which are unknown under jax.jit; pass num_classes"
            )
    else:
        labels = np.asarray(tensor)
        if num_classes == -1:
            if not labels.size:
                raise ValueError(
                    "one_hot: num_classes=-1 cannot infer the class count from no labels"
                )
            num_classes = int(labels.max()) + 1
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"one_hot expected labels in 0..{num_classes - 1}, "
                f"got values in {labels.min()}..{labels.max()}"
            )
    return jax.nn.one_hot(tensor, num_classes, dtype=jax.dtypes.canonicalize_dtype(jnp.int64))


# ------------------------------------------------------------- regression losses


def mse_loss(
    input: jax.Array,
    target: jax.Array,
    reduction: str = "mean",
    weight: jax.Array | None = None,
) -> jax.Array:
    """``weight * (input - target)²``, reduced (``F.mse_loss``).

    ``weight``, if given, has the input's shape (torch's rule) and ``'mean'`` is then
    ``sum(weight * loss) / sum(weight)``; without it, the plain mean.
    ``optax.l2_loss`` is half of the unweighted loss; ``optax.losses.squared_error`` is it.
    """
    input, target = _same_shape("mse_loss", input, target)
    _check_reduction("mse_loss", reduction)
    return _weighted(
        "mse_loss", optax.losses.squared_error(input, target), weight, input, reduction
    )


def l1_loss(
    input: jax.Array,
    target: jax.Array,
    reduction: str = "mean",
    weight: jax.Array | None = None,
) -> jax.Array:
    """``weight * |input - target|``, reduced (``F.l1_loss``); the gradient at a tie is 0.

    ``weight`` and ``'mean'`` as in :func:`mse_loss`.
    """
    input, target = _same_shape("l1_loss", input, target)
    _check_reduction("l1_loss", reduction)
    return _weighted("l1_loss", _abs(input - target), weight, input, reduction)


def _weighted(
    name: str, loss: jax.Array, weight: jax.Array | None, input: jax.Array, reduction: str
) -> jax.Array:
    """``loss`` reduced; with ``weight`` (the input's shape), ``'mean'`` is the weighted mean."""
    if weight is None:
        return _reduce(loss, reduction)
    weight = jnp.asarray(weight)
    if weight.shape != input.shape:
        raise ValueError(
            f"{name}: weight must have the input's shape {input.shape}, got {weight.shape}"
        )
    loss = loss * weight.astype(input.dtype)
    if reduction == "mean":
        return jnp.sum(loss) / jnp.sum(weight.astype(input.dtype))
    return _reduce(loss, reduction)


@jax.custom_jvp
def _abs(x: jax.Array) -> jax.Array:
    """``|x|`` with torch's gradient ``sign(x)`` (0 at 0; ``jnp.abs`` gives 1 there)."""
    return jnp.abs(x)


_abs.defjvps(lambda x_dot, _, x: jnp.sign(x) * x_dot)


# ------------------------------------------------------------ classification losses


def cross_entropy(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> jax.Array:
    """Softmax cross-entropy of logits against classes (``F.cross_entropy``).

    ``input`` holds logits of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``; the
    class dim is 1 (0 for ``(C,)``). ``target`` is either integer class indices of the
    input's shape without the class dim, or class probabilities of the input's shape.

    With class indices, targets equal to ``ignore_index`` contribute 0, and ``'mean'``
    divides by the summed ``weight`` of the counted targets (their count without
    ``weight``). ``label_smoothing = ε`` mixes the one-hot target with the uniform
    distribution: ``(1 - ε) nll + (ε / C) Σ_c -w_c log p_c``. With probabilities,
    ``ignore_index`` must stay negative (unused) and ``'mean'`` divides by the number
    of distributions, ``numel / C``, whatever the weights.
    """
    name = "cross_entropy"
    input, target = jnp.asarray(input), jnp.asarray(target)
    _check_reduction(name, reduction)
    _check_label_smoothing(name, label_smoothing)
    class_dim = _class_dim(name, input)
    n_classes = input.shape[class_dim]
    weight = _class_weight(name, weight, input, class_dim)
    probabilities = jnp.issubdtype(target.dtype, jnp.floating) and target.shape == input.shape
    if probabilities and ignore_index >= 0:
        raise ValueError(
            f"{name}: ignore_index applies to class indices only; with class-probability "
            f"targets it must be negative, got {ignore_index}"
        )
    if not probabilities:
        _check_index_target(name, input, target, class_dim, ignore_index)

    log_p = jax.nn.log_softmax(input, axis=class_dim)
    weight_c = None if weight is None else _along(weight, class_dim, input.ndim)  # (1, C, 1...)
    if probabilities:
        q = target * (1 - label_smoothing) + label_smoothing / n_classes
        q = q if weight_c is None else q * weight_c
        return _reduce(-jnp.sum(log_p * q, axis=class_dim), reduction)

    loss, target_weight, kept = _nll_terms(log_p, target, weight, ignore_index, class_dim)
    if label_smoothing > 0:
        uniform = -jnp.sum(log_p if weight_c is None else log_p * weight_c, axis=class_dim)
        uniform = jnp.where(kept, uniform, 0)
        loss = (1 - label_smoothing) * loss + (label_smoothing / n_classes) * uniform
    return _reduce(loss, reduction, jnp.sum(target_weight), jnp.any(kept))


def nll_loss(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> jax.Array:
    """Negative log-likelihood of log-probabilities at integer classes (``F.nll_loss``).

    ``input``: log-probabilities ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``; ``target``:
    class indices of the input's shape without the class dim. ``weight``,
    ``ignore_index`` and ``'mean'`` behave as in :func:`cross_entropy`;
    ``cross_entropy(x, y) == nll_loss(log_softmax(x, 1), y)``.
    """
    name = "nll_loss"
    input, target = jnp.asarray(input), jnp.asarray(target)
    _check_reduction(name, reduction)
    class_dim = _class_dim(name, input)
    weight = _class_weight(name, weight, input, class_dim)
    _check_index_target(name, input, target, class_dim, ignore_index)
    loss, target_weight, kept = _nll_terms(input, target, weight, ignore_index, class_dim)
    return _reduce(loss, reduction, jnp.sum(target_weight), jnp.any(kept))


def binary_cross_entropy(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """``-w [t log x + (1 - t) log(1 - x)]`` for probabilities ``x`` (``F.binary_cross_entropy``).

    As in torch, each log is clamped to ``>= -100`` (so ``x = 0`` or ``1`` gives a finite
    loss), the gradient is ``w (x - t) / max(x (1 - x), 1e-12)`` (finite at the ends)
    and the gradient with respect to ``target`` is ``-w logit(x)``. ``weight``
    broadcasts to the input's shape; ``'mean'`` is the plain mean of the weighted
    losses. Inputs outside ``[0, 1]`` give NaN (torch raises on concrete values).
    """
    name = "binary_cross_entropy"
    input, target = _same_shape(name, input, target)
    _check_reduction(name, reduction)
    weight = _elementwise_weight(name, "weight", weight, input)
    loss = _bce(input, target)
    return _reduce(loss if weight is None else loss * weight, reduction)


@jax.custom_jvp
def _bce(x: jax.Array, t: jax.Array) -> jax.Array:
    return (t - 1) * jnp.maximum(jnp.log1p(-x), -100.0) - t * jnp.maximum(jnp.log(x), -100.0)


@_bce.defjvp
def _bce_jvp(primals, tangents):
    x, t = primals
    x_dot, t_dot = tangents
    d_x = (x - t) / jnp.maximum((1 - x) * x, _BCE_GRAD_EPS)
    d_t = jnp.log1p(-x) - jnp.log(x)  # -logit(x)
    return _bce(x, t), d_x * x_dot + d_t * t_dot


def binary_cross_entropy_with_logits(
    input: jax.Array,
    target: jax.Array,
    weight: jax.Array | None = None,
    reduction: str = "mean",
    pos_weight: jax.Array | None = None,
) -> jax.Array:
    """Binary cross-entropy of ``sigmoid(input)``, computed stably from logits.

    ``torch.nn.functional.binary_cross_entropy_with_logits``, with torch's formula
    ``(1 - t) x - (1 + (p - 1) t) log σ(x)``, where ``p = pos_weight`` (broadcast to
    the input's shape, typically ``(C,)``) scales the positive term; ``weight`` scales
    each element. ``'mean'`` is the plain mean of the weighted losses.
    """
    name = "binary_cross_entropy_with_logits"
    input, target = _same_shape(name, input, target)
    _check_reduction(name, reduction)
    weight = _elementwise_weight(name, "weight", weight, input)
    pos_weight = _elementwise_weight(name, "pos_weight", pos_weight, input)
    log_weight = 1 if pos_weight is None else (pos_weight - 1) * target + 1
    loss = (1 - target) * input - log_weight * jax.nn.log_sigmoid(input)
    return _reduce(loss if weight is None else loss * weight, reduction)


# ------------------------------------------------------------------- helpers


def _check_reduction(name: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_label_smoothing(name: str, label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing!r}")


def _check_dim(name: str, input: jax.Array, dim: int) -> None:
    ndim = max(input.ndim, 1)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -ndim <= dim < ndim:
        raise ValueError(
            f"{name}: dim must be an int in [{-ndim}, {ndim}) for an input of shape "
            f"{input.shape}, got {dim!r}"
        )


def _reduce(
    loss: jax.Array,
    reduction: str,
    total_weight: jax.Array | None = None,
    any_kept: jax.Array | None = None,
) -> jax.Array:
    """Torch's reductions; ``'mean'`` divides by ``total_weight`` when given, else the count.

    With every target ignored (``any_kept`` false) the weighted mean is torch's ``0/0 = nan``
    and, as in torch, the gradient is 0 (a plain division would make it nan too).
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if total_weight is None:
        return jnp.mean(loss)
    denominator = jnp.where(any_kept, total_weight, 1)
    return jnp.where(any_kept, jnp.sum(loss) / denominator, jnp.nan)


def _same_shape(name: str, input, target) -> tuple[jax.Array, jax.Array]:
    """A floating input and a same-shape target, converted to the input's dtype if it is
    integer or bool (a floating target keeps its dtype, as in torch's type promotion)."""
    input, target = jnp.asarray(input), jnp.asarray(target)
    check_floating(name, input)
    if input.shape != target.shape:
        raise ValueError(
            f"{name}: input and target must have the same shape (jaxnet does not "
            f"broadcast them), got input {input.shape} and target {target.shape}"
        )
    if jnp.issubdtype(target.dtype, jnp.integer) or target.dtype == jnp.bool_:
        target = target.astype(input.dtype)
    return input, target


def _elementwise_weight(name: str, what: str, weight, input: jax.Array) -> jax.Array | None:
    """``weight`` in the input's dtype, broadcast explicitly to its shape (as torch would)."""
    if weight is None:
        return None
    weight = jnp.asarray(weight, input.dtype)
    try:
        shape = np.broadcast_shapes(weight.shape, input.shape)
    except ValueError:
        shape = None
    if shape != input.shape:
        raise ValueError(
            f"{name}: {what} must broadcast to the input's shape {input.shape}, "
            f"got shape {weight.shape}"
        )
    return jnp.broadcast_to(weight, input.shape)


def _class_dim(name: str, input: jax.Array) -> int:
    """The class axis of ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)`` inputs."""
    if input.ndim == 0:
        raise ValueError(f"{name}: expected input (C,), (N, C) or (N, C, d1, ...), got shape ()")
    check_floating(name, input)
    return 0 if input.ndim == 1 else 1


def _class_weight(name: str, weight, input: jax.Array, class_dim: int) -> jax.Array | None:
    if weight is None:
        return None
    weight = jnp.asarray(weight, input.dtype)
    n_classes = input.shape[class_dim]
    if weight.shape != (n_classes,):
        raise ValueError(
            f"{name}: weight must have shape ({n_classes},), one per class, got {weight.shape}"
        )
    return weight


def _along(weight: jax.Array, class_dim: int, ndim: int) -> jax.Array:
    """``(C,)`` reshaped to ``(1, C, 1, ...)`` so it multiplies along the class dim."""
    return jnp.reshape(weight, [-1 if d == class_dim else 1 for d in range(ndim)])


def _check_index_target(
    name: str, input: jax.Array, target: jax.Array, class_dim: int, ignore_index: int
) -> None:
    """Shape and dtype of class indices; their values too when they are concrete."""
    expected = input.shape[:class_dim] + input.shape[class_dim + 1 :]
    if target.shape != expected:
        probabilities = (
            f" or probabilities of shape {input.shape}" if name == "cross_entropy" else ""
        )
        raise ValueError(
            f"{name}: for input of shape {input.shape} expected a target of class indices of "
            f"shape {expected}{probabilities}, got shape {target.shape}"
        )
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"{name}: class indices must have an integer dtype, got {target.dtype}")
    if isinstance(target, jax.core.Tracer):
        return  # values unknown while tracing: _nll_terms turns bad labels into NaN
    n_classes = input.shape[class_dim]
    labels = np.asarray(target)
    bad = labels[((labels < 0) | (labels >= n_classes)) & (labels != ignore_index)]
    if bad.size:
        raise ValueError(
            f"{name}: target class indices must be in [0, {n_classes}) or equal "
            f"ignore_index={ignore_index}, got {np.unique(bad)[:8].tolist()}"
        )


def _nll_terms(
    log_p: jax.Array,
    target: jax.Array,
    weight: jax.Array | None,
    ignore_index: int,
    class_dim: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-element ``-w[y] log_p[y]``, the weights ``w[y]`` (0 if ignored), the kept mask.

    Labels outside ``[0, C)`` other than ``ignore_index`` (possible only when traced)
    make their loss NaN, where a plain gather would clamp them to a valid class.
    """
    n_classes = log_p.shape[class_dim]
    kept = target != ignore_index
    in_range = (target >= 0) & (target < n_classes)
    safe = jnp.where(in_range, target, 0)
    picked = jnp.take_along_axis(log_p, jnp.expand_dims(safe, class_dim), axis=class_dim)
    picked = jnp.squeeze(picked, class_dim)  # (N, d1, ...)
    target_weight = jnp.where(kept, 1 if weight is None else weight[safe], 0).astype(log_p.dtype)
    loss = jnp.where(kept & ~in_range, jnp.nan, -target_weight * picked)
    return loss, target_weight, kept
