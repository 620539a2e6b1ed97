"""The PyTorch→JAX tensor table (seed 001, lessons 14–31), run in both, with the traps and fixes.

Prints ``jaxnet.tensor.format_table()``, the JAX equivalent of every tensor operation the
course notes use (dtypes, shape/dim/numel, creation, indexing and slicing, view/reshape,
squeeze/unsqueeze, expand/repeat, transpose/permute, broadcasting, cat/stack,
split/chunk, matmul, pow/sqrt/exp/log, clamp, the reductions with ``keepdim``, topk,
kthvalue, where, gather). Then every row runs: its PyTorch expression and its JAX/jaxnet
counterpart on the same random inputs, with the largest difference per row (random
creation rows compare the mean and standard deviation of many draws, as the two
generators differ).

Then the traps: for each operation whose jnp namesake behaves differently, three columns —
PyTorch's result, the naive ``jnp`` translation's and ``jaxnet.tensor``'s helper's.

    python -m experiments.tensor_ops
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxnet.tensor as jt
from experiments import _common

# ----------------------------------------------------------------------------- the table


class Correspondence(NamedTuple):
    """One row of ``TORCH_TO_JAX``: a torch expression, its JAX equivalent, the difference."""

    torch: str
    jax: str
    note: str


_C = Correspondence
TORCH_TO_JAX: tuple[Correspondence, ...] = (
    # creation
    _C("torch.tensor([1., 2.])", "jnp.asarray([1., 2.], jnp.float32)",
       "torch infers float32/int64; jnp float32/int32, or 64-bit with x64: pass dtype"),
    _C("torch.from_numpy(a)", "jnp.asarray(a)", "copies to the device; no shared memory"),
    _C("torch.zeros(2, 3)", "jnp.zeros((2, 3), jnp.float32)", "the shape is one tuple"),
    _C("torch.ones(2, 3)", "jnp.ones((2, 3), jnp.float32)", "the shape is one tuple"),
    _C("torch.full((2, 3), 7.)", "jnp.full((2, 3), 7., jnp.float32)", "same"),
    _C("torch.eye(3)", "jnp.eye(3, dtype=jnp.float32)", "same"),
    _C("torch.arange(0, 10, 2)", "jnp.arange(0, 10, 2)", "same"),
    _C("torch.linspace(0, 1, steps=5)", "jnp.linspace(0, 1, num=5)",
       "torch requires steps; jnp's num defaults to 50"),
    _C("torch.rand(2, 3)", "jax.random.uniform(key, (2, 3))",
       "an explicit key instead of the global seed"),
    _C("torch.randn(2, 3)", "jax.random.normal(key, (2, 3))",
       "an explicit key instead of the global seed"),
    _C("torch.randint(0, 10, (3,))", "jax.random.randint(key, (3,), 0, 10)",
       "an explicit key; shape before the bounds"),
    # attributes
    _C("x.dtype, x.type()", "x.dtype", "no tensor type names like torch.FloatTensor"),
    _C("x.dim()", "x.ndim", "same"),
    _C("x.shape, x.size()", "x.shape", "a tuple, not torch.Size"),
    _C("x.numel()", "x.size", "jnp's .size is the element count, torch's size() the shape"),
    _C("x.item()", "x.item()", "same; forces a device sync"),
    # indexing
    _C("x[0, 1:3, ::2]", "x[0, 1:3, ::2]", "same; jnp also allows negative steps"),
    _C("x.index_select(0, idx)", "jnp.take(x, idx, axis=0)", "same"),
    _C("x[mask]", "x[mask]", "data-dependent shape: not under jit"),
    _C("x[idx] = v", "x = x.at[idx].set(v)", "arrays are immutable"),
    # shapes
    _C("x.view(4, -1)", "jaxnet.tensor.view(x, 4, -1)",
       "torch raises on a non-contiguous x; JAX has no strides, so view is reshape"),
    _C("x.reshape(4, -1)", "x.reshape(4, -1)", "same"),
    _C("x.squeeze(1)", "jaxnet.tensor.squeeze(x, 1)",
       "torch keeps a non-1 dim; jnp.squeeze raises"),
    _C("x.unsqueeze(1)", "jnp.expand_dims(x, 1)", "same"),
    _C("b.expand(4, -1, 28, 28)", "jaxnet.tensor.expand(b, 4, -1, 28, 28)",
       "jnp.broadcast_to has no -1"),
    _C("x.repeat(4, 1, 1)", "jaxnet.tensor.repeat(x, 4, 1, 1)",
       "= jnp.tile; jnp.repeat is torch.repeat_interleave"),
    _C("x.t()", "x.T", "torch's t() only takes up to 2 dims"),
    _C("x.transpose(1, 3)", "jnp.swapaxes(x, 1, 3)", "jnp.transpose permutes every axis"),
    _C("x.permute(0, 2, 3, 1)", "jnp.transpose(x, (0, 2, 3, 1))", "same"),
    _C("x + b  # [4, 32, 28, 28] + [32, 1, 1]", "x + b",
       "same broadcasting rules (jaxnet's tests refuse rank promotion)"),
    _C("torch.cat([a, b], dim=0)", "jnp.concatenate([a, b], axis=0)", "same"),
    _C("torch.stack([a, b], dim=0)", "jnp.stack([a, b], axis=0)", "same"),
    _C("x.split([1, 3], dim=0)", "jaxnet.tensor.split(x, [1, 3], dim=0)",
       "jnp.split takes a piece count or split indices, not sizes"),
    _C("x.chunk(4, dim=0)", "jaxnet.tensor.chunk(x, 4, dim=0)",
       "jnp.array_split: always 4 pieces of near-equal size"),
    # arithmetic
    _C("a + b, a * b, a / b, a // b", "a + b, a * b, a / b, a // b", "same"),
    _C("a @ b, torch.matmul(a, b)", "a @ b, jnp.matmul(a, b)", "same, batched too"),
    _C("x.pow(2), x ** 2", "x ** 2, jnp.power(x, 2)", "same"),
    _C("x.sqrt(), x.rsqrt()", "jnp.sqrt(x), jax.lax.rsqrt(x)", "same"),
    _C("torch.exp(x), torch.log(x)", "jnp.exp(x), jnp.log(x)", "same"),
    _C("x.floor(), x.ceil(), x.round(), x.trunc(), x.frac()",
       "jnp.floor(x), jnp.ceil(x), jnp.round(x), jnp.trunc(x), x - jnp.trunc(x)",
       "same; both round half to even"),
    _C("x.clamp(0, 10)", "jaxnet.tensor.clamp(x, 0, 10)",
       "jnp.clip's gradient at x == min or max is 0.5, torch's is 1"),
    # statistics
    _C("x.norm(1, dim=1)", "jaxnet.tensor.norm(x, 1, dim=1)",
       "jnp.linalg.norm takes matrix norms on 2-d input; gradients at 0 differ"),
    _C("x.mean(dim=1, keepdim=True)", "jnp.mean(x, axis=1, keepdims=True)",
       "same (torch needs a floating x)"),
    _C("x.sum(dim=1), x.prod(dim=1)", "jnp.sum(x, axis=1), jnp.prod(x, axis=1)", "same"),
    _C("x.max(), x.min()", "jnp.max(x), jnp.min(x)", "same"),
    _C("x.max(dim=1, keepdim=True), x.min(dim=1)",
       "jaxnet.tensor.max(x, dim=1, keepdim=True), jaxnet.tensor.min(x, dim=1)",
       "return (values, indices); jnp.max and jnp.min return values only"),
    _C("x.argmax(dim=1, keepdim=True), x.argmin(dim=1)",
       "jaxnet.tensor.argmax(x, dim=1, keepdim=True), jaxnet.tensor.argmin(x, dim=1)",
       "= jnp.argmax(x, axis=1, keepdims=True); indices int64 in torch, int32 here"),
    _C("x.std(), x.var()", "jaxnet.tensor.std(x), jaxnet.tensor.var(x)",
       "torch divides by N - 1, jnp.std and jnp.var by N"),
    _C("x.topk(3, dim=1, largest=False)", "jaxnet.tensor.topk(x, 3, dim=1, largest=False)",
       "jax.lax.top_k: last axis and largest only"),
    _C("x.kthvalue(8, dim=1)", "jaxnet.tensor.kthvalue(x, 8, dim=1)", "jnp has no kthvalue"),
    _C("torch.where(cond, a, b)", "jnp.where(cond, a, b)", "same"),
    _C("torch.where(cond)", "jaxnet.tensor.where(cond)",
       "= jnp.nonzero; a data-dependent shape, so not under jit"),
    _C("torch.gather(x, 1, idx)", "jaxnet.tensor.gather(x, 1, idx)",
       "jnp.take_along_axis wraps negative indices and fills too-large ones"),
    # conversion
    _C("x.float(), x.to(torch.float64)", "x.astype(jnp.float32), x.astype(jnp.float64)",
       "float64 needs jax_enable_x64"),
    _C("x.contiguous()", "x", "no strides in JAX: nothing to do"),
    _C("x.detach()", "jax.lax.stop_gradient(x)", "same"),
)  # fmt: skip


def format_table(rows: Sequence[Correspondence] = TORCH_TO_JAX) -> str:
    """``rows`` as a Markdown table: PyTorch | JAX | difference (no PyTorch equivalent)."""
    lines = ["| PyTorch | JAX | difference |", "|---|---|---|"]
    lines += [f"| `{r.torch}` | `{r.jax}` | {r.note} |" for r in rows]
    return "\n".join(lines)


DRAWS = 100_000  # rows of random draws for the creation rows' moments
RTOL, ATOL = 1e-5, 1e-5  # float32 rows: |jax − torch| <= ATOL + RTOL·|torch| (sums cancel)
MOMENTS_TOL = 0.02  # random rows: |Δ mean| and |Δ std| <= 0.02 σ (sampling noise ~0.003 σ)


class Check(NamedTuple):
    """How one table row runs: its inputs, the two expressions and how they are compared."""

    args: tuple[str, ...]  # names of the inputs, passed positionally to both expressions
    torch: Callable[..., Any]
    jax: Callable[..., Any]
    kind: str = "values"  # "values" (float tolerance), "exact", or "moments" of random draws


class Trap(NamedTuple):
    """An operation whose jnp namesake differs from PyTorch: the three versions side by side."""

    name: str
    inputs: tuple[np.ndarray, ...]
    torch_expr: str
    naive_expr: str
    helper_expr: str
    torch: Callable[..., Any]
    naive: Callable[..., Any]
    helper: Callable[..., Any]
    helper_is_torch: bool = True  # False: the helper cannot or should not; the note says why
    note: str = ""


class Failure(NamedTuple):
    """An expression that raised, shown in place of its result."""

    error: str
    message: str


# ------------------------------------------------------------------ inputs


def inputs(fast: bool) -> dict[str, np.ndarray]:
    """The random inputs both styles share (float32 unless integer or boolean)."""
    rng = np.random.default_rng(0)
    c, hw = (8, 5) if fast else (32, 28)  # the notes' images: [4, 32, 28, 28]

    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    away_from_zero = rng.uniform(0.5, 2.0, (5, 6)) * rng.choice([-1.0, 1.0], (5, 6))
    return {
        "img": normal(4, c, hw, hw),
        "bias4": normal(1, c, 1, 1),  # the notes' bias [32] as [1, 32, 1, 1]
        "bias3": normal(c, 1, 1),
        "a": normal(5, 6),
        "b": away_from_zero.astype(np.float32),
        "a3": normal(4, 5, 6),
        "b2": normal(6, 7),
        "m": normal(3, 5),
        "pos": rng.uniform(0.1, 4.0, (5, 6)).astype(np.float32),
        "wide": 8 * normal(5, 6),
        # halves (round half to even) and random values
        "halves": np.concatenate([np.arange(-5, 6) / 2, 3 * rng.standard_normal(13)]).astype(
            np.float32
        ),
        "loss": np.float32(rng.standard_normal()).reshape(()),
        "rows": np.array([3, 0, 2], np.int64),  # torch's index dtype
        "cols": rng.integers(0, 6, (5, 4)),
        "cond": rng.standard_normal((5, 6)) > 0,
    }


def _assign(x, idx, v):
    """torch's ``x[idx] = v`` on a copy of ``x``."""
    x = x.clone()
    x[idx] = v
    return x


def _broadcast_add(x, b):
    """``x + b`` with a rank-promoting broadcast, which jaxnet's tests otherwise refuse."""
    with jax.numpy_rank_promotion("allow"):
        return x + b


def _torch_grad(f, x):
    """``f(x).backward()`` on a leaf copy of ``x``; returns ``x.grad``."""
    x = x.clone().requires_grad_()
    f(x).backward()
    return x.grad


def checks(torch) -> dict[str, Check]:
    """One ``Check`` per row of ``jaxnet.tensor.TORCH_TO_JAX``, keyed by its torch expression.

    ``torch`` is the torch module, or None when only the JAX side runs.
    """
    key = jax.random.key(0)
    C = Check
    return {
        # creation
        "torch.tensor([1., 2.])": C((), lambda: torch.tensor([1., 2.]),
                                    lambda: jnp.asarray([1., 2.], jnp.float32), "exact"),
        "torch.from_numpy(a)": C(("a",), lambda a: torch.from_numpy(a.numpy()),
                                 lambda a: jnp.asarray(np.asarray(a)), "exact"),
        "torch.zeros(2, 3)": C((), lambda: torch.zeros(2, 3),
                               lambda: jnp.zeros((2, 3), jnp.float32), "exact"),
        "torch.ones(2, 3)": C((), lambda: torch.ones(2, 3),
                              lambda: jnp.ones((2, 3), jnp.float32), "exact"),
        "torch.full((2, 3), 7.)": C((), lambda: torch.full((2, 3), 7.),
                                    lambda: jnp.full((2, 3), 7., jnp.float32), "exact"),
        "torch.eye(3)": C((), lambda: torch.eye(3), lambda: jnp.eye(3, dtype=jnp.float32),
                          "exact"),
        "torch.arange(0, 10, 2)": C((), lambda: torch.arange(0, 10, 2),
                                    lambda: jnp.arange(0, 10, 2), "exact"),
        "torch.linspace(0, 1, steps=5)": C((), lambda: torch.linspace(0, 1, steps=5),
                                           lambda: jnp.linspace(0, 1, num=5)),
        "torch.rand(2, 3)": C((), lambda: torch.rand(DRAWS, 3),
                              lambda: jax.random.uniform(key, (DRAWS, 3)), "moments"),
        "torch.randn(2, 3)": C((), lambda: torch.randn(DRAWS, 3),
                               lambda: jax.random.normal(key, (DRAWS, 3)), "moments"),
        "torch.randint(0, 10, (3,))": C((), lambda: torch.randint(0, 10, (DRAWS,)),
                                        lambda: jax.random.randint(key, (DRAWS,), 0, 10),
                                        "moments"),
        # attributes
        "x.dtype, x.type()": C(("img",), lambda x: x.dtype, lambda x: x.dtype, "exact"),
        "x.dim()": C(("img",), lambda x: x.dim(), lambda x: x.ndim, "exact"),
        "x.shape, x.size()": C(("img",), lambda x: (x.shape, x.size()),
                               lambda x: (x.shape, x.shape), "exact"),
        "x.numel()": C(("img",), lambda x: x.numel(), lambda x: x.size, "exact"),
        "x.item()": C(("loss",), lambda x: x.item(), lambda x: x.item(), "exact"),
        # indexing
        "x[0, 1:3, ::2]": C(("img",), lambda x: x[0, 1:3, ::2], lambda x: x[0, 1:3, ::2],
                            "exact"),
        "x.index_select(0, idx)": C(("img", "rows"), lambda x, i: x.index_select(0, i),
                                    lambda x, i: jnp.take(x, i, axis=0), "exact"),
        "x[mask]": C(("a", "cond"), lambda x, mask: x[mask], lambda x, mask: x[mask], "exact"),
        "x[idx] = v": C(("img", "rows"), lambda x, i: _assign(x, i, 0.5),
                        lambda x, i: x.at[i].set(0.5), "exact"),
        # shapes
        "x.view(4, -1)": C(("img",), lambda x: x.view(4, -1), lambda x: jt.view(x, 4, -1),
                           "exact"),
        "x.reshape(4, -1)": C(("img",), lambda x: x.reshape(4, -1),
                              lambda x: x.reshape(4, -1), "exact"),
        "x.squeeze(1)": C(("img",), lambda x: x.squeeze(1), lambda x: jt.squeeze(x, 1), "exact"),
        "x.unsqueeze(1)": C(("img",), lambda x: x.unsqueeze(1), lambda x: jnp.expand_dims(x, 1),
                            "exact"),
        "b.expand(4, -1, 28, 28)": C(("bias4", "img"),
                                     lambda b, x: b.expand(4, -1, *x.shape[2:]),
                                     lambda b, x: jt.expand(b, 4, -1, *x.shape[2:]), "exact"),
        "x.repeat(4, 1, 1)": C(("m",), lambda x: x.repeat(4, 1, 1),
                               lambda x: jt.repeat(x, 4, 1, 1), "exact"),
        "x.t()": C(("m",), lambda x: x.t(), lambda x: x.T, "exact"),
        "x.transpose(1, 3)": C(("img",), lambda x: x.transpose(1, 3),
                               lambda x: jnp.swapaxes(x, 1, 3), "exact"),
        "x.permute(0, 2, 3, 1)": C(("img",), lambda x: x.permute(0, 2, 3, 1),
                                   lambda x: jnp.transpose(x, (0, 2, 3, 1)), "exact"),
        "x + b  # [4, 32, 28, 28] + [32, 1, 1]": C(("img", "bias3"), lambda x, b: x + b,
                                                   _broadcast_add),
        "torch.cat([a, b], dim=0)": C(("a", "b"), lambda a, b: torch.cat([a, b], dim=0),
                                      lambda a, b: jnp.concatenate([a, b], axis=0), "exact"),
        "torch.stack([a, b], dim=0)": C(("a", "b"), lambda a, b: torch.stack([a, b], dim=0),
                                        lambda a, b: jnp.stack([a, b], axis=0), "exact"),
        "x.split([1, 3], dim=0)": C(("img",), lambda x: x.split([1, 3], dim=0),
                                    lambda x: jt.split(x, [1, 3], dim=0), "exact"),
        "x.chunk(4, dim=0)": C(("img",), lambda x: x.chunk(4, dim=0),
                               lambda x: jt.chunk(x, 4, dim=0), "exact"),
        # arithmetic
        "a + b, a * b, a / b, a // b": C(("a", "b"), lambda a, b: (a + b, a * b, a / b, a // b),
                                         lambda a, b: (a + b, a * b, a / b, a // b)),
        "a @ b, torch.matmul(a, b)": C(("a3", "b2"), lambda a, b: (a @ b, torch.matmul(a, b)),
                                       lambda a, b: (a @ b, jnp.matmul(a, b))),
        "x.pow(2), x ** 2": C(("a",), lambda x: (x.pow(2), x**2),
                              lambda x: (x**2, jnp.power(x, 2))),
        "x.sqrt(), x.rsqrt()": C(("pos",), lambda x: (x.sqrt(), x.rsqrt()),
                                 lambda x: (jnp.sqrt(x), jax.lax.rsqrt(x))),
        "torch.exp(x), torch.log(x)": C(("pos",), lambda x: (torch.exp(x), torch.log(x)),
                                        lambda x: (jnp.exp(x), jnp.log(x))),
        "x.floor(), x.ceil(), x.round(), x.trunc(), x.frac()": C(
            ("halves",), lambda x: (x.floor(), x.ceil(), x.round(), x.trunc(), x.frac()),
            lambda x: (jnp.floor(x), jnp.ceil(x), jnp.round(x), jnp.trunc(x), x - jnp.trunc(x))),
        "x.clamp(0, 10)": C(("wide",), lambda x: x.clamp(0, 10), lambda x: jt.clamp(x, 0, 10),
                            "exact"),
        # statistics
        "x.norm(1, dim=1)": C(("img",), lambda x: x.norm(1, dim=1),
                              lambda x: jt.norm(x, 1, dim=1)),
        "x.mean(dim=1, keepdim=True)": C(("img",), lambda x: x.mean(dim=1, keepdim=True),
                                         lambda x: jnp.mean(x, axis=1, keepdims=True)),
        "x.sum(dim=1), x.prod(dim=1)": C(("img",), lambda x: (x.sum(dim=1), x.prod(dim=1)),
                                         lambda x: (jnp.sum(x, axis=1), jnp.prod(x, axis=1))),
        "x.max(), x.min()": C(("img",), lambda x: (x.max(), x.min()),
                              lambda x: (jnp.max(x), jnp.min(x)), "exact"),
        "x.max(dim=1, keepdim=True), x.min(dim=1)": C(
            ("img",), lambda x: (x.max(dim=1, keepdim=True), x.min(dim=1)),
            lambda x: (jt.max(x, dim=1, keepdim=True), jt.min(x, dim=1)), "exact"),
        "x.argmax(dim=1, keepdim=True), x.argmin(dim=1)": C(
            ("img",), lambda x: (x.argmax(dim=1, keepdim=True), x.argmin(dim=1)),
            lambda x: (jt.argmax(x, dim=1, keepdim=True), jt.argmin(x, dim=1)), "exact"),
        "x.std(), x.var()": C(("img",), lambda x: (x.std(), x.var()),
                              lambda x: (jt.std(x), jt.var(x))),
        "x.topk(3, dim=1, largest=False)": C(("img",), lambda x: x.topk(3, dim=1, largest=False),
                                             lambda x: jt.topk(x, 3, dim=1, largest=False),
                                             "exact"),
        "x.kthvalue(8, dim=1)": C(("img",), lambda x: x.kthvalue(8, dim=1),
                                  lambda x: jt.kthvalue(x, 8, dim=1), "exact"),
        "torch.where(cond, a, b)": C(("cond", "a", "b"), lambda c, a, b: torch.where(c, a, b),
                                     lambda c, a, b: jnp.where(c, a, b), "exact"),
        "torch.where(cond)": C(("cond",), lambda c: torch.where(c), lambda c: jt.where(c),
                               "exact"),
        "torch.gather(x, 1, idx)": C(("a", "cols"), lambda x, i: torch.gather(x, 1, i),
                                     lambda x, i: jt.gather(x, 1, i), "exact"),
        # conversion
        "x.float(), x.to(torch.float64)": C(
            ("a",), lambda x: (x.float(), x.to(torch.float64)),
            lambda x: (x.astype(jnp.float32), x.astype(jnp.float64)), "exact"),
        "x.contiguous()": C(("img",), lambda x: x.contiguous(), lambda x: x, "exact"),
        "x.detach()": C(("a",), lambda x: x.detach(), lambda x: jax.lax.stop_gradient(x),
                        "exact"),
    }  # fmt: skip


# ------------------------------------------------------------------ the traps


def traps(torch) -> list[Trap]:
    """The operations where the obvious jnp translation differs from PyTorch."""
    T = Trap
    x10 = np.arange(10.0, dtype=np.float32)
    x12 = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    perm = np.random.default_rng(1).permutation(12).reshape(3, 4).astype(np.float32)
    four = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    edges = np.array([-1.0, 0.0, 0.5, 1.0, 2.0], np.float32)
    mat = np.array([[1.0, -2.0], [3.0, 4.0]], np.float32)

    def grad(f):
        return jax.jit(jax.grad(f))  # one compilation instead of one per primitive

    return [
        T("chunk 10 into 4", (x10,), "torch.chunk(x, 4)", "jnp.array_split(x, 4)",
          "jt.chunk(x, 4)", lambda x: torch.chunk(x, 4), lambda x: jnp.array_split(x, 4),
          lambda x: jt.chunk(x, 4)),
        T("chunk 6 into 4", (x10[:6],), "torch.chunk(x, 4)", "jnp.array_split(x, 4)",
          "jt.chunk(x, 4)", lambda x: torch.chunk(x, 4), lambda x: jnp.array_split(x, 4),
          lambda x: jt.chunk(x, 4), note="torch returns 3 pieces, not 4"),
        T("split by sizes", (x10,), "torch.split(x, [3, 7])", "jnp.split(x, [3, 7])",
          "jt.split(x, [3, 7])", lambda x: torch.split(x, [3, 7]),
          lambda x: jnp.split(x, [3, 7]), lambda x: jt.split(x, [3, 7]),
          note="jnp reads [3, 7] as split indices"),
        T("split by one size", (x10,), "torch.split(x, 4)", "jnp.split(x, 4)",
          "jt.split(x, 4)", lambda x: torch.split(x, 4), lambda x: jnp.split(x, 4),
          lambda x: jt.split(x, 4), note="jnp reads 4 as a number of equal pieces"),
        T("gather, index smaller than x", (x12, np.array([[0, 3], [2, 1]])),
          "torch.gather(x, 1, idx)", "jnp.take_along_axis(x, idx, 1)", "jt.gather(x, 1, idx)",
          lambda x, i: torch.gather(x, 1, i), lambda x, i: jnp.take_along_axis(x, i, 1),
          lambda x, i: jt.gather(x, 1, i), note="torch reads only the first rows of x"),
        T("gather, negative index", (x12, np.array([[0, -1], [2, 1], [3, 0]])),
          "torch.gather(x, 1, idx)", "jnp.take_along_axis(x, idx, 1)", "jt.gather(x, 1, idx)",
          lambda x, i: torch.gather(x, 1, i), lambda x, i: jnp.take_along_axis(x, i, 1),
          lambda x, i: jt.gather(x, 1, i), note="jnp wraps -1 to the last column silently"),
        T("std (N - 1)", (four,), "x.std()", "jnp.std(x)", "jt.std(x)", lambda x: x.std(),
          jnp.std, jt.std, note="jnp divides by N (ddof=0)"),
        T("var (N - 1)", (four,), "x.var()", "jnp.var(x)", "jt.var(x)", lambda x: x.var(),
          jnp.var, jt.var),
        T("topk along dim 0, smallest", (perm,), "x.topk(2, dim=0, largest=False)",
          "jax.lax.top_k(x, 2)", "jt.topk(x, 2, dim=0, largest=False)",
          lambda x: x.topk(2, dim=0, largest=False), lambda x: jax.lax.top_k(x, 2),
          lambda x: jt.topk(x, 2, dim=0, largest=False),
          note="lax.top_k: last axis, largest only"),
        T("kthvalue along dim 0", (perm,), "x.kthvalue(2, dim=0)",
          "jnp.partition(x, 1, axis=0)[1]", "jt.kthvalue(x, 2, dim=0)",
          lambda x: x.kthvalue(2, dim=0), lambda x: jnp.partition(x, 1, axis=0)[1],
          lambda x: jt.kthvalue(x, 2, dim=0), note="jnp gives the values, no indices"),
        T("expand with -1", (np.ones((1, 3, 1), np.float32),), "b.expand(2, -1, 2)",
          "jnp.broadcast_to(b, (2, -1, 2))", "jt.expand(b, 2, -1, 2)",
          lambda b: b.expand(2, -1, 2), lambda b: jnp.broadcast_to(b, (2, -1, 2)),
          lambda b: jt.expand(b, 2, -1, 2)),
        T("repeat", (four[:3],), "x.repeat(2)", "jnp.repeat(x, 2)", "jt.repeat(x, 2)",
          lambda x: x.repeat(2), lambda x: jnp.repeat(x, 2), lambda x: jt.repeat(x, 2),
          note="jnp.repeat is torch.repeat_interleave; torch's repeat is jnp.tile"),
        T("squeeze a non-1 dim", (x12,), "x.squeeze(1)", "jnp.squeeze(x, 1)",
          "jt.squeeze(x, 1)", lambda x: x.squeeze(1), lambda x: jnp.squeeze(x, 1),
          lambda x: jt.squeeze(x, 1), note="torch leaves a dim of size 4 alone"),
        T("clamp(0, 1) gradient at the bounds", (edges,), "x.clamp(0, 1).sum().backward()",
          "grad(jnp.clip(x, 0, 1).sum())", "grad(jt.clamp(x, 0, 1).sum())",
          lambda x: _torch_grad(lambda x: x.clamp(0, 1).sum(), x),
          grad(lambda x: jnp.clip(x, 0, 1).sum()), grad(lambda x: jt.clamp(x, 0, 1).sum()),
          note="x = [-1, 0, 0.5, 1, 2]; jnp.clip splits the tie at 0 and 1"),
        T("norm(x, 1) of a matrix", (mat,), "x.norm(1)", "jnp.linalg.norm(x, 1)",
          "jt.norm(x, 1)", lambda x: x.norm(1), lambda x: jnp.linalg.norm(x, 1),
          lambda x: jt.norm(x, 1), note="jnp takes the matrix 1-norm (largest column sum)"),
        T("norm gradient at 0", (np.zeros(3, np.float32),), "x.norm().backward()",
          "grad(jnp.linalg.norm)(x)", "grad(jt.norm)(x)",
          lambda x: _torch_grad(lambda x: x.norm(), x), grad(jnp.linalg.norm), grad(jt.norm),
          note="sqrt's gradient at 0 is inf, times 0: NaN"),
        T("max along a dim, tied gradient", (np.array([[1.0, 3.0, 3.0]], np.float32),),
          "x.max(dim=1).values.sum().backward()", "grad(jnp.max(x, axis=1).sum())",
          "grad(jt.max(x, dim=1).values.sum())",
          lambda x: _torch_grad(lambda x: x.max(dim=1).values.sum(), x),
          grad(lambda x: jnp.max(x, axis=1).sum()),
          grad(lambda x: jt.max(x, dim=1).values.sum()),
          note="torch: all to the returned index; jnp splits among ties"),
        T("where(cond) under jit", (four > 2,), "torch.where(c)", "jax.jit(jnp.where)(c)",
          "jax.jit(jt.where)(c)", lambda c: torch.where(c), jax.jit(jnp.where),
          jax.jit(jt.where), helper_is_torch=False,
          note="a data-dependent shape cannot be traced: jt.where raises a TypeError that "
               "says so (use it eagerly, or jnp.nonzero(c, size=k))"),
        T("view of a transposed tensor", (x12[:2, :3],), "x.t().view(-1)",
          "jnp.reshape(x.T, -1)", "jt.view(x.T, -1)", lambda x: x.t().view(-1),
          lambda x: jnp.reshape(x.T, -1), lambda x: jt.view(x.T, -1), helper_is_torch=False,
          note="the trap is torch's: view needs contiguous strides; JAX has none, so view "
               "gives torch's x.t().reshape(-1)"),
    ]  # fmt: skip


# ------------------------------------------------------------------ running and comparing


def _attempt(fn, args):
    try:
        return fn(*args)
    except Exception as err:  # the traps raise on purpose; show which error, not a traceback
        return Failure(type(err).__name__, str(err).splitlines()[0])


def _leaves(result) -> list:
    """A result as a flat list of NumPy arrays, dtype names and ``Failure``s."""
    if isinstance(result, Failure):
        return [result]
    if isinstance(result, tuple | list):  # also torch.Size, NamedTuples, torch.return_types
        return [leaf for part in result for leaf in _leaves(part)]
    if isinstance(result, np.dtype):
        return [str(result)]
    if type(result).__module__ == "torch":  # a torch.Tensor or a torch.dtype
        if not hasattr(result, "numpy"):
            return [str(result).removeprefix("torch.")]
        return [result.detach().numpy()]
    return [np.asarray(result)]


def compare(torch_result, jax_result, kind: str) -> tuple[float, bool]:
    """``(largest |difference|, within tolerance)``; a difference in structure is inf.

    Values only: both sides are cast to float64 first, so dtypes are compared apart
    (``_dtypes``; ``run_rows`` reports them as ``dtypes_match``).
    """
    a_leaves, b_leaves = _leaves(torch_result), _leaves(jax_result)
    if len(a_leaves) != len(b_leaves):
        return math.inf, False
    worst, agree = 0.0, True
    for a, b in zip(a_leaves, b_leaves, strict=True):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            both_failed = isinstance(a, Failure) and isinstance(b, Failure)
            same = both_failed or (isinstance(a, str) and isinstance(b, str) and a == b)
            diff = 0.0 if same else math.inf
        elif a.shape != b.shape:
            diff, same = math.inf, False
        elif kind == "moments":
            a, b = a.astype(np.float64), b.astype(np.float64)
            diff = max(abs(a.mean() - b.mean()), abs(a.std() - b.std())) / a.std()
            same = diff <= MOMENTS_TOL
        else:
            a, b = a.astype(np.float64), b.astype(np.float64)
            gap = np.abs(a - b)
            diff = float(np.max(np.where(np.isnan(a) & np.isnan(b), 0.0, gap), initial=0.0))
            rtol, atol = (0.0, 0.0) if kind == "exact" else (RTOL, ATOL)
            same = bool(np.all(np.isclose(b, a, rtol=rtol, atol=atol, equal_nan=True)))
        worst, agree = max(worst, diff), agree and same
    return float(worst), agree


def _dtypes(result) -> list[str]:
    """Every leaf's dtype (a dtype-name leaf stands for itself, a ``Failure`` by its error)."""
    return [
        str(leaf.dtype)
        if isinstance(leaf, np.ndarray)
        else leaf.error
        if isinstance(leaf, Failure)
        else str(leaf)
        for leaf in _leaves(result)
    ]


def _show_dtypes(dtypes: list[str]) -> str:
    """The leaves' dtypes, one name when they all share it, else each leaf's in order."""
    return dtypes[0] if len(set(dtypes)) == 1 else ", ".join(dtypes)


def _show(result) -> str:
    """A result on one short line: arrays flattened to their values, errors by name."""
    parts = []
    for leaf in _leaves(result):
        if isinstance(leaf, Failure):
            message = leaf.message if len(leaf.message) <= 60 else leaf.message[:57] + "..."
            parts.append(f"{leaf.error}: {message}")
        elif isinstance(leaf, np.ndarray):
            text = np.array2string(leaf, precision=4, separator=" ", suppress_small=True)
            parts.append(" ".join(text.split()))
        else:
            parts.append(leaf)
    return " ".join(parts)


def run_rows(data: dict[str, np.ndarray], torch) -> list[dict[str, Any]]:
    """Every table row in JAX and, when ``torch`` is given, in PyTorch."""
    table = checks(torch)
    rows = []
    with warnings.catch_warnings():
        # astype(float64) without jax_enable_x64 gives float32: the row reports the dtype
        # difference (``dtypes_match``) rather than hiding it behind the warning
        warnings.filterwarnings("ignore", "Explicitly requested dtype float64")
        for row in TORCH_TO_JAX:
            check = table[row.torch]
            ours = check.jax(*(jnp.asarray(data[name]) for name in check.args))
            result = {
                "torch": row.torch,
                "inputs": _describe(data, check.args),
                "kind": check.kind,
                "jax_dtype": _show_dtypes(_dtypes(ours)),
            }
            if torch is not None:
                theirs = check.torch(*(torch.from_numpy(np.array(data[n])) for n in check.args))
                result["diff"], result["agrees"] = compare(theirs, ours, check.kind)
                result["torch_dtype"] = _show_dtypes(_dtypes(theirs))
                result["dtypes_match"] = _dtypes(theirs) == _dtypes(ours)
            rows.append(result)
    return rows


def _describe(data: dict[str, np.ndarray], names: tuple[str, ...]) -> str:
    return ", ".join(f"{n} {list(data[n].shape)}" for n in names) or "-"


def run_traps(torch) -> list[dict[str, Any]]:
    """Each trap's three results (PyTorch's only when ``torch`` is given) and how they compare."""
    found = []
    for trap in traps(torch):
        as_jax = [jnp.asarray(a) for a in trap.inputs]
        naive, helper = _attempt(trap.naive, as_jax), _attempt(trap.helper, as_jax)
        result = {
            "name": trap.name,
            "torch_expr": trap.torch_expr,
            "naive_expr": trap.naive_expr,
            "helper_expr": trap.helper_expr,
            "helper_is_torch": trap.helper_is_torch,
            "note": trap.note,
            "naive": _show(naive),
            "helper": _show(helper),
            "naive_equals_helper": compare(naive, helper, "values")[1],
        }
        if torch is not None:
            theirs = _attempt(trap.torch, [torch.from_numpy(np.array(a)) for a in trap.inputs])
            result.update(
                torch=_show(theirs),
                naive_equals_torch=compare(theirs, naive, "values")[1],
                helper_equals_torch=compare(theirs, helper, "values")[1],
            )
        found.append(result)
    return found


# ------------------------------------------------------------------ printing


def rows_table(rows: list[dict[str, Any]]) -> str:
    """The agreement table (Markdown); without PyTorch, the JAX side's dtypes only."""
    with_torch = "diff" in rows[0]
    if with_torch:
        lines = [
            "| PyTorch | inputs | compared | torch dtype | JAX dtype | max abs diff | agrees |",
            "|---|---|---|---|---|---|---|",
        ]
    else:
        lines = ["| PyTorch | inputs | JAX dtype |", "|---|---|---|"]
    compared = {
        "values": "values",
        "exact": "values, exactly",
        "moments": f"mean, std of {DRAWS:,} draws (÷σ)",
    }
    for r in rows:
        if with_torch:
            verdict = "yes" if r["agrees"] else "NO"
            if not r["dtypes_match"]:
                verdict = ("values yes" if r["agrees"] else "NO") + ", dtype differs"
            lines.append(
                f"| `{r['torch']}` | {r['inputs']} | {compared[r['kind']]} | "
                f"{r['torch_dtype']} | {r['jax_dtype']} | {r['diff']:.2e} | {verdict} |"
            )
        else:
            lines.append(f"| `{r['torch']}` | {r['inputs']} | {r['jax_dtype']} |")
    return "\n".join(lines)


def traps_table(found: list[dict[str, Any]]) -> str:
    """Per trap, a row of expressions and a row of results (= / ≠: equal to PyTorch's)."""
    lines = ["| trap | PyTorch | naive jnp | jaxnet.tensor (jt) |", "|---|---|---|---|"]
    for t in found:
        lines.append(
            f"| {t['name']} | `{t['torch_expr']}` | `{t['naive_expr']}` | `{t['helper_expr']}` |"
        )
        if "torch" in t:
            naive_mark = "=" if t["naive_equals_torch"] else "≠"
            helper_mark = "=" if t["helper_equals_torch"] else "≠"
            lines.append(
                f"| {t['note']} | {t['torch']} | {naive_mark} {t['naive']} | "
                f"{helper_mark} {t['helper']} |"
            )
        else:
            lines.append(f"| {t['note']} | - | {t['naive']} | {t['helper']} |")
    return "\n".join(lines)


def run(*, fast: bool = False, out: Path | None = None, with_torch: bool = True) -> dict[str, Any]:
    """Print the mapping, run it in both styles, show the traps; returns the figures."""
    out = _common.output_dir(out, "tensor_ops")
    torch = None
    if with_torch:
        import torch

        torch.manual_seed(0)
    data = inputs(fast)
    rows, found = run_rows(data, torch), run_traps(torch)
    rows_title = "Every row run in JAX"
    if with_torch:
        rows_title = (
            "Every row run in both on the same inputs "
            f"(float32 rows agree when |Δ| <= {ATOL:g} + {RTOL:g}·|torch|; values are "
            "compared in float64 and dtypes apart: JAX defaults to float32 and int32 "
            "without jax_enable_x64 and keeps float32 even where float64 is asked for, "
            "to float64 and int64 with it; torch to float32 and int64)"
        )
    sections = [
        ("The PyTorch→JAX table (jaxnet.tensor.TORCH_TO_JAX)", format_table()),
        (rows_title, rows_table(rows)),
        ("Where the jnp namesake differs: PyTorch, naive jnp, jaxnet.tensor", traps_table(found)),
    ]
    text = "\n\n".join(f"## {title}\n\n{body}" for title, body in sections)
    print(text)
    report: dict[str, Any] = {
        "rows": [r["torch"] for r in rows],
        "traps": {
            t["name"]: {k: t[k] for k in ("naive", "helper", "naive_equals_helper")} for t in found
        },
    }
    if with_torch:
        report["torch_row_diff"] = {r["torch"]: r["diff"] for r in rows}
        report["torch_row_agrees"] = {r["torch"]: r["agrees"] for r in rows}
        report["torch_row_dtypes_match"] = {r["torch"]: r["dtypes_match"] for r in rows}
        report["torch_traps"] = {
            t["name"]: {
                k: t[k]
                for k in ("torch", "naive_equals_torch", "helper_equals_torch", "helper_is_torch")
            }
            for t in found
        }
        bad = [r["torch"] for r in rows if not r["agrees"]]
        other_dtype = [r["torch"] for r in rows if not r["dtypes_match"]]
        print(
            f"\n{len(rows) - len(bad)} of {len(rows)} rows agree in values"
            + (f"; differing: {bad}" if bad else "")
            + (f"\n{len(other_dtype)} rows differ in dtype: {other_dtype}" if other_dtype else "")
        )
    report["markdown"] = str(out / "tensor_ops.md")
    Path(report["markdown"]).write_text(text + "\n")
    print(f"tables {report['markdown']}")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _common.parser(__doc__, fast="small inputs (for CI)").parse_args(argv)
    return run(fast=args.fast, out=args.out, with_torch=not args.no_torch)


if __name__ == "__main__":
    main()
