"""jaxnet.nn.functional.batch_norm and layer_norm against torch.

batch_norm is compared with ``torch.nn.functional.batch_norm`` (output, gradients with
respect to input, weight and bias, and the running statistics torch updates in place) and
with ``torch.nn.BatchNorm1d``/``2d`` over several training steps, buffers included
(``momentum=None`` too). float64 to rtol 1e-10; float32 to rtol 1e-5 / atol 1e-5 for the
outputs and 1e-4 for the gradients (torch accumulates batch statistics in its own order).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxnet.nn.functional as F

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 1e-5, "atol": 1e-5}
F32_GRAD = {"rtol": 1e-4, "atol": 1e-4}
SHAPES = {"(N,C)": (8, 3), "(N,C,L)": (6, 3, 5), "(N,C,H,W)": (4, 3, 5, 2)}


def assert_values_and_grads_match(jax_fn, torch_fn, args, tol, grad_tol=None):
    """``jax_fn(*args)`` and ``torch_fn(*tensors)`` agree, and so do the gradients of
    ``sum(output * v)`` with respect to every argument, for one random cotangent ``v``."""
    y, vjp = jax.vjp(jax_fn, *args)
    v = np.random.default_rng(1).normal(size=y.shape).astype(y.dtype)
    tensors = [torch.tensor(a, requires_grad=True) for a in args]
    yt = torch_fn(*tensors)
    yt.backward(torch.tensor(v))
    np.testing.assert_allclose(y, yt.detach().numpy(), err_msg="value", **tol)
    for i, (grad, t) in enumerate(zip(vjp(v), tensors, strict=True)):
        np.testing.assert_allclose(grad, t.grad.numpy(), err_msg=f"grad {i}", **(grad_tol or tol))


def channel_stats(rng, n_channels, dtype):
    mean = rng.normal(size=n_channels).astype(dtype)
    var = rng.uniform(0.5, 2.0, size=n_channels).astype(dtype)
    return mean, var


# ------------------------------------------------------------ batch_norm, functional


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", ""])
@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, F64), (np.float32, F32)])
def test_batch_norm_matches_torch(shape, training, affine, dtype, tol):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 2 + 1).astype(dtype)
    mean, var = channel_stats(rng, shape[1], dtype)
    weight, bias = channel_stats(rng, shape[1], dtype)
    args = (x, weight, bias) if affine else (x,)
    options = {"training": training, "momentum": 0.3, "eps": 1e-3}
    torch_mean, torch_var = torch.tensor(mean), torch.tensor(var)
    out = {}

    def ours(x, weight=None, bias=None):
        out["result"] = F.batch_norm(x, mean, var, weight, bias, **options)
        return out["result"].output

    def theirs(x, weight=None, bias=None):
        return TF.batch_norm(x, torch_mean, torch_var, weight, bias, **options)

    grad_tol = tol if dtype == np.float64 else F32_GRAD
    assert_values_and_grads_match(ours, theirs, args, tol, grad_tol)
    result = out["result"]
    assert result.output.dtype == dtype
    assert result.running_mean.dtype == result.running_var.dtype == dtype
    np.testing.assert_allclose(result.running_mean, torch_mean.numpy(), **tol)
    np.testing.assert_allclose(result.running_var, torch_var.numpy(), **tol)
    if not training:
        np.testing.assert_array_equal(result.running_mean, mean)  # eval updates nothing
        np.testing.assert_array_equal(result.running_var, var)
    assert result.num_batches_tracked is None


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_batch_norm_without_running_stats_uses_batch_stats_as_torch(shape):
    x = np.random.default_rng(2).normal(size=shape) * 3
    ours = lambda x: F.batch_norm(x, None, None, training=True).output  # noqa: E731
    theirs = lambda x: TF.batch_norm(x, None, None, training=True)  # noqa: E731
    assert_values_and_grads_match(ours, theirs, (x,), F64)
    result = F.batch_norm(x, None, None, training=True, num_batches_tracked=3)
    assert result.running_mean is None and result.running_var is None
    assert result.num_batches_tracked == 3  # no running statistics: nothing counted


def test_batch_norm_normalises_with_biased_and_tracks_unbiased_variance():
    """The formulas, from NumPy: the two variances differ by n / (n - 1)."""
    x = np.random.default_rng(3).normal(size=(5, 2, 3))
    mean, var = np.zeros(2), np.ones(2)
    result = F.batch_norm(x, mean, var, training=True, momentum=0.25, eps=0.0)
    batch_mean = x.mean(axis=(0, 2))
    biased = x.var(axis=(0, 2))
    expected = (x - batch_mean[:, None]) / np.sqrt(biased[:, None])
    np.testing.assert_allclose(result.output, expected, **F64)
    np.testing.assert_allclose(result.running_mean, 0.25 * batch_mean, **F64)
    np.testing.assert_allclose(result.running_var, 0.75 + 0.25 * biased * 15 / 14, **F64)


def run_torch_module(module, batches):
    """Outputs, input gradients and buffers of a torch BatchNorm over training steps."""
    steps = []
    for x in batches:
        xt = torch.tensor(x, requires_grad=True)
        y = module(xt)
        y.backward(torch.tensor(cotangent(x)))
        buffers = {k: v.detach().clone().numpy() for k, v in module.named_buffers()}
        steps.append((y.detach().numpy(), xt.grad.numpy(), buffers))
    return steps


def cotangent(x):
    """One fixed cotangent per batch, shared by torch and jaxnet."""
    return np.random.default_rng(x.size).normal(size=x.shape).astype(x.dtype)


# torch's buffer names, which are also the names of BatchNormOutput's last three fields.
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
MODULE_CASES = {
    "1d-(N,C)": (torch.nn.BatchNorm1d, (8, 3), {}),
    "1d-(N,C,L)-momentum0.5": (torch.nn.BatchNorm1d, (6, 3, 5), {"momentum": 0.5}),
    "1d-momentum-None": (torch.nn.BatchNorm1d, (8, 3), {"momentum": None}),
    "2d": (torch.nn.BatchNorm2d, (4, 3, 5, 2), {}),
    "2d-momentum-None": (torch.nn.BatchNorm2d, (4, 3, 5, 2), {"momentum": None}),
    "2d-no-affine": (torch.nn.BatchNorm2d, (4, 3, 5, 2), {"affine": False, "eps": 1e-2}),
}


@pytest.mark.parametrize("case", MODULE_CASES)
@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, F64), (np.float32, F32)])
def test_batch_norm_threads_torch_module_buffers_over_steps(case, dtype, tol):
    """Five training steps then eval: outputs, input gradients and all three buffers."""
    module_cls, shape, kwargs = MODULE_CASES[case]
    rng = np.random.default_rng(4)
    batches = [(rng.normal(size=shape) * (i + 1) + i).astype(dtype) for i in range(5)]
    module = module_cls(shape[1], **kwargs).to(getattr(torch, np.dtype(dtype).name))
    if module.affine:
        with torch.no_grad():
            module.weight.copy_(torch.tensor(rng.uniform(0.5, 2, shape[1])))
            module.bias.copy_(torch.tensor(rng.normal(size=shape[1])))
    weight, bias = (
        (module.weight.detach().numpy(), module.bias.detach().numpy())
        if module.affine
        else (None, None)
    )
    torch_steps = run_torch_module(module.train(), batches)

    momentum, eps = module.momentum, module.eps
    buffers = {k: v.detach().numpy() for k, v in module_cls(shape[1]).named_buffers()}
    buffers = {k: v.astype(dtype) if k != "num_batches_tracked" else v for k, v in buffers.items()}
    assert tuple(buffers) == BUFFERS == F.BatchNormOutput._fields[1:]
    for x, (y_t, grad_t, buffers_t) in zip(batches, torch_steps, strict=True):

        def step(x, buffers=buffers):
            mean, var, count = (buffers[name] for name in BUFFERS)
            result = F.batch_norm(
                x, mean, var, weight, bias, True, momentum, eps, num_batches_tracked=count
            )
            return result.output, dict(zip(BUFFERS, result[1:], strict=True))

        y, vjp, buffers = jax.vjp(step, x, has_aux=True)
        (grad,) = vjp(cotangent(x))
        np.testing.assert_allclose(y, y_t, **tol)
        np.testing.assert_allclose(grad, grad_t, **(tol if dtype == np.float64 else F32_GRAD))
        for name, value in buffers.items():
            assert value.dtype == buffers_t[name].dtype, name
            np.testing.assert_allclose(value, buffers_t[name], err_msg=name, **tol)

    x_eval = batches[0]
    y_eval = module.eval()(torch.tensor(x_eval)).detach().numpy()
    evaluated = F.batch_norm(
        x_eval, buffers["running_mean"], buffers["running_var"], weight, bias, False, momentum, eps
    )
    np.testing.assert_allclose(evaluated.output, y_eval, **tol)


def test_batch_norm_with_tracking_off_matches_torch_module():
    module = torch.nn.BatchNorm1d(3, track_running_stats=False).double()
    x = np.random.default_rng(5).normal(size=(7, 3, 2))
    expected = module(torch.tensor(x)).detach().numpy()
    result = F.batch_norm(x, None, None, module.weight.detach(), module.bias.detach(), True)
    np.testing.assert_allclose(result.output, expected, **F64)
    assert dict(module.named_buffers()) == {}


def test_batch_norm_empty_batch_counts_but_leaves_statistics_as_torch():
    module = torch.nn.BatchNorm1d(3).double()
    module(torch.zeros(0, 3, dtype=torch.float64))
    mean, var = np.zeros(3), np.ones(3)
    result = F.batch_norm(np.zeros((0, 3)), mean, var, training=True, num_batches_tracked=0)
    assert result.output.shape == (0, 3)
    np.testing.assert_array_equal(result.running_mean, module.running_mean.numpy())
    np.testing.assert_array_equal(result.running_var, module.running_var.numpy())
    assert result.num_batches_tracked == module.num_batches_tracked.item() == 1


def test_batch_norm_under_jit_with_a_traced_count():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(6, 3, 4))
    mean, var = channel_stats(rng, 3, np.float64)

    def step(x, mean, var, count):
        return F.batch_norm(x, mean, var, None, None, True, None, num_batches_tracked=count)

    jitted = jax.jit(step)(x, mean, var, jnp.asarray(4))
    eager = step(x, mean, var, 4)
    for a, b in zip(jitted, eager, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # momentum=None: the fifth batch has weight 1/5.
    np.testing.assert_allclose(eager.running_mean, 0.8 * mean + 0.2 * x.mean(axis=(0, 2)), **F64)
    assert eager.num_batches_tracked == 5


def test_new_running_statistics_carry_no_gradient():
    x = np.random.default_rng(7).normal(size=(6, 3))

    def stats_sum(x):
        result = F.batch_norm(x, np.zeros(3), np.ones(3), training=True)
        return jnp.sum(result.running_mean) + jnp.sum(result.running_var)

    np.testing.assert_array_equal(jax.grad(stats_sum)(x), np.zeros_like(x))


def test_batch_norm_half_precision_input_keeps_float32_buffers():
    x = np.random.default_rng(8).normal(size=(16, 3)).astype(np.float32)
    result = F.batch_norm(
        jnp.asarray(x, jnp.bfloat16), np.zeros(3, np.float32), np.ones(3, np.float32), training=True
    )
    assert result.output.dtype == jnp.bfloat16
    assert result.running_mean.dtype == result.running_var.dtype == jnp.float32
    reference = F.batch_norm(
        x.astype(jnp.bfloat16).astype(np.float32),
        np.zeros(3, np.float32),
        np.ones(3, np.float32),
        training=True,
    )
    np.testing.assert_allclose(result.running_var, reference.running_var, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(result.output, np.float32), reference.output, rtol=1e-2, atol=1e-2
    )  # bfloat16 keeps 8 significant bits


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_one_value_per_channel_in_training_raises_as_torch(shape):
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        TF.batch_norm(torch.ones(shape), torch.zeros(3), torch.ones(3), training=True)
    with pytest.raises(
        ValueError,
        match=rf"batch_norm: Expected more than 1 value per channel when training, "
        rf"got input size \({shape[0]}, 3",
    ):
        F.batch_norm(np.ones(shape), np.zeros(3), np.ones(3), training=True)
    # In eval the running statistics are used: one example is fine, as in torch.
    assert F.batch_norm(np.ones(shape), np.zeros(3), np.ones(3)).output.shape == shape


BAD_BATCH_NORM = {
    "channels": (
        lambda: F.batch_norm(np.ones((4, 3, 5)), np.zeros(5), np.ones(5)),
        ValueError,
        r"batch_norm: running_mean must have shape \(3,\), one value per channel of the input "
        r"\(channels on axis 1\) of shape \(4, 3, 5\), got shape \(5,\)",
    ),
    "channels-last": (
        lambda: F.batch_norm(np.ones((4, 5, 5, 3)), None, None, np.ones(3), None, True),
        ValueError,
        r"batch_norm: weight must have shape \(5,\).*\(4, 5, 5, 3\), got shape \(3,\)",
    ),
    "1d-input": (
        lambda: F.batch_norm(np.ones(4), np.zeros(4), np.ones(4)),
        ValueError,
        r"batch_norm: expected input \(N, C\), \(N, C, L\) or \(N, C, H, W\).*got shape \(4,\)",
    ),
    "mean-without-var": (
        lambda: F.batch_norm(np.ones((4, 3)), np.zeros(3), None, training=True),
        ValueError,
        "batch_norm: pass running_mean and running_var together",
    ),
    "eval-without-stats": (
        lambda: F.batch_norm(np.ones((4, 3)), None, None),
        ValueError,
        "batch_norm: training=False normalises with the running statistics, but",
    ),
    "momentum-None-without-count": (
        lambda: F.batch_norm(np.ones((4, 3)), np.zeros(3), np.ones(3), None, None, True, None),
        ValueError,
        "batch_norm: momentum=None .* needs num_batches_tracked",
    ),
    "momentum-keras": (
        lambda: F.batch_norm(np.ones((4, 3)), np.zeros(3), np.ones(3), momentum=1.5),
        ValueError,
        r"batch_norm: momentum must be in \[0, 1\] .*got 1.5",
    ),
    "momentum-nan": (
        lambda: F.batch_norm(np.ones((4, 3)), np.zeros(3), np.ones(3), momentum=float("nan")),
        ValueError,
        r"batch_norm: momentum must be in \[0, 1\]",
    ),
    "momentum-str": (
        lambda: F.batch_norm(np.ones((4, 3)), np.zeros(3), np.ones(3), momentum="0.1"),
        TypeError,
        "batch_norm: momentum must be a float or None, got str",
    ),
    "eps": (
        lambda: F.batch_norm(np.ones((4, 3)), np.zeros(3), np.ones(3), eps=-1.0),
        ValueError,
        "batch_norm: eps=-1.0 must be >= 0",
    ),
    "training-str": (
        lambda: F.batch_norm(np.ones((4, 3)), np.zeros(3), np.ones(3), training="yes"),
        TypeError,
        "batch_norm: training must be a bool, got str",
    ),
    "int-input": (
        lambda: F.batch_norm(np.ones((4, 3), np.uint8), None, None, training=True),
        TypeError,
        "batch_norm: expected a floating-point input, got dtype uint8",
    ),
    "int-running-var": (
        lambda: F.batch_norm(np.ones((4, 3)), np.zeros(3), np.ones(3, int)),
        TypeError,
        "batch_norm: expected a floating-point running_var, got dtype int",
    ),
    "float-count": (
        lambda: F.batch_norm(np.ones((4, 3)), np.zeros(3), np.ones(3), num_batches_tracked=1.0),
        TypeError,
        "batch_norm: num_batches_tracked must be an int or a 0-d integer array, got float",
    ),
}


@pytest.mark.parametrize("case", BAD_BATCH_NORM)
def test_batch_norm_bad_input_raises(case):
    call, error, match = BAD_BATCH_NORM[case]
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------- layer_norm

LAYER_NORM_CASES = {
    "int": ((4, 6), 6),
    "last": ((3, 4, 5), (5,)),
    "last-two": ((3, 4, 5), (4, 5)),
    "all": ((3, 4, 5), [3, 4, 5]),
    "images": ((2, 3, 4, 5), (3, 4, 5)),
}


@pytest.mark.parametrize("case", LAYER_NORM_CASES)
@pytest.mark.parametrize("affine", ["", "weight", "weight+bias"])
@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, F64), (np.float32, F32)])
def test_layer_norm_matches_torch(case, affine, dtype, tol):
    shape, normalized_shape = LAYER_NORM_CASES[case]
    trailing = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    rng = np.random.default_rng(9)
    x = (rng.normal(size=shape) * 3 + 2).astype(dtype)
    params = [rng.normal(size=tuple(trailing)).astype(dtype) for _ in affine.split("+") if affine]
    torch_shape = list(trailing)

    def ours(x, *params):
        return F.layer_norm(x, normalized_shape, *params, eps=1e-4)

    def theirs(x, *params):
        return TF.layer_norm(x, torch_shape, *params, eps=1e-4)

    grad_tol = tol if dtype == np.float64 else F32_GRAD
    assert_values_and_grads_match(ours, theirs, (x, *params), tol, grad_tol)


def test_layer_norm_jit_equals_eager_and_keeps_half_precision():
    x = np.random.default_rng(10).normal(size=(4, 8))
    np.testing.assert_allclose(
        jax.jit(lambda x: F.layer_norm(x, 8))(x), F.layer_norm(x, 8), rtol=1e-12
    )
    half = F.layer_norm(jnp.asarray(x, jnp.float16), (8,))
    assert half.dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(half, np.float64), F.layer_norm(x, 8), atol=5e-3)


BAD_LAYER_NORM = {
    "shape": (
        lambda: F.layer_norm(np.ones((2, 3)), 4),
        ValueError,
        r"layer_norm: for normalized_shape \(4,\) expected input of shape \(\*, 4\), "
        r"got shape \(2, 3\)",
    ),
    "too-many-dims": (
        lambda: F.layer_norm(np.ones(3), (2, 3)),
        ValueError,
        r"expected input of shape \(\*, 2, 3\), got shape \(3,\)",
    ),
    "weight": (
        lambda: F.layer_norm(np.ones((2, 3)), 3, np.ones(2)),
        ValueError,
        r"layer_norm: weight must have shape normalized_shape \(3,\), got \(2,\)",
    ),
    "bias": (
        lambda: F.layer_norm(np.ones((2, 3)), 3, None, np.ones((1, 3))),
        ValueError,
        r"layer_norm: bias must have shape normalized_shape \(3,\), got \(1, 3\)",
    ),
    "empty": (
        lambda: F.layer_norm(np.ones((2, 3)), ()),
        ValueError,
        "layer_norm: normalized_shape must have at least one dim",
    ),
    "negative": (
        lambda: F.layer_norm(np.ones((2, 3)), -3),
        ValueError,
        r"layer_norm: normalized_shape must have at least one dim, each >= 0, got \(-3,\)",
    ),
    "float": (
        lambda: F.layer_norm(np.ones((2, 3)), 3.0),
        TypeError,
        "layer_norm: normalized_shape must be an int or a sequence of ints, got 3.0",
    ),
    "bool": (
        lambda: F.layer_norm(np.ones((2, 3)), (True,)),
        TypeError,
        r"layer_norm: normalized_shape must be an int or a sequence of ints, got \(True,\)",
    ),
    "int-input": (
        lambda: F.layer_norm(np.ones((2, 3), np.int32), 3),
        TypeError,
        "layer_norm: expected a floating-point input, got dtype int32",
    ),
    "eps": (
        lambda: F.layer_norm(np.ones((2, 3)), 3, eps=float("nan")),
        ValueError,
        "layer_norm: eps=nan must be >= 0",
    ),
}


@pytest.mark.parametrize("case", BAD_LAYER_NORM)
def test_layer_norm_bad_input_raises(case):
    call, error, match = BAD_LAYER_NORM[case]
    with pytest.raises(error, match=match):
        call()


def test_torch_refuses_the_same_layer_norm_shapes():
    with pytest.raises(RuntimeError, match=r"expected input with shape \[\*, 4\]"):
        TF.layer_norm(torch.ones(2, 3), [4])
    with pytest.raises(RuntimeError, match="at least 1-dimensional"):
        TF.layer_norm(torch.ones(2, 3), [])
