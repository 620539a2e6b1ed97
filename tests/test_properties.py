"""Property-based equivalence with torch: random MLPs, optimiser steps, state dicts,
positional encodings and every loss of ``jaxnet.nn.functional``.

Hypothesis draws the structure (depths, widths, shapes, options, dtype) and a seed for
the values, which NumPy generates; runs are derandomised, so every run checks the same
examples. Each example runs the jaxnet side as one ``jax.jit`` call (one compilation,
far cheaper than JAX's per-primitive compilations of an eager run on new shapes); batch
and loss shapes are drawn from small sets so that examples share compilations. The
jitted losses see traced targets, the path training takes.

Tolerances: float64 ``rtol=1e-12, atol=1e-12`` (a formula is checked: only the order of
summation differs); float32 ``rtol=1e-5, atol=1e-6`` for values and gradients, and
``rtol=1e-4, atol=1e-5`` for parameters after several optimiser steps, where the two
libraries' rounding differences accumulate.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_reference import closure_embedder

import jaxnet.nn.functional as F
from jaxnet import nn, optim

# Derandomised: a fixed set of examples, the same on every run; no deadline because an
# example with new shapes pays for a compilation.
PROPERTY = functools.partial(settings, derandomize=True, deadline=None, database=None)

TOL = {
    "float64": {"rtol": 1e-12, "atol": 1e-12},
    "float32": {"rtol": 1e-5, "atol": 1e-6},
}
STEP_TOL = {"float64": {"rtol": 1e-11, "atol": 1e-12}, "float32": {"rtol": 1e-4, "atol": 1e-5}}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
ACTIVATIONS = {
    "relu": (nn.ReLU, torch.nn.ReLU),
    "tanh": (nn.Tanh, torch.nn.Tanh),
    "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid),
}

dtypes = st.sampled_from(["float32", "float64"])
seeds = st.integers(0, 2**32 - 1)
batch_shapes = st.sampled_from([(), (1,), (5,), (2, 3)])  # 0 to 2 batch dims


def assert_close(actual, expected, dtype, what, tol=TOL):
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {dtype}"
    np.testing.assert_allclose(actual, np.asarray(expected), err_msg=what, **tol[dtype])


# ----------------------------------------------------------------- random MLPs


@dataclasses.dataclass(frozen=True)
class Arch:
    """``Linear(sizes[0] -> sizes[1]) -> act -> ... -> Linear(-> sizes[-1])``."""

    sizes: tuple[int, ...]
    bias: bool
    activation: str

    def jaxnet(self, dtype: str) -> nn.MLP:
        act = ACTIVATIONS[self.activation][0]
        return nn.MLP(
            self.sizes[0], self.sizes[1:-1], self.sizes[-1], act, self.bias, getattr(jnp, dtype)
        )

    def torch(self, dtype: str, seed: int) -> torch.nn.Sequential:
        torch.manual_seed(seed)
        layers = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(self.sizes)):
            if i:
                layers.append(ACTIVATIONS[self.activation][1]())
            layers.append(torch.nn.Linear(n_in, n_out, bias=self.bias))
        return torch.nn.Sequential(*layers).to(TORCH_DTYPES[dtype])


architectures = st.builds(
    Arch,
    sizes=st.integers(1, 3)
    .flatmap(lambda depth: st.lists(st.integers(1, 16), min_size=depth + 1, max_size=depth + 1))
    .map(tuple),
    bias=st.booleans(),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
)


def template(net):
    """The shapes and dtypes of ``net``'s params, without running (compiling) its init."""
    return jax.eval_shape(net.init, jax.random.key(0))


def twins(arch: Arch, dtype: str, seed: int):
    """The torch model and the jaxnet MLP holding its parameters."""
    model = arch.torch(dtype, seed)
    net = arch.jaxnet(dtype)
    return model, net, net.load_state_dict(model.state_dict()).params


@PROPERTY(max_examples=12)
@given(arch=architectures, batch=batch_shapes, dtype=dtypes, seed=seeds)
def test_mlp_forward_and_gradients_match_torch(arch, batch, dtype, seed):
    model, net, params = twins(arch, dtype, seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(*batch, arch.sizes[0])).astype(dtype)
    cotangent = rng.normal(size=(*batch, arch.sizes[-1])).astype(dtype)

    @jax.jit
    def forward_and_vjp(params, x, cotangent):
        y, vjp = jax.vjp(net.apply, params, x)
        return y, *vjp(cotangent)

    y, param_grads, x_grad = forward_and_vjp(params, x, cotangent)

    xt = torch.tensor(x, requires_grad=True)
    yt = model(xt)
    yt.backward(torch.tensor(cotangent))
    assert y.shape == tuple(yt.shape)
    assert_close(y, yt.detach().numpy(), dtype, "output")
    assert_close(x_grad, xt.grad.numpy(), dtype, "input gradient")
    grads = net.state_dict(param_grads)
    assert list(grads) == [name for name, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        assert_close(grads[name], p.grad.numpy(), dtype, f"gradient of {name}")


@dataclasses.dataclass(frozen=True)
class OptCase:
    """One optimiser with drawn hyperparameters, as jaxnet and torch build it."""

    name: str
    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    amsgrad: bool = False

    def jaxnet(self) -> optax.GradientTransformation:
        if self.name == "SGD":
            return optim.SGD(self.lr, self.momentum, 0.0, self.weight_decay, self.nesterov)
        make = optim.Adam if self.name == "Adam" else optim.AdamW
        return make(self.lr, self.betas, weight_decay=self.weight_decay, amsgrad=self.amsgrad)

    def torch(self, parameters) -> torch.optim.Optimizer:
        if self.name == "SGD":
            return torch.optim.SGD(
                parameters,
                self.lr,
                self.momentum,
                weight_decay=self.weight_decay,
                nesterov=self.nesterov,
            )
        make = torch.optim.Adam if self.name == "Adam" else torch.optim.AdamW
        return make(
            parameters, self.lr, self.betas, weight_decay=self.weight_decay, amsgrad=self.amsgrad
        )


lrs = st.sampled_from([1e-3, 1e-2, 0.1])
decays = st.sampled_from([0.0, 1e-2, 0.1])
sgd_cases = st.builds(
    lambda lr, momentum, nesterov, wd: OptCase("SGD", lr, momentum, nesterov and momentum > 0, wd),
    lrs,
    st.sampled_from([0.0, 0.5, 0.9]),
    st.booleans(),
    decays,
)
adam_cases = st.builds(
    OptCase,
    name=st.sampled_from(["Adam", "AdamW"]),
    lr=lrs,
    betas=st.sampled_from([(0.9, 0.999), (0.8, 0.99), (0.5, 0.9)]),
    weight_decay=decays,
    amsgrad=st.booleans(),
)


@PROPERTY(max_examples=10)
@given(
    arch=architectures,
    case=st.one_of(sgd_cases, adam_cases),
    steps=st.integers(3, 5),
    batch=batch_shapes,
    dtype=dtypes,
    seed=seeds,
)
def test_optimizer_steps_match_torch(arch, case, steps, batch, dtype, seed):
    model, net, params = twins(arch, dtype, seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(*batch, arch.sizes[0])).astype(dtype)
    target = rng.normal(size=(*batch, arch.sizes[-1])).astype(dtype)

    opt = case.jaxnet()

    @jax.jit
    def update(params, opt_state, x, target):
        grads = jax.grad(lambda p: F.mse_loss(net.apply(p, x), target))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = opt.init(params)
    torch_opt = case.torch(model.parameters())
    xt, target_t = torch.tensor(x), torch.tensor(target)
    for step in range(steps):
        params, opt_state = update(params, opt_state, x, target)
        torch_opt.zero_grad()
        TF.mse_loss(model(xt), target_t).backward()
        torch_opt.step()
        ours = net.state_dict(params)
        for name, value in model.state_dict().items():
            assert_close(ours[name], value.numpy(), dtype, f"{name} after step {step}", STEP_TOL)


# ----------------------------------------------------------------- state dicts

# Bit patterns a round trip could lose: -0.0, a subnormal, inf, a quiet NaN with a
# payload and a signalling NaN.
SPECIAL_BITS = {
    "float32": np.array([0x80000000, 0x00000001, 0xFF800000, 0x7FC0BEEF, 0x7F800001], np.uint32),
    "float64": np.array(
        [1 << 63, 1, 0xFFF0 << 48, 0x7FF8_0000_DEAD_BEEF, 0x7FF0_0000_0000_0001], np.uint64
    ),
}


def random_bits(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Uniformly random bit patterns of ``dtype`` (every float, NaNs included) plus specials."""
    special = SPECIAL_BITS[dtype]
    bits = rng.integers(
        0, np.iinfo(special.dtype).max, size=shape, dtype=special.dtype, endpoint=True
    )
    flat = bits.reshape(-1)
    flat[: len(special)] = special[: flat.size]
    return bits.view(dtype)


def bits_of(net: nn.Module, tree) -> dict[str, bytes]:
    return {name: np.asarray(value).tobytes() for name, value in net.state_dict(tree).items()}


@PROPERTY(max_examples=30)
@given(arch=architectures, dtype=dtypes, seed=seeds)
def test_state_dict_round_trips_are_bit_exact(arch, dtype, seed):
    rng = np.random.default_rng(seed)
    net = arch.jaxnet(dtype)
    params = jax.tree.map(lambda a: jnp.asarray(random_bits(rng, a.shape, dtype)), template(net))

    # jaxnet -> torch (strict) -> jaxnet
    model = arch.torch(dtype, seed)
    exported = net.state_dict(params)
    assert list(exported) == list(model.state_dict())  # torch's names, in torch's order
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in exported.items()}, strict=True)
    back = net.load_state_dict(model.state_dict())
    assert back.buffers == {} and back.missing_keys == back.unexpected_keys == []
    assert bits_of(net, back.params) == bits_of(net, params)

    # torch -> jaxnet -> torch (strict)
    source = arch.torch(dtype, seed)
    with torch.no_grad():
        for p in source.parameters():
            p.copy_(torch.from_numpy(random_bits(rng, tuple(p.shape), dtype)))
    loaded = net.load_state_dict(source.state_dict()).params
    target = arch.torch(dtype, seed + 1)
    target.load_state_dict(
        {k: torch.from_numpy(v.copy()) for k, v in net.state_dict(loaded).items()}, strict=True
    )
    for name, value in source.state_dict().items():
        assert target.state_dict()[name].numpy().tobytes() == value.numpy().tobytes(), name


# ----------------------------------------------------------------- positional encoding


# float32: x * 2**7 rounds to about 1e-5 absolute, which sin and cos pass on.
ENCODING_TOL = {**TOL, "float32": {"rtol": 1e-5, "atol": 2e-5}}


@PROPERTY(max_examples=20)
@given(
    in_features=st.sampled_from([1, 3, 4]),
    num_freqs=st.integers(0, 8),
    max_freq_log2=st.one_of(st.none(), st.sampled_from([0.0, 2.5, 7.0])),
    include_input=st.booleans(),
    log_sampling=st.booleans(),
    batch=batch_shapes,
    dtype=dtypes,
    seed=seeds,
)
def test_positional_encoding_matches_closure_list(
    in_features, num_freqs, max_freq_log2, include_input, log_sampling, batch, dtype, seed
):
    layer = nn.PositionalEncoding(
        in_features, num_freqs, max_freq_log2, include_input, log_sampling, getattr(jnp, dtype)
    )
    x = np.random.default_rng(seed).uniform(-1, 1, (*batch, in_features)).astype(dtype)
    out = jax.jit(layer.apply)({}, x)
    assert out.shape == (*batch, layer.out_features)
    if layer.out_features == 0:  # torch.cat refuses an empty list of encodings
        return
    embed = closure_embedder(
        num_freqs, layer.max_freq_log2, include_input, log_sampling, TORCH_DTYPES[dtype]
    )
    assert_close(out, embed(torch.tensor(x)).numpy(), dtype, "encoding", ENCODING_TOL)


# ----------------------------------------------------------------- losses

REDUCTIONS = ("none", "mean", "sum")


@functools.partial(jax.jit, static_argnames=("name", "reduction", "static"))
def loss_and_input_grad(x, target, cotangent, arrays, *, name, reduction, static):
    """``F.<name>`` and its VJP; ``arrays`` are weights, ``static`` the other options."""
    fn = lambda x: getattr(F, name)(x, target, reduction=reduction, **arrays, **dict(static))  # noqa: E731
    value, vjp = jax.vjp(fn, x)
    return value, *vjp(cotangent)


def assert_loss_matches_torch(name, x, target, reduction, **options):
    """Value of ``F.<name>`` and its input gradient (a VJP with a random cotangent)."""
    dtype = x.dtype.name
    arrays = {k: v for k, v in options.items() if isinstance(v, np.ndarray)}
    static = tuple(sorted((k, v) for k, v in options.items() if k not in arrays))
    xt = torch.tensor(x, requires_grad=True)
    expected = getattr(TF, name)(
        xt,
        torch.tensor(target),
        reduction=reduction,
        **{k: torch.tensor(v) for k, v in arrays.items()},
        **dict(static),
    )
    cotangent = np.random.default_rng(0).normal(size=expected.shape).astype(dtype)
    expected.backward(torch.tensor(cotangent))

    value, grad = loss_and_input_grad(
        x, target, cotangent, arrays, name=name, reduction=reduction, static=static
    )
    assert value.shape == tuple(expected.shape)
    assert_close(value, expected.detach().numpy(), dtype, f"{name} value")
    assert_close(grad, xt.grad.numpy(), dtype, f"{name} input gradient")


shapes = st.sampled_from([(), (1,), (6,), (3, 1), (2, 3, 4)])  # 0 to 3 dims
reductions = st.sampled_from(REDUCTIONS)


@PROPERTY(max_examples=15)
@given(
    name=st.sampled_from(["mse_loss", "l1_loss"]),
    shape=shapes,
    reduction=reductions,
    dtype=dtypes,
    seed=seeds,
)
def test_regression_losses_match_torch(name, shape, reduction, dtype, seed):
    rng = np.random.default_rng(seed)
    x, target = rng.normal(size=(2, *shape)).astype(dtype)
    assert_loss_matches_torch(name, x, target, reduction)


@dataclasses.dataclass(frozen=True)
class Classes:
    """Logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)`` and per-element label options."""

    shape: tuple[int, ...]
    weighted: bool
    ignore: str  # "none", "default" (-100) or "class" (an in-range ignore_index)

    @property
    def class_dim(self) -> int:
        return 0 if len(self.shape) == 1 else 1

    @property
    def target_shape(self) -> tuple[int, ...]:
        return self.shape[: self.class_dim] + self.shape[self.class_dim + 1 :]

    def options(self, rng: np.random.Generator, dtype: str) -> dict:
        n_classes = self.shape[self.class_dim]
        options = (
            {"weight": rng.uniform(0.2, 2.0, n_classes).astype(dtype)} if self.weighted else {}
        )
        if self.ignore == "class" and n_classes > 1:
            options["ignore_index"] = n_classes - 1
        elif self.ignore != "none":
            options["ignore_index"] = -100
        return options

    def labels(self, rng: np.random.Generator, options: dict) -> np.ndarray:
        """Class indices, about a third of them ``ignore_index`` when one is set.

        The first label always counts: a batch with every target ignored is
        :func:`test_every_target_ignored_matches_torch`.
        """
        labels = rng.integers(0, self.shape[self.class_dim], size=self.target_shape)
        if "ignore_index" in options:
            labels = np.where(rng.uniform(size=labels.shape) < 0.3, options["ignore_index"], labels)
            labels.flat[0] = 0
        return labels


class_layouts = st.builds(
    Classes,
    # (C,), (N, C) and (N, C, d1, ...), with one class or one sample among them
    shape=st.sampled_from([(1,), (5,), (1, 1), (4, 3), (2, 5, 3), (3, 2, 1, 2)]),
    weighted=st.booleans(),
    ignore=st.sampled_from(["none", "default", "class"]),
)
smoothings = st.sampled_from([0.0, 0.1, 0.5, 1.0])


@PROPERTY(max_examples=20)
@given(
    layout=class_layouts,
    label_smoothing=smoothings,
    reduction=reductions,
    dtype=dtypes,
    seed=seeds,
)
def test_cross_entropy_with_class_indices_matches_torch(
    layout, label_smoothing, reduction, dtype, seed
):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=layout.shape) * 2).astype(dtype)
    options = layout.options(rng, dtype)
    labels = layout.labels(rng, options)
    assert_loss_matches_torch(
        "cross_entropy", x, labels, reduction, label_smoothing=label_smoothing, **options
    )


@PROPERTY(max_examples=12)
@given(
    layout=class_layouts.filter(lambda c: c.ignore == "none"),
    label_smoothing=smoothings,
    reduction=reductions,
    dtype=dtypes,
    seed=seeds,
)
def test_cross_entropy_with_probabilities_matches_torch(
    layout, label_smoothing, reduction, dtype, seed
):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=layout.shape) * 2).astype(dtype)
    logits = rng.normal(size=layout.shape)
    q = np.exp(logits) / np.exp(logits).sum(axis=layout.class_dim, keepdims=True)
    assert_loss_matches_torch(
        "cross_entropy",
        x,
        q.astype(dtype),
        reduction,
        label_smoothing=label_smoothing,
        **layout.options(rng, dtype),
    )


@PROPERTY(max_examples=15)
@given(layout=class_layouts, reduction=reductions, dtype=dtypes, seed=seeds)
def test_nll_loss_matches_torch(layout, reduction, dtype, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=layout.shape)
    log_p = logits - np.log(np.exp(logits).sum(axis=layout.class_dim, keepdims=True))
    options = layout.options(rng, dtype)
    labels = layout.labels(rng, options)
    assert_loss_matches_torch("nll_loss", log_p.astype(dtype), labels, reduction, **options)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_every_target_ignored_matches_torch(name):
    """'mean' over no counted target: torch's value is 0/0 = NaN and its input gradient is 0."""
    x = np.random.default_rng(0).normal(size=(3, 4))
    assert_loss_matches_torch(name, x, np.full(3, -100), "mean")


def broadcast_shapes_of(shape: tuple[int, ...]):
    """A weight shape that broadcasts to ``shape``: absent, trailing dims, or with ones."""
    trailing = st.integers(0, len(shape)).map(lambda k: shape[len(shape) - k :])
    return st.one_of(
        st.none(),
        trailing,
        trailing.flatmap(
            lambda s: st.lists(st.booleans(), min_size=len(s), max_size=len(s)).map(
                lambda ones: tuple(1 if one else n for n, one in zip(s, ones, strict=True))
            )
        ),
    )


@st.composite
def binary_cases(draw):
    shape = draw(shapes)
    return shape, draw(broadcast_shapes_of(shape)), draw(broadcast_shapes_of(shape))


@PROPERTY(max_examples=15)
@given(case=binary_cases(), reduction=reductions, dtype=dtypes, seed=seeds)
def test_binary_cross_entropy_matches_torch(case, reduction, dtype, seed):
    shape, weight_shape, _ = case
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.02, 0.98, shape).astype(dtype)
    target = rng.uniform(size=shape).astype(dtype)
    options = {} if weight_shape is None else {"weight": rng.uniform(0.2, 2, weight_shape)}
    options = {k: v.astype(dtype) for k, v in options.items()}
    assert_loss_matches_torch("binary_cross_entropy", x, target, reduction, **options)


@PROPERTY(max_examples=15)
@given(case=binary_cases(), reduction=reductions, dtype=dtypes, seed=seeds)
def test_binary_cross_entropy_with_logits_matches_torch(case, reduction, dtype, seed):
    shape, weight_shape, pos_weight_shape = case
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * 3).astype(dtype)
    target = rng.uniform(size=shape).astype(dtype)
    options = {}
    if weight_shape is not None:
        options["weight"] = rng.uniform(0.2, 2, weight_shape).astype(dtype)
    if pos_weight_shape is not None:
        options["pos_weight"] = rng.uniform(0.5, 3, pos_weight_shape).astype(dtype)
    assert_loss_matches_torch("binary_cross_entropy_with_logits", x, target, reduction, **options)
