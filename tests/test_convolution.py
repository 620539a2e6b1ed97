"""jaxnet.nn.convolution against torch: convolutions, pooling and padding, their values and
gradients (input, weight, bias) over hypothesis-generated configurations, unbatched
inputs, ties in max pooling, jit against eager, and the errors.

Values and gradients (a vector-Jacobian product with one random cotangent) are compared in
float64 with rtol 1e-10 / atol 1e-12 (the formulas) and in float32 with rtol 1e-5 /
atol 1e-5 (the user's path).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jaxnet.nn import convolution as C

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 1e-5, "atol": 1e-5}
SWEEP = settings(max_examples=20, deadline=None)


def assert_matches_torch(jax_fn, torch_fn, arrays, tol=F64, seed=0, jit=False):
    """``jax_fn(*arrays)`` equals ``torch_fn(*tensors)`` and so do the gradients with
    respect to every array (for one random cotangent). ``jit=True`` computes them in one
    compiled call: cheaper than compiling each of many small operations eagerly (pooling
    folds one slice per window element)."""
    rng = np.random.default_rng(seed)
    cotangent = rng.normal(size=jax.eval_shape(jax_fn, *arrays).shape).astype(arrays[0].dtype)

    def value_and_grads(arrays, cotangent):
        y, vjp = jax.vjp(jax_fn, *arrays)
        return y, vjp(cotangent)

    y, grads = (jax.jit(value_and_grads) if jit else value_and_grads)(arrays, cotangent)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    yt = torch_fn(*tensors)
    yt.backward(torch.tensor(cotangent))
    assert y.dtype == arrays[0].dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), err_msg="value", **tol)
    for i, (g, t) in enumerate(zip(grads, tensors, strict=True)):
        np.testing.assert_allclose(g, t.grad.numpy(), err_msg=f"gradient {i}", **tol)


def normal(rng, *shape, dtype=np.float64):
    return rng.normal(size=shape).astype(dtype)


# ----------------------------------------------------------------- convolutions


@st.composite
def conv2d_configs(draw):
    groups = draw(st.sampled_from([1, 2, 3]))
    in_per_group = draw(st.integers(1, 2))
    depthwise = draw(st.booleans())
    out_per_group = 1 if depthwise else draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    same = draw(st.booleans())
    stride = (1, 1) if same else (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    if same:
        padding = draw(st.sampled_from(["same", "same", "valid"]))
    else:
        padding = draw(
            st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 1)))
        )
    padding_mode = draw(st.sampled_from(C.PADDING_MODES))
    pads = padding if isinstance(padding, tuple) else (padding, padding)
    if padding == "same":
        pads = tuple(-(-d * (k - 1) // 2) for d, k in zip(dilation, kernel, strict=True))
    elif padding == "valid":
        pads = (0, 0)
    # The input is at least the kernel's extent and, for reflect, larger than the padding.
    extent = [d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=True)]
    size = [
        draw(st.integers(max(e, p + 1), max(e, p + 1) + 5))
        for e, p in zip(extent, pads, strict=True)
    ]
    return {
        "batch": draw(st.integers(1, 2)),
        "in_channels": groups * in_per_group,
        "out_channels": groups * out_per_group,
        "size": tuple(size),
        "kernel_size": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": padding_mode,
        "bias": draw(st.booleans()),
    }


def torch_conv(n, config):
    """torch's Conv{n}d layer for ``config`` in float64 (its padding_mode included)."""
    layer = getattr(torch.nn, f"Conv{n}d")(
        config["in_channels"],
        config["out_channels"],
        config["kernel_size"],
        stride=config["stride"],
        padding=config["padding"],
        dilation=config["dilation"],
        groups=config["groups"],
        bias=config["bias"],
        padding_mode=config["padding_mode"],
    ).double()

    def forward(x, w, b=None):
        params = {"weight": w} if b is None else {"weight": w, "bias": b}
        return torch.func.functional_call(layer, params, (x,))

    return layer, forward


def check_conv(n, config, dtype=np.float64, tol=F64):
    rng = np.random.default_rng(0)
    layer, forward = torch_conv(n, config)
    x = normal(rng, config["batch"], config["in_channels"], *config["size"], dtype=dtype)
    arrays = [x, layer.weight.detach().numpy().astype(dtype)]
    if config["bias"]:
        arrays.append(layer.bias.detach().numpy().astype(dtype))
    keys = ("stride", "padding", "dilation", "groups", "padding_mode")

    def jax_fn(x, w, b=None):
        return C.convolution(x, w, b, **{k: config[k] for k in keys})

    assert_matches_torch(jax_fn, forward, arrays, tol)
    if config["padding_mode"] == "zeros":  # the functional form, named as in torch
        fn = getattr(C, f"conv{n}d")
        plain = {k: config[k] for k in keys[:-1]}
        assert_matches_torch(
            lambda x, w, b=None: fn(x, w, b, **plain),
            lambda x, w, b=None: getattr(TF, f"conv{n}d")(x, w, b, **plain),
            arrays,
            tol,
        )


@SWEEP
@given(conv2d_configs())
def test_conv2d_matches_torch(config):
    check_conv(2, config)


@SWEEP
@given(conv2d_configs())
def test_conv1d_matches_torch(config):
    config = {k: v[0] if isinstance(v, tuple) else v for k, v in config.items()}
    config["size"] = (config["size"],)
    check_conv(1, config)


def test_same_padding_with_even_kernels_pads_after():
    """An even kernel's odd total padding puts the extra element after (torch's choice):
    [0, 0, 0, 1] with the kernel [1, 0] gives the input back shifted by nothing."""
    x = np.array([[[0.0, 0.0, 0.0, 1.0]]])
    w = np.array([[[1.0, 0.0]]])
    got = C.conv1d(x, w, padding="same")
    want = TF.conv1d(torch.tensor(x), torch.tensor(w), padding="same").numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, x)


def test_conv2d_float32_and_unbatched():
    """The user's float32 path, and an unbatched (C, H, W) input, as torch accepts."""
    rng = np.random.default_rng(1)
    x, w, b = normal(rng, 4, 3, 12, 10), normal(rng, 8, 3, 3, 3), normal(rng, 8)
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    assert_matches_torch(
        lambda x, w, b: C.conv2d(x, w, b, stride=2, padding=1),
        lambda x, w, b: TF.conv2d(x, w, b, stride=2, padding=1),
        [x32, w32, b32],
        F32,
    )
    assert_matches_torch(
        lambda x, w: C.conv2d(x, w, padding="same"),
        lambda x, w: TF.conv2d(x, w, padding="same"),
        [x[0], w],
    )


@pytest.mark.parametrize(
    ("in_channels", "kernel", "padding"),
    [(1, 5, 2), (6, 5, 0), (3, 3, 1), (33, 1, 0)],
)
def test_im2col_and_xla_convolutions_match_torch_in_float32(in_channels, kernel, padding):
    """Both ways conv2d computes: im2col and one dot (a contraction of at most
    IM2COL_MAX_CONTRACTION: LeNet's first layer, 3 x 3 x 3) and XLA's convolution (longer:
    LeNet's second layer, 33 channels of 1 x 1). A weight gradient sums 4 x 28 x 28 float32
    products, hence atol 2e-4."""
    rng = np.random.default_rng(10)
    x = normal(rng, 4, in_channels, 28, 28, dtype=np.float32)
    w = normal(rng, 6, in_channels, kernel, kernel, dtype=np.float32) / kernel
    b = normal(rng, 6, dtype=np.float32)
    assert_matches_torch(
        lambda x, w, b: C.conv2d(x, w, b, padding=padding),
        lambda x, w, b: TF.conv2d(x, w, b, padding=padding),
        [x, w, b],
        {"rtol": 1e-4, "atol": 2e-4},
        jit=True,
    )


@st.composite
def conv_transpose2d_configs(draw):
    groups = draw(st.sampled_from([1, 2]))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    output_padding = tuple(
        draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True)
    )
    # torch needs a positive output size: padding at most what the kernel adds.
    padding = tuple(
        draw(st.integers(0, min(2, d * (k - 1) // 2)))
        for d, k in zip(dilation, kernel, strict=True)
    )
    options = {"stride": stride, "padding": padding, "output_padding": output_padding}
    options |= {"groups": groups, "dilation": dilation}
    batch, in_per_group = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    size = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return {
        "shape": (batch, groups * in_per_group, *size),
        "out_per_group": draw(st.integers(1, 3)),
        "kernel": kernel,
        "options": options,
    }


@SWEEP
@given(conv_transpose2d_configs(), st.booleans())
def test_conv_transpose2d_matches_torch(config, bias):
    rng = np.random.default_rng(2)
    x = normal(rng, *config["shape"])
    w = normal(rng, config["shape"][1], config["out_per_group"], *config["kernel"])
    arrays = [x, w] + (
        [normal(rng, config["out_per_group"] * config["options"]["groups"])] if bias else []
    )
    options = config["options"]
    assert_matches_torch(
        lambda x, w, b=None: C.conv_transpose2d(x, w, b, **options),
        lambda x, w, b=None: TF.conv_transpose2d(x, w, b, **options),
        arrays,
    )


# --------------------------------------------------------------------- pooling


@st.composite
def pool_configs(draw, dilation=True):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    extent = [d * (k - 1) + 1 for d, k in zip(dil, kernel, strict=True)]
    size = [
        draw(st.integers(max(1, e - 2 * p), e + 6)) for e, p in zip(extent, padding, strict=True)
    ]
    options = {"kernel_size": kernel, "stride": stride, "padding": padding,
               "ceil_mode": draw(st.booleans())}  # fmt: skip
    if dilation:
        options["dilation"] = dil
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *size), options


def has_padding_only_window(shape, options) -> bool:
    """Whether some window of the pooling ``options`` over ``shape`` covers padding only
    (possible with dilation: kernel 2, dilation 2, padding 1 over a width of 1). torch's
    forward then gives ``-inf`` with an index outside the input, and its backward writes
    there: the process aborts with a corrupted heap."""
    kernel, padding = options["kernel_size"], options["padding"]
    stride, dilation = options["stride"] or kernel, options.get("dilation", (1, 1))
    for n, k, s, p, d in zip(shape[2:], kernel, stride, padding, dilation, strict=True):
        out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if options["ceil_mode"] else 0)) // s + 1
        if options["ceil_mode"] and (out - 1) * s >= n + p:
            out -= 1
        if any(all(not 0 <= i * s - p + j * d < n for j in range(k)) for i in range(out)):
            return True
    return False


@SWEEP
@given(pool_configs())
def test_max_pool2d_matches_torch(config):
    shape, options = config
    assume(not has_padding_only_window(shape, options))
    x = normal(np.random.default_rng(3), *shape)
    assert_matches_torch(
        lambda x: C.max_pool2d(x, **options),
        lambda x: TF.max_pool2d(x, **options),
        [x],
        jit=True,
    )


def test_max_pool2d_window_over_padding_only():
    """A window that covers padding only (kernel 2, dilation 2, padding 1 over a width of 1)
    gives torch's ``-inf``; its gradient is zero, since no input element is in the window
    (torch's backward corrupts memory here, so only its forward is compared)."""
    options = {"kernel_size": (1, 2), "padding": (0, 1), "dilation": (1, 2)}
    x = np.arange(3.0).reshape(1, 1, 3, 1)
    assert has_padding_only_window(x.shape, {**options, "stride": None, "ceil_mode": False})
    y = C.max_pool2d(x, **options)
    np.testing.assert_array_equal(y, TF.max_pool2d(torch.tensor(x), **options).numpy())
    assert np.all(np.isneginf(y))
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(C.max_pool2d(x, **options)))(x), 0.0)


@SWEEP
@given(pool_configs(dilation=False), st.booleans(), st.sampled_from([None, 1, 5]))
def test_avg_pool2d_matches_torch(config, count_include_pad, divisor_override):
    shape, options = config
    options = {
        **options,
        "count_include_pad": count_include_pad,
        "divisor_override": divisor_override,
    }
    x = normal(np.random.default_rng(4), *shape)
    assert_matches_torch(
        lambda x: C.avg_pool2d(x, **options), lambda x: TF.avg_pool2d(x, **options), [x]
    )


@SWEEP
@given(
    st.tuples(st.integers(1, 9), st.integers(1, 9)),
    st.one_of(
        st.integers(1, 5), st.tuples(st.integers(1, 7), st.one_of(st.none(), st.integers(1, 7)))
    ),
)
def test_adaptive_pooling_matches_torch(size, output_size):
    """Any output size: dividing the input, not dividing it, larger than it, or None."""
    x = normal(np.random.default_rng(5), 2, 3, *size)
    for ours, theirs in [
        (C.adaptive_avg_pool2d, TF.adaptive_avg_pool2d),
        (C.adaptive_max_pool2d, TF.adaptive_max_pool2d),
    ]:
        assert_matches_torch(
            lambda x, f=ours: f(x, output_size),
            lambda x, f=theirs: f(x, output_size),
            [x],
            jit=True,
        )


def test_max_pooling_ties_send_the_gradient_to_the_first_maximum():
    """Constant (e.g. ReLU-zeroed) windows: torch routes each window's gradient to its
    first element in row-major order; jaxnet does the same."""
    x = np.zeros((1, 2, 5, 6))
    cases = [
        (lambda x: C.max_pool2d(x, 2), lambda x: TF.max_pool2d(x, 2)),
        (lambda x: C.max_pool2d(x, 3, 1, 1, ceil_mode=True),
         lambda x: TF.max_pool2d(x, 3, 1, 1, ceil_mode=True)),
        (lambda x: C.adaptive_max_pool2d(x, (3, 4)), lambda x: TF.adaptive_max_pool2d(x, (3, 4))),
    ]  # fmt: skip
    for ours, theirs in cases:
        assert_matches_torch(ours, theirs, [x])


def test_pooling_float32_and_unbatched():
    x = normal(np.random.default_rng(6), 3, 9, 7)
    for ours, theirs in [
        (lambda x: C.max_pool2d(x, 3, 2, 1), lambda x: TF.max_pool2d(x, 3, 2, 1)),
        (
            lambda x: C.avg_pool2d(x, 2, ceil_mode=True),
            lambda x: TF.avg_pool2d(x, 2, ceil_mode=True),
        ),
        (lambda x: C.adaptive_avg_pool2d(x, 4), lambda x: TF.adaptive_avg_pool2d(x, 4)),
        (lambda x: C.adaptive_max_pool2d(x, 4), lambda x: TF.adaptive_max_pool2d(x, 4)),
    ]:
        assert_matches_torch(ours, theirs, [x])  # unbatched (C, H, W)
        assert_matches_torch(ours, theirs, [x[None].astype(np.float32)], F32)


# --------------------------------------------------------------------- padding


@SWEEP
@given(
    st.sampled_from(C.PAD_MODES),
    st.lists(st.integers(0, 3), min_size=2, max_size=4).filter(lambda p: len(p) % 2 == 0),
)
def test_pad_matches_torch(mode, amounts):
    """torch's order: the first pair pads the last dimension (of an input with one or two
    more dimensions than padded ones, as torch's non-constant modes need)."""
    x = normal(np.random.default_rng(7), 2, 3, 4, 5)[(0,) * (2 - len(amounts) // 2)]
    assert_matches_torch(lambda x: C.pad(x, amounts, mode), lambda x: TF.pad(x, amounts, mode), [x])


def test_constant_pad_value_and_negative_amounts_crop():
    x = normal(np.random.default_rng(8), 2, 4, 5)
    assert_matches_torch(
        lambda x: C.pad(x, (-1, 2, 1, -2), value=3.5),
        lambda x: TF.pad(x, (-1, 2, 1, -2), value=3.5),
        [x],
    )


# ------------------------------------------------------------------ jit and eager


def test_jit_agrees_with_eager():
    rng = np.random.default_rng(9)
    x, w, b = normal(rng, 2, 4, 9, 8), normal(rng, 6, 2, 3, 2), normal(rng, 6)
    wt = normal(rng, 4, 3, 3, 3)

    def every_op(x, w, b, wt):
        return (
            C.convolution(x, w, b, padding="same", groups=2, padding_mode="reflect"),
            C.conv_transpose2d(x, wt, None, stride=2, output_padding=1),
            C.max_pool2d(x, 3, 2, 1, ceil_mode=True),
            C.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
            C.adaptive_avg_pool2d(x, (4, 3)),
            C.adaptive_max_pool2d(x, (4, 3)),
            C.pad(x, (1, 2, 0, 1), "circular"),
        )

    eager = every_op(x, w, b, wt)
    jitted = jax.jit(every_op)(x, w, b, wt)
    for e, j in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(j, e, **F64)


# ----------------------------------------------------------------------- errors


def test_channels_last_input_is_refused_with_the_permute():
    x = jnp.zeros((8, 32, 32, 3))
    w = jnp.zeros((16, 3, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d expected input \(N, C, H, W\) with C=3 "
                       r"channels, got shape \(8, 32, 32, 3\).*transpose\(0, 3, 1, 2\).*"
                       r"permute\(0, 3, 1, 2\)"):  # fmt: skip
        C.conv2d(x, w)
    with pytest.raises(ValueError, match=r"conv1d .* C=3 .* \(4, 10, 3\).*permute\(0, 2, 1\)"):
        C.conv1d(jnp.zeros((4, 10, 3)), jnp.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"conv2d expected input .* C=4 channels, got shape"):
        C.conv2d(jnp.zeros((1, 3, 5, 5)), jnp.zeros((2, 2, 1, 1)), groups=2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: C.conv2d(jnp.zeros((1, 1, 4, 4)), jnp.zeros((1, 1, 5, 5))),
         r"conv2d: kernel size \(5, 5\).*larger than the padded input size \(4, 4\)"),
        (lambda: C.conv2d(jnp.zeros((1, 1, 4, 4)), jnp.zeros((1, 1, 3, 3)), dilation=2),
         r"conv2d: kernel size \(5, 5\)"),
        (lambda: C.max_pool2d(jnp.zeros((1, 1, 2, 2)), 3, padding=0),
         r"max_pool2d: kernel size \(3, 3\).*padded input size \(2, 2\)"),
        (lambda: C.convolution(jnp.zeros((1, 1, 4)), jnp.zeros((1, 1, 3)), padding_mode="mirror"),
         r"conv1d: padding_mode must be one of"),
        (lambda: C.pad(jnp.zeros((2, 3)), (1, 1), mode="zeros"), r"pad: mode must be one of"),
        (lambda: C.conv2d(jnp.zeros((1, 1, 4, 4)), jnp.zeros((1, 1, 3, 3)), padding="full"),
         r"conv2d: padding must be 'valid', 'same' or ints, got 'full'"),
        (lambda: C.conv2d(jnp.zeros((1, 4, 4, 4)), jnp.zeros((6, 2, 3, 3)), groups=4),
         r"conv2d: groups=4 must divide out_channels=6"),
        (lambda: C.conv_transpose2d(jnp.zeros((1, 3, 4, 4)), jnp.zeros((3, 1, 3, 3)), groups=2),
         r"conv_transpose2d: groups=2 must divide in_channels=3"),
        (lambda: C.conv2d(jnp.zeros((1, 1, 8, 8)), jnp.ones((1, 1, 3, 3)), stride=2,
                          padding="same"),
         r"conv2d: padding='same' needs stride 1, got stride=\(2, 2\)"),
        (lambda: C.conv2d(jnp.zeros((1, 1, 4, 4)), jnp.zeros((1, 1, 3))),
         r"conv2d expected a 4-d weight"),
        (lambda: C.conv2d(jnp.zeros((1, 1, 1, 4, 4)), jnp.zeros((1, 1, 3, 3))),
         r"conv2d expected a 4-d input \(N, C, H, W\) or a 3-d unbatched one, got shape"),
        (lambda: C.conv2d(jnp.zeros((1, 1, 4, 4)), jnp.zeros((2, 1, 3, 3)), jnp.zeros(3)),
         r"conv2d expected bias of shape \(2,\), got \(3,\)"),
        (lambda: C.max_pool2d(jnp.zeros((1, 1, 8, 8)), 2, padding=2),
         r"max_pool2d: padding=\(2, 2\) must be at most half of kernel_size=\(2, 2\)"),
        (lambda: C.conv_transpose2d(jnp.zeros((1, 1, 4, 4)), jnp.zeros((1, 1, 3, 3)), stride=2,
                                    output_padding=2),
         r"conv_transpose2d: output_padding=\(2, 2\) must be smaller than stride"),
        (lambda: C.pad(jnp.zeros((2, 3)), (3, 0), mode="reflect"),
         r"pad: mode='reflect' needs non-negative amounts smaller than .* size 3, got \(3, 0\)"),
        (lambda: C.pad(jnp.zeros((2, 3)), (1, 2, 3)), r"pad: pad must have an even length"),
        (lambda: C.avg_pool2d(jnp.zeros((1, 1, 4, 4)), 2, divisor_override=0),
         r"avg_pool2d: divisor_override must be a positive int"),
        (lambda: C.adaptive_avg_pool2d(jnp.zeros((1, 1, 4, 4)), (0, 2)),
         r"adaptive_avg_pool2d: output_size must be >= 1"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_torch_refuses_the_same_configurations():
    """The refusals above are torch's too (not jaxnet's inventions)."""
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        TF.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 5, 5))
    with pytest.raises(RuntimeError, match="padding='same' is not supported for strided"):
        TF.conv2d(x, torch.zeros(1, 1, 3, 3), stride=2, padding="same")
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        TF.max_pool2d(x, 2, padding=2)
    with pytest.raises(RuntimeError, match="groups"):
        TF.conv2d(torch.zeros(1, 4, 4, 4), torch.zeros(6, 2, 3, 3), groups=4)
