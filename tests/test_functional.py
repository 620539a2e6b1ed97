"""jaxnet.nn.functional against torch.nn.functional: values, gradients, options, errors.

Each comparison runs torch and jaxnet on the same NumPy inputs and checks the value and
the input gradient (a vector-Jacobian product with one random cotangent, so
``reduction='none'`` is covered too): float64 with rtol 1e-10 for the formulas, float32
with rtol 1e-5 / atol 1e-6 for the user's path.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as TF

import jaxnet.nn.functional as F

REDUCTIONS = ["none", "mean", "sum"]
F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 1e-5, "atol": 1e-6}


def assert_matches_torch(cases, tol=F64, jit=False):
    """For each ``name: (jax_fn, torch_fn, x)``, values at ``x`` and input gradients agree.

    Gradients are vector-Jacobian products with one random cotangent per case.
    ``jit=True`` evaluates all jaxnet sides in one compiled call, cheaper than compiling
    many small jitted functions (such as jax.nn's) one by one; eagerly, JAX reuses its
    per-operation compilations across the tests, whose inputs share shapes. jit and
    eager are also compared directly.
    """
    rng = np.random.default_rng(1)
    inputs = {name: x for name, (_, _, x) in cases.items()}
    cotangents = {
        name: rng.normal(size=jax.eval_shape(jax_fn, x).shape).astype(x.dtype)
        for name, (jax_fn, _, x) in cases.items()
    }

    def values_and_grads(inputs, cotangents):
        out = {}
        for name, (jax_fn, _, _) in cases.items():
            y, vjp = jax.vjp(jax_fn, inputs[name])
            out[name] = (y, *vjp(cotangents[name]))
        return out

    results = (jax.jit(values_and_grads) if jit else values_and_grads)(inputs, cotangents)
    for name, (_, torch_fn, x) in cases.items():
        xt = torch.tensor(x, requires_grad=True)
        yt = torch_fn(xt)
        yt.backward(torch.tensor(cotangents[name]))
        y, grad = results[name]
        assert y.dtype == x.dtype, name
        np.testing.assert_allclose(y, yt.detach().numpy(), err_msg=f"{name} value", **tol)
        np.testing.assert_allclose(grad, xt.grad.numpy(), err_msg=f"{name} gradient", **tol)


def loss_cases(name, x, target, **kwargs):
    """``F.<name>`` and ``torch.nn.functional.<name>``, same options, one case per reduction."""
    jax_kw, torch_kw = split_kwargs(kwargs)
    target_t = torch.tensor(target)
    return {
        reduction: (
            lambda x, r=reduction: getattr(F, name)(x, target, reduction=r, **jax_kw),
            lambda x, r=reduction: getattr(TF, name)(x, target_t, reduction=r, **torch_kw),
            x,
        )
        for reduction in REDUCTIONS
    }


def split_kwargs(kwargs):
    """The same keyword arguments for jaxnet (jax arrays) and torch (tensors)."""
    jax_kw = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    torch_kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    return jax_kw, torch_kw


def assert_grads_match_finite_differences(fns, x, jit=False, eps=1e-5):
    """For each ``name: fn``: central differences of ``sum(fn(x) * v)`` along random
    directions ``d`` equal ``grad · d`` (float64)."""
    rng = np.random.default_rng(4)
    directions = rng.normal(size=(3, *np.shape(x)))
    cotangents = {name: rng.normal(size=jax.eval_shape(fn, x).shape) for name, fn in fns.items()}

    def probe(x):
        out = {}
        for name, fn in fns.items():
            f = lambda x, fn=fn, v=cotangents[name]: jnp.sum(fn(x) * v)  # noqa: E731
            numeric = [(f(x + eps * d) - f(x - eps * d)) / (2 * eps) for d in directions]
            out[name] = (jax.grad(f)(x), jnp.stack(numeric))
        return out

    for name, (grad, numeric) in (jax.jit(probe) if jit else probe)(x).items():
        expected = np.tensordot(directions, grad, np.ndim(x))
        np.testing.assert_allclose(numeric, expected, rtol=1e-7, atol=1e-9, err_msg=name)


# ---------------------------------------------------------------- activations

ACTIVATIONS = {
    "relu": (F.relu, TF.relu),
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "tanh": (F.tanh, torch.tanh),
    "softmax_dim1": (lambda x: F.softmax(x, dim=1), lambda x: TF.softmax(x, dim=1)),
    "softmax_dim0": (lambda x: F.softmax(x, 0), lambda x: TF.softmax(x, 0)),
    "log_softmax": (lambda x: F.log_softmax(x, dim=-1), lambda x: TF.log_softmax(x, dim=-1)),
    "leaky_relu": (F.leaky_relu, TF.leaky_relu),
    "leaky_relu_0.2": (
        lambda x: F.leaky_relu(x, negative_slope=0.2),
        lambda x: TF.leaky_relu(x, negative_slope=0.2),
    ),
    "gelu": (F.gelu, TF.gelu),
    "gelu_tanh": (
        lambda x: F.gelu(x, approximate="tanh"),
        lambda x: TF.gelu(x, approximate="tanh"),
    ),
    "silu": (F.silu, TF.silu),
    "elu": (F.elu, TF.elu),
    "elu_0.5": (lambda x: F.elu(x, alpha=0.5), lambda x: TF.elu(x, alpha=0.5)),
}


def activation_input(rng, dtype):
    x = rng.normal(size=(6, 5)) * 3
    x[0, :2] = 0.0  # the kinks of relu and leaky_relu
    return x.astype(dtype)


@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, F64), (np.float32, F32)])
def test_activations_match_torch(rng, dtype, tol):
    x = activation_input(rng, dtype)
    cases = {name: (jax_fn, torch_fn, x) for name, (jax_fn, torch_fn) in ACTIVATIONS.items()}
    assert_matches_torch(cases, tol, jit=True)


def test_activations_finite_differences(rng):
    x = rng.uniform(0.2, 2.0, size=(6, 5)) * rng.choice([-1.0, 1.0], size=(6, 5))  # off kinks
    fns = {name: jax_fn for name, (jax_fn, _) in ACTIVATIONS.items()} | {"step": F.step}
    assert_grads_match_finite_differences(fns, x, jit=True)


def test_activations_jit_equals_eager(rng):
    x = jnp.asarray(activation_input(rng, np.float64))
    fns = {name: jax_fn for name, (jax_fn, _) in ACTIVATIONS.items()} | {"step": F.step}
    jitted = jax.jit(lambda x: {name: fn(x) for name, fn in fns.items()})(x)
    for name, fn in fns.items():
        np.testing.assert_allclose(jitted[name], fn(x), rtol=1e-12, atol=1e-15, err_msg=name)


def test_activation_gradient_formulas(rng):
    """The seed's derivatives: σ' = σ(1 - σ), tanh' = 1 - tanh², relu' = [x > 0] (0 at 0)."""
    x = activation_input(rng, np.float64)
    sigma = 1 / (1 + np.exp(-x))
    formulas = {
        "sigmoid": (F.sigmoid, sigma * (1 - sigma)),
        "tanh": (F.tanh, 1 - np.tanh(x) ** 2),
        "relu": (F.relu, (x > 0).astype(x.dtype)),
    }

    # Elementwise functions: the gradient of the sum is the derivative at each point.
    @jax.jit
    def derivatives(x):
        return {
            name: jax.grad(lambda x, f=f: jnp.sum(f(x)))(x) for name, (f, _) in formulas.items()
        }

    grads = derivatives(x)
    for name, (_, expected) in formulas.items():
        np.testing.assert_allclose(grads[name], expected, rtol=1e-12, atol=1e-15, err_msg=name)
    assert x[0, 0] == 0.0 and grads["relu"][0, 0] == 0.0


def test_step_is_heaviside_with_zero_gradient(rng):
    x = activation_input(rng, np.float64)
    zero = torch.tensor(0.0, dtype=torch.float64)
    np.testing.assert_array_equal(F.step(x), torch.heaviside(torch.tensor(x), zero))
    grad = jax.grad(lambda x: jnp.sum(F.step(x)))(jnp.asarray(x))
    np.testing.assert_array_equal(grad, np.zeros_like(x))
    # The lesson of the seed: torch cannot differentiate the step at all.
    with pytest.raises(RuntimeError, match="heaviside is not implemented"):
        torch.heaviside(torch.tensor(x, requires_grad=True), zero).sum().backward()


def test_gelu_exact_and_tanh_differ_and_jax_default_is_tanh():
    x = np.array([-1.0, 1.0, 2.0])
    exact = x * 0.5 * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x]))
    approx = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    ours, ours_tanh, jax_default = jax.jit(
        lambda x: (F.gelu(x), F.gelu(x, approximate="tanh"), jax.nn.gelu(x))
    )(x)
    np.testing.assert_allclose(ours, exact, rtol=1e-14)
    np.testing.assert_allclose(ours_tanh, approx, rtol=1e-14)
    assert np.all(np.abs(exact - approx) > 5e-5)  # the two forms are different functions
    # jax.nn.gelu's default is the tanh form; jaxnet's default is torch's exact form.
    np.testing.assert_allclose(jax_default, approx, rtol=1e-14)


def test_leaky_relu_slope_at_zero_is_torchs_not_jaxs():
    ours, jax_nn = jax.jit(
        lambda x: (jax.grad(F.leaky_relu)(x), jax.grad(lambda x: jax.nn.leaky_relu(x, 0.01))(x))
    )(0.0)
    assert ours == 0.01
    assert jax_nn == 1.0  # JAX's choice differs


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_elu_gradient_at_zero_is_alpha_as_torch(alpha):
    xt = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    TF.elu(xt, alpha=alpha).sum().backward()
    assert jax.grad(lambda x: F.elu(x, alpha))(0.0) == xt.grad.item() == alpha


def test_softmax_of_a_scalar_is_one_as_torch():
    softmax, log_softmax = jax.jit(lambda x: (F.softmax(x, 0), F.log_softmax(x, -1)))(3.0)
    np.testing.assert_array_equal(softmax, TF.softmax(torch.tensor(3.0), 0))
    np.testing.assert_array_equal(log_softmax, TF.log_softmax(torch.tensor(3.0), -1))


@pytest.mark.parametrize("dim", [2, -3, 1.0])
def test_softmax_bad_dim_raises(dim):
    with pytest.raises(ValueError, match=r"softmax: dim must be an int in \[-2, 2\)"):
        F.softmax(np.zeros((2, 3)), dim)


def test_gelu_unknown_approximation_raises():
    with pytest.raises(ValueError, match=r"gelu: approximate must be one of.*got 'erf'"):
        F.gelu(np.zeros(3), approximate="erf")


# ------------------------------------------------------------- regression losses


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_regression_loss_matches_torch(rng, name):
    x, target = rng.normal(size=(2, 6, 5))
    target[0, 0] = x[0, 0]  # a tie: l1's gradient there is 0 in torch
    assert_matches_torch(loss_cases(name, x, target))


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_regression_loss_weight_matches_torch(rng, name):
    """torch 2.13's per-element ``weight``: ``'mean'`` is ``sum(w * loss) / sum(w)``."""
    x, target = rng.normal(size=(2, 6, 5))
    weight = rng.uniform(0.0, 2.0, size=(6, 5))
    assert_matches_torch(loss_cases(name, x, target, weight=weight))


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_regression_loss_weight_must_have_the_input_shape_as_in_torch(name):
    with pytest.raises(ValueError, match="Weights and input must have the same size"):
        getattr(TF, name)(torch.zeros(4, 3), torch.zeros(4, 3), weight=torch.ones(3))
    with pytest.raises(
        ValueError, match=rf"{name}: weight must have the input's shape \(4, 3\), got \(3,\)"
    ):
        getattr(F, name)(np.zeros((4, 3)), np.zeros((4, 3)), weight=np.ones(3))


def test_l1_gradient_at_a_tie_is_zero_unlike_jnp_abs():
    x = np.array([0.0, 2.0, -1.0])
    ours, jnp_abs = jax.jit(
        lambda x: (jax.grad(F.l1_loss)(x, np.zeros(3)), jax.grad(jnp.abs)(x[0]))
    )(x)
    np.testing.assert_array_equal(ours, np.array([0.0, 1.0, -1.0]) / 3)
    assert jnp_abs == 1.0  # jnp.abs's subgradient at 0 differs from torch's


def test_mse_is_twice_optax_l2_loss(rng):
    x, target = rng.normal(size=(2, 6, 5))
    mse = F.mse_loss(x, target, reduction="none")
    np.testing.assert_allclose(mse, 2 * optax.l2_loss(x, target), rtol=1e-14)
    assert not np.allclose(mse, optax.l2_loss(x, target))  # optax.l2_loss has a 0.5 factor


# ------------------------------------------------------------ classification losses

SHAPES = {"(C,)": (5,), "(N,C)": (6, 5), "(N,C,d1,d2)": (3, 5, 2, 4)}
# No ignored target, some targets at the default ignore_index, or an in-range ignore_index.
IGNORE = {"": None, "ignore-100": -100, "ignore2": 2}


def class_indices(rng, shape, ignore_index):
    """Integer labels for logits of ``shape`` (class dim 1, or 0 for ``(C,)``)."""
    class_dim = 0 if len(shape) == 1 else 1
    labels = rng.integers(0, shape[class_dim], size=shape[:class_dim] + shape[class_dim + 1 :])
    if ignore_index is not None:
        labels.flat[::3] = ignore_index  # a third of them ignored, never all
    return labels


def class_options(rng, n_classes, weighted, ignore_index):
    kwargs = {"weight": rng.uniform(0.2, 2.0, size=n_classes)} if weighted else {}
    return kwargs if ignore_index is None else {**kwargs, "ignore_index": ignore_index}


def class_index_params(test):
    """Every shape × weight × ignore_index; a lone ``(C,)`` target is never partly ignored."""
    params = [
        pytest.param(shape, weighted, ignore, id=f"{shape_id}-{'weight' if weighted else ''}-{i}")
        for shape_id, shape in SHAPES.items()
        for weighted in (False, True)
        for i, ignore in IGNORE.items()
        if not (ignore is not None and len(shape) == 1)
    ]
    return pytest.mark.parametrize(("shape", "weighted", "ignore_index"), params)(test)


@class_index_params
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_class_indices_matches_torch(
    rng, shape, weighted, ignore_index, label_smoothing
):
    x = rng.normal(size=shape) * 2
    target = class_indices(rng, shape, ignore_index)
    kwargs = class_options(rng, shape[0 if len(shape) == 1 else 1], weighted, ignore_index)
    cases = loss_cases("cross_entropy", x, target, label_smoothing=label_smoothing, **kwargs)
    assert_matches_torch(cases)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("weighted", [False, True], ids=["", "weight"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_probabilities_matches_torch(rng, shape, weighted, label_smoothing):
    class_dim = 0 if len(shape) == 1 else 1
    x = rng.normal(size=shape) * 2
    target = np.asarray(jax.nn.softmax(rng.normal(size=shape), axis=class_dim))
    kwargs = class_options(rng, shape[class_dim], weighted, None)
    cases = loss_cases("cross_entropy", x, target, label_smoothing=label_smoothing, **kwargs)
    assert_matches_torch(cases)


@class_index_params
def test_nll_loss_matches_torch(rng, shape, weighted, ignore_index):
    class_dim = 0 if len(shape) == 1 else 1
    log_p = np.asarray(jax.nn.log_softmax(rng.normal(size=shape), axis=class_dim))
    target = class_indices(rng, shape, ignore_index)
    kwargs = class_options(rng, shape[class_dim], weighted, ignore_index)
    assert_matches_torch(loss_cases("nll_loss", log_p, target, **kwargs))


BCE_WEIGHTS = ["", "weight(N,C)", "weight(C,)"]


def bce_weight(rng, option, shape):
    sizes = {"weight(N,C)": shape, "weight(C,)": shape[-1:]}
    return {"weight": rng.uniform(0.2, 2.0, size=sizes[option])} if option else {}


@pytest.mark.parametrize("weight", BCE_WEIGHTS)
def test_binary_cross_entropy_matches_torch(rng, weight):
    x = rng.uniform(0.05, 0.95, size=(6, 5))
    target = rng.uniform(size=(6, 5))
    target[0, :3] = [0.0, 1.0, 1.0]
    kwargs = bce_weight(rng, weight, x.shape)
    assert_matches_torch(loss_cases("binary_cross_entropy", x, target, **kwargs))


def test_binary_cross_entropy_at_the_ends_matches_torch():
    """Logs clamped to -100, gradient (x - t) / max(x (1 - x), 1e-12): all finite."""
    x = np.array([0.0, 1.0, 1e-13, 1 - 1e-13, 1e-50, 0.5])
    target = np.array([0.3, 0.3, 1.0, 0.0, 0.7, 0.5])
    assert_matches_torch(loss_cases("binary_cross_entropy", x, target), jit=True)


def test_binary_cross_entropy_outside_zero_one_is_nan_where_torch_raises():
    # Checking values would need concrete inputs; under jax.grad the input is traced.
    x, target = np.array([1.5, 0.5]), np.array([1.0, 1.0])
    loss = jax.jit(functools.partial(F.binary_cross_entropy, reduction="none"))(x, target)
    assert np.isnan(loss[0]) and np.isfinite(loss[1])
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        TF.binary_cross_entropy(torch.tensor(x), torch.tensor(target))


def test_binary_cross_entropy_target_gradient_matches_torch(rng):
    x = rng.uniform(0.05, 0.95, size=(6, 5))
    case = (
        lambda t: F.binary_cross_entropy(x, t),
        lambda t: TF.binary_cross_entropy(torch.tensor(x), t),
        rng.uniform(size=(6, 5)),
    )
    assert_matches_torch({"gradient wrt target": case})


@pytest.mark.parametrize("weight", BCE_WEIGHTS)
@pytest.mark.parametrize("pos_weight", [False, True], ids=["", "pos_weight"])
def test_binary_cross_entropy_with_logits_matches_torch(rng, weight, pos_weight):
    x = rng.normal(size=(6, 5)) * 3
    target = rng.uniform(size=(6, 5))
    kwargs = bce_weight(rng, weight, x.shape)
    if pos_weight:
        kwargs["pos_weight"] = rng.uniform(0.5, 3.0, size=5)
    assert_matches_torch(loss_cases("binary_cross_entropy_with_logits", x, target, **kwargs))


def test_binary_cross_entropy_with_logits_is_stable_for_huge_logits():
    x = np.array([-800.0, -50.0, 50.0, 800.0])
    target = np.array([1.0, 0.0, 0.0, 1.0])
    cases = loss_cases("binary_cross_entropy_with_logits", x, target)
    np.testing.assert_allclose(cases["none"][0](x), [800.0, 0.0, 50.0, 0.0], atol=1e-20)
    assert_matches_torch(cases, jit=True)


def representative_losses():
    """One option set per loss, for the float32, finite-difference and jit checks:
    ``case: (name, input, target, kwargs)``, float64, from a seeded generator."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 5))
    labels = rng.integers(0, 5, size=6)
    labels[0] = -100
    probs = rng.uniform(0.1, 0.9, size=(6, 5))
    weight = rng.uniform(0.5, 2.0, size=5)
    kdim = (rng.normal(size=(3, 5, 2, 4)), rng.integers(0, 5, (3, 2, 4)))
    return {
        "mse": ("mse_loss", x, rng.normal(size=(6, 5)), {}),
        "l1": ("l1_loss", x, rng.normal(size=(6, 5)), {}),
        "mse_weight": ("mse_loss", x, rng.normal(size=(6, 5)), {"weight": probs}),
        "l1_weight": ("l1_loss", x, rng.normal(size=(6, 5)), {"weight": probs}),
        "ce": ("cross_entropy", x, labels, {"weight": weight, "label_smoothing": 0.1}),
        "ce_kdim": ("cross_entropy", *kdim, {}),
        "ce_probs": ("cross_entropy", x, probs / probs.sum(1, keepdims=True), {}),
        "nll": ("nll_loss", np.log(probs), labels, {"weight": weight}),
        "bce": ("binary_cross_entropy", probs, rng.uniform(size=(6, 5)), {"weight": weight}),
        "bce_logits": (
            "binary_cross_entropy_with_logits",
            x,
            rng.uniform(size=(6, 5)),
            {"pos_weight": weight},
        ),
    }


LOSSES = representative_losses()


def as_float32(a):
    return a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a


def test_losses_float32_match_torch():
    """The user's path: float32 inputs, weights and targets, every reduction."""
    cases = {}
    for case, (name, x, target, kwargs) in LOSSES.items():
        kwargs32 = {k: as_float32(v) for k, v in kwargs.items()}
        for reduction, pair in loss_cases(
            name, as_float32(x), as_float32(target), **kwargs32
        ).items():
            cases[f"{case}-{reduction}"] = pair
    assert_matches_torch(cases, F32, jit=True)


@pytest.mark.parametrize("case", LOSSES)
def test_loss_finite_differences(case):
    name, x, target, kwargs = LOSSES[case]
    jax_kw, _ = split_kwargs(kwargs)
    fns = {case: lambda x: getattr(F, name)(x, target, reduction="none", **jax_kw)}
    assert_grads_match_finite_differences(fns, x)


def test_losses_jit_equal_eager():
    def all_losses(inputs):
        return {
            case: getattr(F, name)(*inputs[case], **split_kwargs(kwargs)[0])
            for case, (name, _, _, kwargs) in LOSSES.items()
        }

    inputs = {case: (x, target) for case, (_, x, target, _) in LOSSES.items()}
    jitted, eager = jax.jit(all_losses)(inputs), all_losses(inputs)  # traced / concrete targets
    for case in LOSSES:
        np.testing.assert_allclose(jitted[case], eager[case], rtol=1e-12, err_msg=case)


# ------------------------------------------------------------ labels out of range


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("bad", [3, -1])
def test_out_of_range_concrete_labels_raise(name, bad):
    with pytest.raises(ValueError, match=rf"{name}: target class indices must be in \[0, 3\)"):
        getattr(F, name)(jnp.zeros((3, 3)), jnp.array([0, bad, -100]))
    with pytest.raises(IndexError):  # torch refuses them as well
        getattr(TF, name)(torch.zeros(3, 3), torch.tensor([0, bad, -100]))


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_out_of_range_traced_labels_give_nan_not_a_clamped_class(name):
    fn = getattr(F, name)
    x = np.random.default_rng(3).normal(size=(5, 3))
    labels = np.array([0, 3, -1, -100, 2])
    per_sample = jax.jit(functools.partial(fn, reduction="none"))(x, labels)
    assert np.isnan(per_sample[1]) and np.isnan(per_sample[2])  # out of range: NaN
    assert per_sample[3] == 0.0  # ignore_index: ignored, not NaN
    expected = getattr(TF, name)(torch.tensor(x[::4]), torch.tensor(labels[::4]), reduction="none")
    np.testing.assert_allclose(per_sample[::4], expected, **F64)
    assert np.isnan(jax.jit(fn)(x, labels))
    # A plain gather clamps the index silently: the NaN above is jaxnet's doing.
    assert not np.isnan(jax.jit(lambda x, y: x[jnp.arange(5), y])(x, labels)).any()


# ------------------------------------------------------------ integer inputs

INTEGER_INPUTS = {
    "uint8": (np.array([200, 3, 255, 0], np.uint8), np.array([30, 250, 0, 255], np.uint8)),
    "int32-extremes": (
        np.array([2**31 - 1, -(2**31), 0, 5], np.int32),
        np.array([-1, 1, 2**31 - 1, 5], np.int32),
    ),
}


def integer_call(name, x, target):
    """``name`` on integer input: class-index targets for the classification losses."""
    if name in ("cross_entropy", "nll_loss"):
        return getattr(F, name)(x.reshape(2, 2), np.array([0, 1]))
    return getattr(F, name)(x, target)


@pytest.mark.parametrize("case", INTEGER_INPUTS)
@pytest.mark.parametrize(
    "name",
    [
        "mse_loss",
        "l1_loss",
        "cross_entropy",
        "nll_loss",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
    ],
)
def test_every_loss_refuses_integer_input_as_torch_does(name, case):
    """One rule: a loss's input is floating point, so no loss computes in integers and
    wraps around (uint8 differences modulo 256, int32 |2**31 - 1 - (-1)| as -2**31)."""
    x, target = INTEGER_INPUTS[case]
    with pytest.raises(TypeError, match=rf"{name}: expected a floating-point input, got dtype"):
        integer_call(name, x, target)
    torch_target = torch.tensor([0, 1]) if name in ("cross_entropy", "nll_loss") else None
    torch_x = torch.tensor(x).reshape(2, 2) if torch_target is not None else torch.tensor(x)
    with pytest.raises((RuntimeError, NotImplementedError)):
        getattr(TF, name)(torch_x, torch.tensor(target) if torch_target is None else torch_target)


@pytest.mark.parametrize("case", INTEGER_INPUTS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_integer_targets_are_computed_in_the_input_float_dtype(name, case):
    x, target = INTEGER_INPUTS[case]
    x = x.astype(np.float64)
    expected = getattr(TF, name)(torch.tensor(x), torch.tensor(target), reduction="none")
    ours = getattr(F, name)(x, target, reduction="none")
    assert ours.dtype == np.float64
    np.testing.assert_array_equal(ours, expected.numpy())
    if case == "int32-extremes" and name == "l1_loss":
        assert ours[0] == 2.0**31  # not -2147483648


@pytest.mark.parametrize("name", ["binary_cross_entropy", "binary_cross_entropy_with_logits"])
def test_integer_and_bool_labels_equal_float_labels(name):
    x = np.array([0.2, 0.7, 0.9, 0.4])
    labels = np.array([0, 1, 1, 0])
    expected = getattr(F, name)(x, labels.astype(np.float64))
    for target in (labels.astype(np.uint8), labels.astype(np.int32), labels.astype(bool)):
        np.testing.assert_array_equal(getattr(F, name)(x, target), expected)
        grad = jax.grad(getattr(F, name))(x, target)  # integer targets take no gradient
        np.testing.assert_array_equal(grad, jax.grad(getattr(F, name))(x, labels * 1.0))
    np.testing.assert_allclose(
        expected, getattr(TF, name)(torch.tensor(x), torch.tensor(labels * 1.0)), **F64
    )


# --------------------------------------------------------------------- bad input

ALL_LOSSES = [
    "mse_loss",
    "l1_loss",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
]
ELEMENTWISE_LOSSES = [name for name in ALL_LOSSES if name not in ("cross_entropy", "nll_loss")]


@pytest.mark.parametrize("name", ELEMENTWISE_LOSSES)
def test_shape_mismatch_raises_instead_of_broadcasting(name):
    with pytest.raises(ValueError, match=rf"{name}: .*input \(4, 1\) and target \(4,\)"):
        getattr(F, name)(np.full((4, 1), 0.5), np.full((4,), 0.5))


def test_torch_only_warns_on_shape_mismatch():
    with pytest.warns(UserWarning, match="different to the input size"):
        TF.mse_loss(torch.zeros(4, 1), torch.zeros(4))


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_unknown_reduction_raises(name):
    x, target = np.full((2, 3), 0.5), np.full((2, 3), 0.5)
    if name in ("cross_entropy", "nll_loss"):
        target = np.array([0, 1])
    with pytest.raises(ValueError, match=rf"{name}: reduction must be one of .*'none'.*'avg'"):
        getattr(F, name)(x, target, reduction="avg")


@pytest.mark.parametrize(
    ("name", "input_shape", "target", "error", "match"),
    [
        ("cross_entropy", (6, 5), np.zeros((6, 1), int), ValueError, r"\(6,\).*got shape \(6, 1\)"),
        ("cross_entropy", (6, 5, 2), np.zeros(6, int), ValueError, r"\(6, 2\).*got shape \(6,\)"),
        ("cross_entropy", (6, 5), np.zeros(6), TypeError, "integer dtype, got float64"),
        ("cross_entropy", (6, 5), np.zeros((6, 4)), ValueError, r"probabilities of shape \(6, 5"),
        ("cross_entropy", (6, 5), np.zeros((6, 5), int), ValueError, r"got shape \(6, 5\)"),
        ("cross_entropy", (), np.zeros((), int), ValueError, r"expected input \(C,\)"),
        ("nll_loss", (6, 5), np.zeros(6), TypeError, "integer dtype, got float64"),
        ("nll_loss", (6, 5), np.zeros((6, 5)), ValueError, r"shape \(6,\), got shape \(6, 5\)"),
    ],
    ids=[
        "ce-rank",
        "ce-kdim-rank",
        "ce-float-indices",
        "ce-prob-shape",
        "ce-int-probs",
        "ce-0d-input",
        "nll-float",
        "nll-probs",
    ],
)
def test_bad_target_raises(name, input_shape, target, error, match):
    with pytest.raises(error, match=rf"{name}: .*{match}"):
        getattr(F, name)(np.zeros(input_shape), target)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: F.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weight=np.ones(4)),
            ValueError,
            r"cross_entropy: weight must have shape \(3,\).*got \(4,\)",
        ),
        (
            lambda: F.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=1.5),
            ValueError,
            r"cross_entropy: label_smoothing must be in \[0, 1\], got 1.5",
        ),
        (
            lambda: F.cross_entropy(np.zeros((2, 3)), np.zeros((2, 3)), ignore_index=0),
            ValueError,
            "cross_entropy: ignore_index applies to class indices only",
        ),
        (
            lambda: F.cross_entropy(np.zeros((2, 3), int), np.array([0, 1])),
            TypeError,
            "cross_entropy: expected a floating-point input, got dtype int",
        ),
        (
            lambda: F.binary_cross_entropy(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(2)),
            ValueError,
            r"binary_cross_entropy: weight must broadcast to the input's shape \(2, 3\)",
        ),
        (
            lambda: F.binary_cross_entropy_with_logits(
                np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=np.ones((3, 3))
            ),
            ValueError,
            r"binary_cross_entropy_with_logits: pos_weight must broadcast.*got shape \(3, 3\)",
        ),
    ],
    ids=["ce-weight", "ce-smoothing", "ce-probs-ignore", "ce-int-input", "bce-weight", "pos-w"],
)
def test_bad_option_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()
