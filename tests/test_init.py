"""jaxnet.nn.init against torch.nn.init: distributions, formulas, errors, and seed 003's re-init.

Distributions are compared with a two-sample Kolmogorov–Smirnov test between jaxnet and
torch samples on the same shapes. Seeds are fixed, so every p-value is deterministic;
``P_MIN`` is generous because the check is "same distribution", and
``test_ks_rejects_a_wrong_distribution`` shows the same test does reject a near miss.
"""

import math
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util
from scipy.stats import ks_2samp, truncnorm

from jaxnet.nn import Linear, ReLU, Sequential, init
from jaxnet.nn.module import Module

P_MIN = 1e-3  # KS p-value above which two samples count as the same distribution
WEIGHT = (256, 784)  # the MNIST MLP's first weight, torch layout [out, in]
CONV = (64, 32, 3, 3)  # [out, in, kh, kw]: fans include the receptive field
SMALL = (6, 4)
# Few distinct shapes on purpose: each (sampler, shape, dtype) costs one XLA compilation.


def jaxnet_sample(name, shape, seed=0, dtype=jnp.float32, **kwargs):
    return np.asarray(getattr(init, name)(jax.random.key(seed), shape, dtype, **kwargs))


def torch_sample(name, shape, seed=0, **kwargs):
    torch.manual_seed(seed)
    return getattr(torch.nn.init, name + "_")(torch.empty(shape), **kwargs).numpy()


# --- calculate_gain and fans -----------------------------------------------------------

GAIN_CASES = [
    *[(name, None) for name in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d")],
    *[(name, None) for name in ("conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh")],
    ("relu", None),
    ("selu", None),
    ("leaky_relu", None),
    ("leaky_relu", 0.2),
    ("leaky_relu", 3),
    ("leaky_relu", math.sqrt(5)),
]


@pytest.mark.parametrize(("nonlinearity", "param"), GAIN_CASES)
def test_calculate_gain_equals_torch(nonlinearity, param):
    expected = torch.nn.init.calculate_gain(nonlinearity, param)
    assert math.isclose(init.calculate_gain(nonlinearity, param), expected, rel_tol=1e-12)


def test_calculate_gain_rejects_unknown_names_and_bad_slopes():
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain("swish")
    with pytest.raises(ValueError, match=r"calculate_gain: unsupported nonlinearity 'swish'.*selu"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match=r"calculate_gain: .*leaky_relu must be a number.*True"):
        init.calculate_gain("leaky_relu", True)
    with pytest.raises(ValueError, match=r"calculate_gain: .*must be a number.*'0.1'"):
        init.calculate_gain("leaky_relu", "0.1")


@pytest.mark.parametrize("shape", [(3, 5), WEIGHT, (8, 4, 5), CONV, (2, 3, 4, 5, 6)])
def test_fan_in_and_fan_out_equals_torch(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.fan_in_and_fan_out(shape) == expected


FAN_BASED = ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]


@pytest.mark.parametrize("name", ["fan_in_and_fan_out", *FAN_BASED])
def test_fewer_than_two_dims_raise_like_torch(name):
    torch_fn = getattr(torch.nn.init, name + "_", torch.nn.init._calculate_fan_in_and_fan_out)
    with pytest.raises(ValueError):
        torch_fn(torch.empty(5))
    args = ((5,),) if name == "fan_in_and_fan_out" else (jax.random.key(0), (5,))
    with pytest.raises(ValueError, match=rf"{name}: fan in and fan out need .*got \(5,\)"):
        getattr(init, name)(*args)


# --- distributions: KS against torch ---------------------------------------------------

KS_CASES = [
    ("uniform", WEIGHT, {"a": -0.3, "b": 0.7}),
    ("normal", WEIGHT, {"mean": 0.5, "std": 2.0}),
    ("xavier_uniform", WEIGHT, {}),
    ("xavier_uniform", CONV, {"gain": torch.nn.init.calculate_gain("tanh")}),
    ("xavier_normal", WEIGHT, {}),
    ("xavier_normal", CONV, {"gain": torch.nn.init.calculate_gain("relu")}),
    ("kaiming_uniform", WEIGHT, {"a": math.sqrt(5)}),  # torch's default Linear init
    ("kaiming_uniform", WEIGHT, {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_uniform", CONV, {"nonlinearity": "tanh"}),
    ("kaiming_uniform", CONV, {"mode": "fan_out", "nonlinearity": "sigmoid"}),
    ("kaiming_normal", WEIGHT, {"nonlinearity": "relu"}),
    ("kaiming_normal", WEIGHT, {"a": 0.2, "mode": "fan_out"}),
    ("kaiming_normal", CONV, {"nonlinearity": "selu"}),
    ("trunc_normal", WEIGHT, {}),
    ("trunc_normal", WEIGHT, {"mean": 0.0, "std": 1.0, "a": -0.5, "b": 3.0}),
    # Little mass inside [a, b]: torch switches to its rejection-from-uniform sampler.
    ("trunc_normal", WEIGHT, {"mean": 1.0, "std": 0.5, "a": 1.5, "b": 2.5}),
    ("orthogonal", WEIGHT[::-1], {"gain": 2.0}),  # rows > cols; CONV is rows < cols
    ("orthogonal", CONV, {"gain": torch.nn.init.calculate_gain("relu")}),
]


@pytest.mark.parametrize(("name", "shape", "kwargs"), KS_CASES)
def test_distribution_matches_torch(name, shape, kwargs):
    ours = jaxnet_sample(name, shape, **kwargs)
    theirs = torch_sample(name, shape, **kwargs)
    assert ours.shape == theirs.shape == shape
    assert ks_2samp(ours.ravel(), theirs.ravel()).pvalue > P_MIN


def test_ks_rejects_a_wrong_distribution():
    """The KS check can fail: a uniform 5% too wide is told apart from torch's Linear init."""
    theirs = torch_sample("kaiming_uniform", WEIGHT, a=math.sqrt(5)).ravel()
    bound = 1.05 / math.sqrt(WEIGHT[1])
    wrong = jaxnet_sample("uniform", WEIGHT, a=-bound, b=bound).ravel()
    assert ks_2samp(wrong, theirs).pvalue < 1e-6


def test_jax_default_initialisers_differ_from_torch():
    """Why jaxnet computes its own fans and samples plain normals (pinned differences)."""
    key = jax.random.key(0)
    # glorot_normal truncates: same variance, different distribution than xavier_normal_.
    glorot = np.asarray(jax.nn.initializers.glorot_normal()(key, WEIGHT, jnp.float32))
    xavier = torch_sample("xavier_normal", WEIGHT).ravel()
    assert ks_2samp(glorot.ravel(), xavier).pvalue < 1e-6
    assert ks_2samp(jaxnet_sample("xavier_normal", WEIGHT).ravel(), xavier).pvalue > P_MIN
    # he_uniform reads [in, out]: on a torch [out, in] weight its fan_in is 256, not 784.
    he = np.asarray(jax.nn.initializers.he_uniform()(key, WEIGHT, jnp.float32))
    torch_bound = np.float32(math.sqrt(2.0) * math.sqrt(3.0 / 784))
    assert np.abs(he).max() > 1.5 * torch_bound
    assert np.abs(jaxnet_sample("kaiming_uniform", WEIGHT, nonlinearity="relu")).max() <= (
        torch_bound
    )
    # truncated_normal(stddev) cuts at ±2 stddevs; trunc_normal at the absolute values ±2.
    jax_trunc = np.asarray(jax.nn.initializers.truncated_normal(2.0)(key, WEIGHT, jnp.float32))
    assert np.abs(jax_trunc).max() > 3.5
    assert np.abs(jaxnet_sample("trunc_normal", WEIGHT, std=2.0)).max() <= 2.0
    assert np.abs(torch_sample("trunc_normal", WEIGHT, std=2.0)).max() <= 2.0


@pytest.mark.parametrize(
    ("name", "kwargs", "mode", "distribution", "scale"),
    [
        ("xavier_uniform", {"gain": 0.5}, "fan_avg", "uniform", 0.25),
        ("xavier_normal", {}, "fan_avg", "normal", 1.0),
        ("kaiming_uniform", {"a": math.sqrt(5)}, "fan_in", "uniform", 1 / 3),
        ("kaiming_normal", {"mode": "fan_out", "nonlinearity": "relu"}, "fan_out", "normal", 2.0),
    ],
)
def test_equals_jax_variance_scaling_on_torch_axes(name, kwargs, mode, distribution, scale):
    """Same key, same numbers as ``variance_scaling`` told torch's axes (in=1, out=0)."""
    key = jax.random.key(3)
    vs = jax.nn.initializers.variance_scaling(scale, mode, distribution, in_axis=1, out_axis=0)
    expected = np.asarray(vs(key, SMALL, jnp.float64))
    ours = np.asarray(getattr(init, name)(key, SMALL, jnp.float64, **kwargs))
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)


# --- formulas: bounds and standard deviations from torch's own helpers -------------------


def torch_std(shape, kind, gain=1.0, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """The std torch's initialisers aim at, from torch's gain and fan helpers."""
    t = torch.empty(shape)
    if kind == "xavier":
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(t)
        return gain * math.sqrt(2.0 / (fan_in + fan_out))
    fan = torch.nn.init._calculate_correct_fan(t, mode)
    return torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)


UNIFORM_FORMULAS = [
    ("xavier_uniform", WEIGHT, {"gain": 2.0}, torch_std(WEIGHT, "xavier", gain=2.0)),
    ("xavier_uniform", CONV, {}, torch_std(CONV, "xavier")),
    ("kaiming_uniform", WEIGHT, {"a": math.sqrt(5)}, 1 / math.sqrt(3 * 784)),
    (
        "kaiming_uniform",
        CONV,
        {"mode": "fan_out", "nonlinearity": "relu"},
        torch_std(CONV, "kaiming", mode="fan_out", nonlinearity="relu"),
    ),
    ("kaiming_uniform", CONV, {"a": 0.3}, torch_std(CONV, "kaiming", a=0.3)),
]


@pytest.mark.parametrize(("name", "shape", "kwargs", "std"), UNIFORM_FORMULAS)
def test_uniform_bound_is_torchs(name, shape, kwargs, std):
    bound = np.float32(math.sqrt(3.0) * std)  # torch: bound = sqrt(3) * std, in float32
    w = jaxnet_sample(name, shape, **kwargs)
    assert -bound <= w.min() and w.max() <= bound
    assert np.abs(w).max() > (1 - 1e-3) * bound  # reaches the bound, not a narrower one


NORMAL_FORMULAS = [
    ("xavier_normal", WEIGHT, {"gain": 5 / 3}, "xavier"),
    ("xavier_normal", CONV, {}, "xavier"),
    ("kaiming_normal", WEIGHT, {"a": math.sqrt(5)}, "kaiming"),
    ("kaiming_normal", CONV, {"mode": "fan_out", "nonlinearity": "relu"}, "kaiming"),
    ("kaiming_normal", CONV, {"nonlinearity": "selu"}, "kaiming"),
]


@pytest.mark.parametrize(("name", "shape", "kwargs", "kind"), NORMAL_FORMULAS)
def test_normal_std_is_torchs(name, shape, kwargs, kind):
    """Sample std within 1% of torch's std (>= 73k samples: ~4 standard errors)."""
    std = torch_std(shape, kind, **kwargs)
    w = jaxnet_sample(name, shape, **kwargs).astype(np.float64)
    assert abs(w.std() / std - 1) < 0.01
    assert abs(w.mean()) < 0.02 * std


def test_kaiming_mode_is_case_insensitive_like_torch():
    torch.nn.init.kaiming_uniform_(torch.empty(SMALL), mode="FAN_OUT")
    key = jax.random.key(0)
    np.testing.assert_array_equal(
        init.kaiming_uniform(key, SMALL, mode="FAN_OUT"),
        init.kaiming_uniform(key, SMALL, mode="fan_out"),
    )


# --- trunc_normal and orthogonal ----------------------------------------------------------


def test_trunc_normal_uses_absolute_bounds():
    a, b = -0.5, 3.0
    w = jaxnet_sample("trunc_normal", WEIGHT, mean=0.0, std=1.0, a=a, b=b)
    t = torch_sample("trunc_normal", WEIGHT, mean=0.0, std=1.0, a=a, b=b)
    for sample in (w, t):
        assert a <= sample.min() < a + 1e-3
        assert b - 0.05 < sample.max() <= b
        # The mean of N(0, 1) cut to [-0.5, 3] (~0.504); 0.01 is ~7 standard errors.
        assert abs(sample.mean() - truncnorm(a, b).mean()) < 0.01


def test_trunc_normal_warns_like_torch_when_mean_is_far_outside():
    with pytest.warns(UserWarning, match="mean is more than 2 std"):
        torch.nn.init.trunc_normal_(torch.empty(4), mean=10.0)
    with pytest.warns(UserWarning, match=r"trunc_normal: mean is more than 2 std from \[a, b\]"):
        init.trunc_normal(jax.random.key(0), (4,), mean=10.0)


@pytest.mark.parametrize("gain", [1.0, 0.5])
@pytest.mark.parametrize("shape", [SMALL, SMALL[::-1], (4, 2, 3)])  # (4, 2, 3) is 4 x 6
def test_orthogonal_is_gain_times_semi_orthogonal(shape, gain):
    w = np.asarray(init.orthogonal(jax.random.key(1), shape, jnp.float64, gain=gain))
    assert w.shape == shape
    flat = w.reshape(shape[0], -1)  # torch's [rows, cols] view
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), rtol=0, atol=1e-12)


def test_orthogonal_sign_fix_matches_torch():
    """W[0, 0] over many draws: the sign fix makes it symmetric, as torch's is.

    Without the fix, Householder QR gives Q[0, 0] <= 0 always; the KS check sees that.
    """
    n, shape = 3000, (3, 5)
    keys = jax.random.split(jax.random.key(0), n)
    ours = np.asarray(jax.vmap(lambda k: init.orthogonal(k, shape, jnp.float64))(keys))[:, 0, 0]
    torch.manual_seed(0)
    theirs = np.array([torch.nn.init.orthogonal_(torch.empty(shape))[0, 0] for _ in range(n)])
    assert ks_2samp(ours, theirs).pvalue > P_MIN
    z = np.random.default_rng(0).standard_normal((n, *shape[::-1]))
    no_sign_fix = np.linalg.qr(z)[0][:, 0, 0]
    assert ks_2samp(no_sign_fix, theirs).pvalue < 1e-6


# --- constants and eye -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "torch_fn"),
    [
        (partial(init.constant, val=0.25), partial(torch.nn.init.constant_, val=0.25)),
        (init.ones, torch.nn.init.ones_),
        (init.zeros, torch.nn.init.zeros_),
        (init.eye, torch.nn.init.eye_),
    ],
    ids=["constant", "ones", "zeros", "eye"],
)
@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])
def test_constants_and_eye_equal_torch(name, torch_fn, shape):
    expected = torch_fn(torch.empty(shape, dtype=torch.float64)).numpy()
    np.testing.assert_array_equal(name(None, shape, jnp.float64), expected)


def test_eye_is_two_d_only_like_torch():
    with pytest.raises(ValueError):
        torch.nn.init.eye_(torch.empty(2, 3, 4))
    with pytest.raises(ValueError, match=r"eye: expected a 2-D shape, got \(2, 3, 4\)"):
        init.eye(None, (2, 3, 4))


# --- errors, dtypes, purity, empty shapes -------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda k: init.kaiming_uniform(k, WEIGHT, mode="fan_avg"),
            r"kaiming_uniform: mode must be one of \['fan_in', 'fan_out'\], got 'fan_avg'",
        ),
        (
            lambda k: init.kaiming_normal(k, WEIGHT, nonlinearity="gelu"),
            r"kaiming_normal: unsupported nonlinearity 'gelu'; expected one of \['linear'.*",
        ),
        (
            lambda k: init.orthogonal(k, (5,)),
            r"orthogonal: expected a shape with at least 2 dims, got \(5,\)",
        ),
        (
            lambda k: init.uniform(k, (3,), a=1.0, b=0.0),
            r"uniform: expected a <= b, got a=1.0, b=0.0",
        ),
        (
            lambda k: init.normal(k, (3,), std=-1.0),
            r"normal: expected std >= 0, got std=-1.0",
        ),
        (
            lambda k: init.trunc_normal(k, (3,), std=0.0),
            r"trunc_normal: expected std > 0, got std=0.0",
        ),
        (
            lambda k: init.trunc_normal(k, (3,), a=1.0, b=1.0),
            r"trunc_normal: expected bounds a < b, got a=1.0, b=1.0",
        ),
    ],
    ids=[
        "mode",
        "nonlinearity",
        "orthogonal-1d",
        "uniform-bounds",
        "normal-std",
        "trunc-std",
        "trunc-bounds",
    ],
)
def test_bad_hyperparameters_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call(jax.random.key(0))


RANDOM_INITS = ["uniform", "normal", "trunc_normal", "orthogonal", *FAN_BASED]
ALL_INITS = [*RANDOM_INITS, partial(init.constant, val=3.0), "ones", "zeros", "eye"]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("fn", ALL_INITS, ids=lambda fn: fn if isinstance(fn, str) else "constant")
def test_dtype_is_honoured(fn, dtype):
    fn = getattr(init, fn) if isinstance(fn, str) else fn
    out = fn(jax.random.key(0), SMALL, dtype)
    assert out.dtype == dtype and out.shape == SMALL


@pytest.mark.parametrize("name", RANDOM_INITS)
def test_pure_same_key_same_array_other_key_other_array(name):
    first, again = jaxnet_sample(name, SMALL, seed=7), jaxnet_sample(name, SMALL, seed=7)
    other = jaxnet_sample(name, SMALL, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


ZERO_ELEMENT_WARNING = "Initializing zero-element tensors is a no-op"


@pytest.mark.parametrize("name", ["orthogonal", *FAN_BASED])
@pytest.mark.parametrize("shape", [(8, 0), (0, 2, 3)])
def test_zero_element_shapes_give_empty_arrays_and_warn_where_torch_does(name, shape):
    """torch leaves zero-element tensors alone; Linear(0, n) must still initialise.

    torch's kaiming initialisers warn that this is a no-op; jaxnet's do the same, with
    torch's words, and the others stay silent, as torch's do.
    """
    torch_fn = getattr(torch.nn.init, name + "_")
    with warnings.catch_warnings(record=True) as torch_warnings:
        warnings.simplefilter("always")
        torch_fn(torch.empty(shape))
        assert jaxnet_sample(name, shape).shape == shape
    messages = [str(w.message) for w in torch_warnings]
    if name.startswith("kaiming"):
        assert messages == [
            ZERO_ELEMENT_WARNING,
            f"{name}: {ZERO_ELEMENT_WARNING} (shape {shape})",
        ]
    else:
        assert messages == []


def test_zero_element_warning_points_at_the_caller():
    with pytest.warns(UserWarning, match=ZERO_ELEMENT_WARNING) as record:
        init.kaiming_uniform(jax.random.key(0), (4, 0))
    assert record[0].filename == __file__


# --- convolution weights: grouped fans, dirac ------------------------------------------

GROUPED_CONVS = {
    "conv1d-groups4": lambda: torch.nn.Conv1d(8, 12, 3, groups=4),
    "conv2d-groups8": lambda: torch.nn.Conv2d(32, 64, 3, groups=8),
    "conv2d-depthwise": lambda: torch.nn.Conv2d(16, 16, 5, groups=16),
    "conv3d-groups2": lambda: torch.nn.Conv3d(6, 4, (2, 3, 4), groups=2),
    "conv_transpose2d-groups2": lambda: torch.nn.ConvTranspose2d(8, 6, 3, groups=2),
}


@pytest.mark.parametrize("conv", GROUPED_CONVS)
def test_fans_of_grouped_convolution_weights_equal_torch(conv):
    """A grouped weight is [out, in / groups, *kernel]: fan_in counts in / groups."""
    weight = GROUPED_CONVS[conv]().weight
    expected = torch.nn.init._calculate_fan_in_and_fan_out(weight)
    assert init.fan_in_and_fan_out(tuple(weight.shape)) == expected


def test_default_init_of_a_grouped_conv_matches_torch():
    """torch's Conv2d init, kaiming_uniform(a=sqrt(5)) on [64, 32 / 8, 3, 3]: U(±1/6)."""
    weight = torch.nn.Conv2d(32, 64, 3, groups=8).weight.detach().numpy()
    ours = jaxnet_sample("kaiming_uniform", weight.shape, a=math.sqrt(5))
    assert (
        np.abs(ours).max() <= np.float32(1 / 6) < np.float32(1.01 / 6) < np.abs(ours).max() * 1.02
    )
    assert ks_2samp(ours.ravel(), weight.ravel()).pvalue > P_MIN


def dirac_cases():
    """Shapes [out, in / groups, *kernel] with 1 to 3 kernel dims and 1 to 3 groups, drawn
    as torch's own test_dirac_properties draws them, plus hand-picked corners."""
    rng = np.random.default_rng(0)
    cases = [((4, 4, 3), 1), ((6, 2, 3, 3), 3), ((4, 6, 2, 3), 1), ((3, 1, 1, 1), 3)]
    for dims in (3, 4, 5):
        for groups in (1, 2, 3):
            a, c, d, e = rng.integers(1, 6, size=4)
            b = rng.integers(1, 5 * groups + 1)
            cases.append(((int(a) * groups, int(b), int(c), int(d), int(e))[:dims], groups))
    return cases


@pytest.mark.parametrize(("shape", "groups"), dirac_cases())
def test_dirac_equals_torch(shape, groups):
    expected = torch.nn.init.dirac_(torch.empty(shape, dtype=torch.float64), groups).numpy()
    ours = init.dirac(None, shape, jnp.float64, groups=groups)
    assert ours.dtype == jnp.float64
    np.testing.assert_array_equal(ours, expected)
    assert ours.sum() == min(shape[0] // groups, shape[1]) * groups


@pytest.mark.parametrize(
    "conv", [torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d]
)
@pytest.mark.parametrize("groups", [1, 3])
def test_dirac_weight_passes_the_input_through_torchs_convolution(conv, groups):
    """Output channel g * out_g + d of a dirac-initialised conv is input channel
    g * in_g + d for d < min(out_g, in_g), and 0 beyond (torch's test_dirac_identity)."""
    dims = int(conv.__name__[-2])
    in_c, out_c = 2 * groups, 3 * groups  # in_g = 2, out_g = 3
    x = torch.randn(2, in_c, *(5,) * dims, dtype=torch.float64)
    weight = init.dirac(None, (out_c, in_c // groups, *(3,) * dims), jnp.float64, groups=groups)
    y = conv(x, torch.tensor(np.asarray(weight)), padding=1, groups=groups)
    for g in range(groups):
        for d in range(3):
            expected = x[:, 2 * g + d] if d < 2 else torch.zeros_like(x[:, 0])
            torch.testing.assert_close(y[:, 3 * g + d], expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: init.dirac(None, (4, 4)),
            ValueError,
            r"dirac: expected a 3-, 4- or 5-D .*\(4, 4\)",
        ),
        (
            lambda: init.dirac(None, (5, 2, 3), groups=2),
            ValueError,
            r"dirac: the out channels \(dim 0\) must be divisible by groups=2, got shape \(5, 2",
        ),
        (
            lambda: init.dirac(None, (4, 2, 3), groups=0),
            ValueError,
            "dirac: groups=0 must be a positive int",
        ),
        (
            lambda: init.dirac(None, (4, 2, 3), groups=2.0),
            TypeError,
            "dirac: groups=2.0 must be a positive int",
        ),
    ],
    ids=["2d", "groups-divide", "groups-0", "groups-float"],
)
def test_dirac_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_torch_refuses_the_same_dirac_shapes():
    with pytest.raises(ValueError, match="Only tensors with 3, 4, or 5 dimensions"):
        torch.nn.init.dirac_(torch.empty(4, 4))
    with pytest.raises(ValueError, match="dim 0 must be divisible by groups"):
        torch.nn.init.dirac_(torch.empty(5, 2, 3), groups=2)


# --- sparse ------------------------------------------------------------------------------


def test_sparse_has_torchs_structure_and_distribution():
    """As torch's test_sparse_default_std: ceil(sparsity * rows) zeros in every column,
    normal non-zeros with the given std; and zero rows spread over the columns as
    torch's do (per-row zero counts compared with KS)."""
    shape, sparsity, std = (300, 200), 0.15, 0.05
    ours = jaxnet_sample("sparse", shape, dtype=jnp.float64, sparsity=sparsity, std=std)
    theirs = torch_sample("sparse", shape, sparsity=sparsity, std=std)
    n_zeros = math.ceil(sparsity * shape[0])
    for sample in (ours, theirs):
        np.testing.assert_array_equal((sample == 0).sum(axis=0), np.full(shape[1], n_zeros))
    assert ks_2samp(ours[ours != 0], theirs[theirs != 0]).pvalue > P_MIN
    assert abs(ours[ours != 0].std() / std - 1) < 0.01
    assert ks_2samp((ours == 0).sum(axis=1), (theirs == 0).sum(axis=1)).pvalue > P_MIN
    # The same rows zeroed in every column would be told apart.
    same_rows = np.zeros(shape, bool)
    same_rows[:n_zeros] = True
    assert ks_2samp(same_rows.sum(axis=1), (theirs == 0).sum(axis=1)).pvalue < 1e-6


@pytest.mark.parametrize("sparsity", [0.0, 0.01, 0.5, 1.0])
def test_sparse_zero_count_equals_torchs(sparsity):
    shape = (7, 5)
    ours = jaxnet_sample("sparse", shape, sparsity=sparsity)
    theirs = torch_sample("sparse", shape, sparsity=sparsity)
    np.testing.assert_array_equal((ours == 0).sum(axis=0), (theirs == 0).sum(axis=0))


def test_sparse_is_pure_and_honours_dtype():
    key = jax.random.key(2)
    first = init.sparse(key, SMALL, jnp.bfloat16, sparsity=0.5)
    assert first.dtype == jnp.bfloat16 and first.shape == SMALL
    np.testing.assert_array_equal(first, init.sparse(key, SMALL, jnp.bfloat16, sparsity=0.5))
    other = init.sparse(jax.random.key(3), SMALL, jnp.bfloat16, sparsity=0.5)
    assert not np.array_equal(first, other)
    assert init.sparse(key, (0, 3), sparsity=0.5).shape == (0, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"shape": (3, 4, 5)}, ValueError, r"sparse: expected a 2-D shape, got \(3, 4, 5\)"),
        (
            {"sparsity": 1.5},
            ValueError,
            r"sparse: sparsity must be a fraction in \[0, 1\], got 1.5",
        ),
        ({"sparsity": math.nan}, ValueError, r"sparse: sparsity must be a fraction in \[0, 1\]"),
        ({"sparsity": "0.1"}, TypeError, "sparse: sparsity must be a float, got str"),
        ({"std": -1.0}, ValueError, "sparse: expected std >= 0, got std=-1.0"),
    ],
    ids=["3d", "sparsity-1.5", "sparsity-nan", "sparsity-str", "std"],
)
def test_sparse_bad_input_raises(kwargs, error, match):
    kwargs = {"shape": SMALL, "sparsity": 0.1} | kwargs
    with pytest.raises(error, match=match):
        init.sparse(jax.random.key(0), **kwargs)


def test_torch_refuses_a_3d_sparse_shape():
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions are supported"):
        torch.nn.init.sparse_(torch.empty(3, 4, 5), 0.1)


# --- float16 and bfloat16: drawn in float32, as torch draws them ---------------------------

HALF = {"float16": (jnp.float16, torch.float16), "bfloat16": (jnp.bfloat16, torch.bfloat16)}
HALF_CASES = [
    ("trunc_normal", {}),
    ("normal", {}),
    ("uniform", {}),
    ("kaiming_uniform", {"a": math.sqrt(5)}),
    ("xavier_normal", {}),
    ("sparse", {"sparsity": 0.1}),
]


@pytest.mark.parametrize(("name", "kwargs"), HALF_CASES, ids=[n for n, _ in HALF_CASES])
@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_draws_as_many_distinct_values_as_torch(name, kwargs, dtype):
    """10,000 draws: torch's trunc_normal_ gives about 6,000 distinct float16 values and
    1,600 bfloat16 ones; drawn directly in 16 bits, jax gives at most 1,024 and 128."""
    jax_dtype, torch_dtype = HALF[dtype]
    shape = (100, 100)
    ours = np.asarray(getattr(init, name)(jax.random.key(0), shape, jax_dtype, **kwargs))
    torch.manual_seed(0)
    theirs = getattr(torch.nn.init, name + "_")(torch.empty(shape, dtype=torch_dtype), **kwargs)
    theirs = theirs.float().numpy()
    ours = ours.astype(np.float32)
    n_ours, n_theirs = len(np.unique(ours)), len(np.unique(theirs))
    assert abs(n_ours / n_theirs - 1) < 0.06, (n_ours, n_theirs)
    assert ks_2samp(ours.ravel(), theirs.ravel()).pvalue > P_MIN


def test_half_precision_trunc_normal_draws_in_float32_unlike_jax():
    key, shape = jax.random.key(1), (10_000,)
    direct = jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.bfloat16)
    assert len(np.unique(np.asarray(direct, np.float32))) <= 128
    ours = init.trunc_normal(key, shape, jnp.bfloat16)
    assert ours.dtype == jnp.bfloat16
    assert len(np.unique(np.asarray(ours, np.float32))) > 1000
    assert float(jnp.min(ours)) >= -2.0 and float(jnp.max(ours)) <= 2.0


# --- reinit: seed 003, section 2.1 --------------------------------------------------------


def flat(params):
    return {k: np.array(v) for k, v in traverse_util.flatten_dict(params, sep=".").items()}


def seed_nets(sizes=(4, 8, 1), seed=0):
    """Seed 003's net in both libraries, torch's loaded with jaxnet's initial params."""
    n_in, n_hidden, n_out = sizes
    torch.manual_seed(seed)
    net = Sequential(Linear(n_in, n_hidden), ReLU(), Linear(n_hidden, n_out))
    params = net.init(jax.random.key(seed))
    tnet = torch.nn.Sequential(
        torch.nn.Linear(n_in, n_hidden), torch.nn.ReLU(), torch.nn.Linear(n_hidden, n_out)
    )
    tnet.load_state_dict({k: torch.from_numpy(v) for k, v in flat(params).items()})
    return net, params, tnet


def torch_params(tnet):
    return {k: v.detach().numpy() for k, v in tnet.state_dict().items()}


# The seed's torch functions, as written there (``type(m) is`` for ``type(m) ==``).
def t_init_normal(m):
    if type(m) is torch.nn.Linear:
        torch.nn.init.normal_(m.weight, mean=0, std=0.01)
        torch.nn.init.zeros_(m.bias)


def t_init_constant(m):
    if type(m) is torch.nn.Linear:
        torch.nn.init.constant_(m.weight, 1)
        torch.nn.init.zeros_(m.bias)


def t_init_xavier(m):
    if type(m) is torch.nn.Linear:
        torch.nn.init.xavier_uniform_(m.weight)


def t_init_42(m):
    if type(m) is torch.nn.Linear:
        torch.nn.init.constant_(m.weight, 42)


def t_my_init(m):
    if type(m) is torch.nn.Linear:
        print("Init", *next((name, tuple(param.shape)) for name, param in m.named_parameters()))
        torch.nn.init.uniform_(m.weight, -10, 10)
        m.weight.data *= m.weight.data.abs() >= 5


# Their jaxnet counterparts: plain functions (key, layer, params) -> new params.
def init_normal(key, layer, p):
    w, b = p["weight"], p["bias"]
    return {
        "weight": init.normal(key, w.shape, w.dtype, 0, 0.01),
        "bias": init.zeros(key, b.shape, b.dtype),
    }


def init_constant(key, layer, p):
    w, b = p["weight"], p["bias"]
    return {
        "weight": init.constant(key, w.shape, w.dtype, val=1),
        "bias": init.zeros(key, b.shape, b.dtype),
    }


def init_xavier(key, layer, p):
    return {**p, "weight": init.xavier_uniform(key, p["weight"].shape, p["weight"].dtype)}


def init_42(key, layer, p):
    return {**p, "weight": init.constant(key, p["weight"].shape, p["weight"].dtype, val=42)}


def my_init(key, layer, p):
    print("Init", *next((name, value.shape) for name, value in p.items()))
    w = init.uniform(key, p["weight"].shape, p["weight"].dtype, -10, 10)
    return {**p, "weight": w * (jnp.abs(w) >= 5)}


def reinit_linear(params, net, fn, seed=1, **kwargs):
    return init.reinit(params, net, fn, jax.random.key(seed), kind=Linear, **kwargs)


def test_reinit_init_constant_equals_torch_exactly():
    net, params, tnet = seed_nets()
    tnet.apply(t_init_constant)
    new = reinit_linear(params, net, init_constant)
    expected = torch_params(tnet)
    assert flat(new).keys() == expected.keys()
    for name, value in flat(new).items():
        np.testing.assert_array_equal(value, expected[name])
    np.testing.assert_array_equal(new["0"]["weight"], np.ones((8, 4)))


def test_reinit_init_normal_touches_only_linear_weights_and_biases():
    net, params, tnet = seed_nets()
    tnet.apply(t_init_normal)
    new, expected = flat(reinit_linear(params, net, init_normal)), torch_params(tnet)
    assert new.keys() == expected.keys() == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for name in ("0.bias", "2.bias"):
        np.testing.assert_array_equal(new[name], expected[name])  # zeros in both
    for name in ("0.weight", "2.weight"):
        assert new[name].dtype == np.float32
        assert not np.array_equal(new[name], flat(params)[name])
        assert np.abs(new[name]).max() < 0.05 and np.abs(expected[name]).max() < 0.05  # 5 std


def test_reinit_xavier_on_0_and_42_on_2_leave_the_rest_alone():
    net, params, tnet = seed_nets()
    tnet[0].apply(t_init_xavier)
    tnet[2].apply(t_init_42)
    new = reinit_linear(params, net, init_xavier, path="0")
    new = flat(reinit_linear(new, net, init_42, seed=2, path="2"))
    before, expected = flat(params), torch_params(tnet)
    for name in ("0.bias", "2.weight", "2.bias"):  # exact: the untouched ones and the 42s
        np.testing.assert_array_equal(new[name], expected[name])
    np.testing.assert_array_equal(new["0.bias"], before["0.bias"])
    np.testing.assert_array_equal(new["2.bias"], before["2.bias"])
    np.testing.assert_array_equal(new["2.weight"], np.full((1, 8), 42.0))
    bound = np.float32(math.sqrt(3.0) * torch_std((8, 4), "xavier"))
    assert not np.array_equal(new["0.weight"], before["0.weight"])
    assert np.abs(new["0.weight"]).max() <= bound and np.abs(expected["0.weight"]).max() <= bound


def test_reinit_my_init_zeroes_small_weights_like_torch(capsys):
    net, params, tnet = seed_nets()
    tnet.apply(t_my_init)
    torch_printed = capsys.readouterr().out
    new, expected, before = (
        flat(reinit_linear(params, net, my_init)),
        torch_params(tnet),
        flat(params),
    )
    # Same layers in the same order: "Init weight (8, 4)", then "Init weight (1, 8)".
    assert capsys.readouterr().out == torch_printed == "Init weight (8, 4)\nInit weight (1, 8)\n"
    for name in ("0.weight", "2.weight"):
        for w in (new[name], expected[name]):
            assert np.all((w == 0) | ((np.abs(w) >= 5) & (np.abs(w) <= 10)))
    for name in ("0.bias", "2.bias"):
        np.testing.assert_array_equal(new[name], before[name])
        np.testing.assert_array_equal(new[name], expected[name])


@pytest.mark.parametrize(
    ("fn", "torch_fn"),
    [(init_normal, t_init_normal), (init_xavier, t_init_xavier), (my_init, t_my_init)],
    ids=["init_normal", "init_xavier", "my_init"],
)
def test_reinit_random_inits_match_torch_in_distribution(fn, torch_fn):
    """The seed's random inits on a wider net of the same form: KS against torch."""
    net, params, tnet = seed_nets(sizes=(784, 256, 1))  # first weight: WEIGHT
    torch.manual_seed(0)
    tnet.apply(torch_fn)
    new, expected = flat(reinit_linear(params, net, fn)), torch_params(tnet)
    for name in ("0.weight", "2.weight"):
        assert ks_2samp(new[name].ravel(), expected[name].ravel()).pvalue > P_MIN
    if fn is my_init:  # about half of U(-10, 10) has |w| < 5
        for w in (new["0.weight"], expected["0.weight"]):
            assert abs(np.mean(w == 0) - 0.5) < 0.01


def test_reinit_leaves_its_input_untouched():
    net, params, _ = seed_nets()
    before, layer0 = flat(params), params["0"]
    new = reinit_linear(params, net, init_constant)
    assert new is not params and new["0"] is not layer0 and params["0"] is layer0
    assert flat(params).keys() == before.keys()
    for name, value in flat(params).items():
        np.testing.assert_array_equal(value, before[name])


def test_reinit_gives_each_layer_its_own_key():
    net = Sequential(Linear(8, 8), Linear(8, 8))
    new = reinit_linear(net.init(jax.random.key(0)), net, init_normal)
    assert not np.array_equal(new["0"]["weight"], new["1"]["weight"])


def test_reinit_rejects_unknown_paths_and_kinds():
    net, params, _ = seed_nets()
    with pytest.raises(ValueError, match=r"reinit: unknown path '3'; available paths: \['', '0', "):
        reinit_linear(params, net, init_xavier, path="3")
    with pytest.raises(TypeError, match=r"reinit: kind must be a layer type .*got 'Linear'"):
        init.reinit(params, net, init_xavier, jax.random.key(0), kind="Linear")


def test_reinit_checks_what_fn_returns():
    net, params, _ = seed_nets()
    with pytest.raises(TypeError, match=r"reinit: fn for layer '0' \(Linear\) must return .*None"):
        reinit_linear(params, net, lambda key, layer, p: None)
    with pytest.raises(ValueError, match=r"reinit: fn for layer '0' \(Linear\) changed the params"):
        reinit_linear(params, net, lambda key, layer, p: {**p, "weight": p["weight"].T})


def test_reinit_path_selects_a_subtree_not_a_prefix():
    nested = Sequential(Sequential(Linear(4, 8), ReLU()), Linear(8, 1))
    new = reinit_linear(nested.init(jax.random.key(0)), nested, init_42, path="0")
    assert np.all(new["0"]["0"]["weight"] == 42) and not np.any(new["1"]["weight"] == 42)
    eleven = Sequential(*[Linear(8, 8) for _ in range(11)])
    new = reinit_linear(eleven.init(jax.random.key(0)), eleven, init_42, path="1")
    assert [k for k in new if np.all(new[k]["weight"] == 42)] == ["1"]  # not "10"


def test_reinit_on_a_bare_linear_uses_the_root_path():
    lin = Linear(4, 8)
    new = reinit_linear(lin.init(jax.random.key(0)), lin, init_constant, path="")
    np.testing.assert_array_equal(new["weight"], np.ones((8, 4)))
    with pytest.raises(ValueError, match=r"available paths: \[''\]"):
        reinit_linear(new, lin, init_constant, path="0")


class Scale(Module):
    """A parameterised layer that is not a Linear."""

    def init(self, key):
        return {"weight": jnp.ones((8,), jnp.float32)}

    def apply(self, params, x):
        return x * params["weight"]


class TScale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(8))


class SubLinear(Linear):
    pass


class TSubLinear(torch.nn.Linear):
    pass


def test_reinit_kind_is_an_exact_type_match_like_torch():
    """Only exact Linears change: not another parameterised layer, not a Linear subclass."""
    net = Sequential(Linear(8, 8), Scale(), SubLinear(8, 8))
    tnet = torch.nn.Sequential(torch.nn.Linear(8, 8), TScale(), TSubLinear(8, 8))
    params = net.init(jax.random.key(0))
    tnet.load_state_dict({k: torch.from_numpy(v) for k, v in flat(params).items()})
    tnet.apply(t_init_constant)
    new, expected = flat(reinit_linear(params, net, init_constant)), torch_params(tnet)
    for name, value in new.items():
        np.testing.assert_array_equal(value, expected[name])
    np.testing.assert_array_equal(new["0.weight"], np.ones((8, 8)))
    np.testing.assert_array_equal(new["2.weight"], flat(params)["2.weight"])


def test_reinit_visits_layers_in_torch_apply_order_with_tied_layers_once():
    shared, tshared = Linear(8, 8), torch.nn.Linear(8, 8)
    net = Sequential(Sequential(Linear(4, 8), ReLU()), shared, ReLU(), shared)
    tnet = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()),
        tshared,
        torch.nn.ReLU(),
        tshared,
    )
    torch_visits = []
    tnet.apply(lambda m: torch_visits.append((type(m).__name__, len(list(m.parameters())))))
    visits = []

    def record(key, layer, p):
        visits.append((type(layer).__name__, len(jax.tree.leaves(p))))
        return p

    params = net.init(jax.random.key(0))
    new = init.reinit(params, net, record, jax.random.key(1))
    assert jax.tree.all(jax.tree.map(np.array_equal, new, params))
    assert visits == [v for v in torch_visits if v[1] > 0]  # torch also visits ReLUs
    assert visits == [("Linear", 2), ("Sequential", 2), ("Linear", 2), ("Sequential", 4)]
