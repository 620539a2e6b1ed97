"""jaxnet.tensor against torch: every helper on the same inputs, and each jnp difference pinned."""

import ast
import builtins
import inspect
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnet import tensor as T

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)
INF = math.inf
SHAPES = st.sampled_from([(5,), (3, 4), (2, 3, 2)])  # few shapes: each new one compiles


def tt(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a))


def assert_same(j, t: torch.Tensor) -> None:
    """Exact agreement (shapes, integer values, selected elements)."""
    assert np.shape(j) == tuple(t.shape)
    np.testing.assert_array_equal(np.asarray(j), t.detach().numpy())


def assert_close(j, t: torch.Tensor, rtol=1e-12, atol=0.0) -> None:
    assert np.shape(j) == tuple(t.shape)
    np.testing.assert_allclose(np.asarray(j), t.detach().numpy(), rtol=rtol, atol=atol)


def assert_pieces(pieces, torch_pieces) -> None:
    assert isinstance(pieces, tuple)
    assert len(pieces) == len(torch_pieces)
    for p, q in zip(pieces, torch_pieces, strict=True):
        assert_same(p, q)


def distinct(rng, shape) -> np.ndarray:
    """float64 values without ties, so sorted positions are unambiguous."""
    return rng.permutation(math.prod(shape)).reshape(shape).astype(np.float64) - 7.5


# ----------------------------------------------------------------------------- view and squeeze


@pytest.mark.parametrize(
    ("shape", "new"),
    [((2, 3, 4), (6, 4)), ((2, 3, 4), (-1,)), ((4, 28, 28), (4, -1)), ((6,), (1, 6, 1))],
)
def test_view_matches_torch_view(rng, shape, new):
    x = rng.normal(size=shape)
    assert_same(T.view(x, *new), tt(x).view(*new))
    assert_same(T.view(x, new), tt(x).view(new))


def test_view_of_transposed_equals_torch_contiguous_view_and_reshape(rng):
    x = rng.normal(size=(2, 3))
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        tt(x).t().view(6)  # torch: no view of non-contiguous memory
    got = T.view(jnp.asarray(x).T, 6)
    assert_same(got, tt(x).t().contiguous().view(6))
    assert_same(got, tt(x).t().reshape(6))


@pytest.mark.parametrize(
    ("shape", "bad"), [((6,), (4, 2)), ((6,), (-1, -1)), ((6,), (4, -1)), ((0, 3), (0, -1))]
)
def test_view_rejects_invalid_shape(shape, bad):
    with pytest.raises(RuntimeError):
        torch.zeros(shape).view(bad)
    with pytest.raises(ValueError, match=r"view: shape .* is invalid for input of size"):
        T.view(jnp.zeros(shape, jnp.float32), *bad)


@pytest.mark.parametrize("dim", [None, 1, 0, -1, (0, 1), (1, 3), (-4, -3), ()])
def test_squeeze_matches_torch(rng, dim):
    x = rng.normal(size=(2, 1, 3, 1))
    expected = tt(x).squeeze() if dim is None else tt(x).squeeze(dim)
    assert_same(T.squeeze(x, dim), expected)


def test_squeeze_of_non_singleton_dim_is_a_no_op_where_jnp_raises(rng):
    x = rng.normal(size=(2, 3))
    with pytest.raises(ValueError):
        jnp.squeeze(jnp.asarray(x), 0)
    assert_same(T.squeeze(x, 0), tt(x).squeeze(0))
    assert_same(T.squeeze(np.float64(3.0), -1), torch.tensor(3.0, dtype=torch.float64).squeeze(-1))


def test_squeeze_rejects_dim_out_of_range():
    with pytest.raises(IndexError):
        torch.zeros(2, 1).squeeze(2)
    with pytest.raises(ValueError, match=r"squeeze: dim 2 out of range for a 2-d tensor"):
        T.squeeze(jnp.zeros((2, 1), jnp.float32), 2)


# ----------------------------------------------------------------------------- expand and repeat


@pytest.mark.parametrize(
    ("shape", "sizes"),
    [
        ((3, 1), (3, 4)),
        ((3, 1), (-1, 4)),
        ((1, 32, 1, 1), (4, 32, 28, 28)),  # a per-channel bias expanded over images
        ((32, 1, 1), (4, -1, 28, 28)),
        ((1, 3), (2, 5, -1, 3)),
        ((1,), (0,)),
        ((), (2, 3)),
    ],
)
def test_expand_matches_torch(rng, shape, sizes):
    x = rng.normal(size=shape)
    assert_same(T.expand(x, *sizes), tt(x).expand(*sizes))
    assert_same(T.expand(x, sizes), tt(x).expand(sizes))


@pytest.mark.parametrize(
    ("shape", "sizes", "message"),
    [
        ((3, 2), (3, 4), r"dim 1 has size 2 and got size 4"),
        ((3, 1), (-1, 3, 4), r"dim 0 is new and got size -1"),
        ((3, 1), (4,), r"1 sizes \(4,\) for a tensor of shape \(3, 1\); expected at least 2"),
    ],
)
def test_expand_rejects_what_torch_rejects(shape, sizes, message):
    with pytest.raises(RuntimeError):
        torch.zeros(shape).expand(*sizes)
    with pytest.raises(ValueError, match=rf"expand: .*{message}"):
        T.expand(jnp.zeros(shape, jnp.float32), *sizes)


@pytest.mark.parametrize(
    ("shape", "sizes"), [((2, 3), (2, 2)), ((2, 3), (4, 1, 1)), ((3,), (2, 1, 2)), ((2, 3), (0, 1))]
)
def test_repeat_matches_torch(rng, shape, sizes):
    x = rng.normal(size=shape)
    assert_same(T.repeat(x, *sizes), tt(x).repeat(*sizes))


def test_repeat_tiles_where_jnp_repeat_repeats_elements():
    x = np.array([1, 2, 3])
    expected = tt(x).repeat(2)  # [1, 2, 3, 1, 2, 3]
    assert np.asarray(jnp.repeat(jnp.asarray(x), 2)).tolist() == [1, 1, 2, 2, 3, 3]
    assert_same(T.repeat(x, 2), expected)
    assert_same(jnp.repeat(jnp.asarray(x), 2), torch.repeat_interleave(tt(x), 2))


@pytest.mark.parametrize("sizes", [(2,), (2, -1)])
def test_repeat_rejects_too_few_or_negative_sizes(sizes):
    with pytest.raises(RuntimeError):
        torch.zeros(2, 3).repeat(*sizes)
    with pytest.raises(ValueError, match=r"repeat: expected at least 2 non-negative sizes"):
        T.repeat(jnp.zeros((2, 3), jnp.float32), *sizes)


def test_sizes_must_be_ints():
    with pytest.raises(TypeError, match=r"expand: sizes must be ints, got \(2.0,\)"):
        T.expand(jnp.zeros((1,), jnp.float32), 2.0)


# ----------------------------------------------------------------------------- chunk and split


@pytest.mark.parametrize(
    ("shape", "chunks", "dim"),
    [
        ((10,), 4, 0),
        ((6,), 4, 0),
        ((5, 3), 5, 0),
        ((3, 7), 3, -1),
        ((2, 0, 3), 3, 1),
        ((4, 2), 7, -2),
    ],
)
def test_chunk_matches_torch(rng, shape, chunks, dim):
    x = rng.normal(size=shape)
    assert_pieces(T.chunk(x, chunks, dim), tt(x).chunk(chunks, dim))


def test_chunk_differs_from_array_split():
    x = np.arange(10)
    torch_sizes = [len(p) for p in tt(x).chunk(4)]
    assert torch_sizes == [3, 3, 3, 1]
    assert [len(p) for p in jnp.array_split(jnp.asarray(x), 4)] == [3, 3, 2, 2]
    assert [len(p) for p in T.chunk(x, 4)] == torch_sizes
    # 6 in 4 chunks: torch returns 3 pieces, array_split 4
    assert len(jnp.array_split(jnp.arange(6), 4)) == 4
    assert len(T.chunk(np.arange(6), 4)) == len(tt(np.arange(6)).chunk(4)) == 3


@pytest.mark.parametrize(
    ("shape", "split", "dim"),
    [
        ((10,), 3, 0),
        ((10,), 10, 0),
        ((10,), 20, 0),
        ((4, 6), 4, -1),
        ((4, 6), [1, 3], 0),
        ((4, 6), [0, 6, 0], 1),
        ((0, 2), 0, 0),
        ((0, 2), 5, 0),
    ],
)
def test_split_matches_torch(rng, shape, split, dim):
    x = rng.normal(size=shape)
    assert_pieces(T.split(x, split, dim), tt(x).split(split, dim))


def test_split_takes_sizes_where_jnp_split_takes_counts_and_indices():
    x = np.arange(6)
    expected = tt(x).split(2)  # pieces of size 2
    assert [len(p) for p in jnp.split(jnp.asarray(x), 2)] == [3, 3]  # 2 pieces
    assert_pieces(T.split(x, 2), expected)
    expected = tt(x).split([1, 5])  # sizes 1 and 5
    assert [len(p) for p in jnp.split(jnp.asarray(x), [1, 5])] == [1, 4, 1]  # split at 1, 5
    assert_pieces(T.split(x, [1, 5]), expected)


@PROPERTY
@given(rows=st.integers(0, 9), n=st.integers(1, 6), dim=st.sampled_from([0, -2]))
def test_chunk_and_split_property(rows, n, dim):
    x = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    assert_pieces(T.chunk(x, n, dim), tt(x).chunk(n, dim))
    assert_pieces(T.split(x, n, dim), tt(x).split(n, dim))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda x: T.split(x, [2, 3]),
            r"split: sizes \[2, 3\] must be non-negative and sum to .* 6",
        ),
        (lambda x: T.split(x, [7, -1]), r"split: sizes \[7, -1\] must be non-negative"),
        (lambda x: T.split(x, 0), r"split: split size must be positive for a dim of size 6, got 0"),
        (lambda x: T.chunk(x, 0), r"chunk: chunks must be positive, got 0"),
        (lambda x: T.chunk(x, 2, dim=1), r"chunk: dim 1 out of range for a 1-d tensor"),
    ],
)
def test_split_and_chunk_reject_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(jnp.zeros(6, jnp.float32))


def test_split_sizes_not_summing_raises_in_torch_too():
    with pytest.raises(RuntimeError, match="split_with_sizes expects split_sizes to sum exactly"):
        torch.zeros(6).split([2, 3])


# ----------------------------------------------------------------------------- gather


@pytest.mark.parametrize(
    ("shape", "index_shape", "dim"),
    [((3, 4), (3, 2), 1), ((3, 4), (5, 4), 0), ((3, 4), (2, 1), -1), ((2, 3, 4), (2, 3, 6), -1)],
)
def test_gather_matches_torch(rng, shape, index_shape, dim):
    x = rng.normal(size=shape)
    index = rng.integers(0, shape[dim], size=index_shape)
    assert_same(T.gather(x, dim, index), torch.gather(tt(x), dim, tt(index)))
    assert T.gather(x, dim, index).dtype == jnp.float64


def test_gather_gradient_accumulates_repeated_indices_like_torch(rng):
    x, index, w = rng.normal(size=(3, 4)), np.array([[0, 0, 3], [1, 1, 1]]), rng.normal(size=(2, 3))
    xt = tt(x).requires_grad_()
    (torch.gather(xt, 1, tt(index)) * tt(w)).sum().backward()
    grad = jax.grad(lambda v: jnp.sum(T.gather(v, 1, index) * w))(jnp.asarray(x))
    assert_close(grad, xt.grad)


@PROPERTY
@given(seed=st.integers(0, 2**16), shape=SHAPES)
def test_gather_property(seed, shape):
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(-len(shape), len(shape)))
    index_shape = list(shape)
    index_shape[dim] = int(rng.integers(1, 4))
    x, index = rng.normal(size=shape), rng.integers(0, shape[dim], size=index_shape)
    assert_same(T.gather(x, dim, index), torch.gather(tt(x), dim, tt(index)))


@pytest.mark.parametrize("bad", [5, -1])
def test_gather_out_of_range_raises_where_take_along_axis_does_not(bad):
    x, index = np.arange(5.0), np.array([0, bad])
    with pytest.raises(RuntimeError, match=f"index {bad} is out of bounds"):
        torch.gather(tt(x), 0, tt(index))
    silent = jnp.take_along_axis(jnp.asarray(x), jnp.asarray(index), axis=0)
    assert silent[0] == 0.0  # no error: 5 is filled with NaN, -1 wraps to the last element
    assert np.isnan(silent[1]) if bad == 5 else silent[1] == 4.0
    with pytest.raises(ValueError, match=rf"gather: index {bad} out of range for dim 0 of size 5"):
        T.gather(x, 0, index)


def test_gather_under_jit_fills_every_out_of_range_position():
    got = jax.jit(lambda i: T.gather(jnp.arange(5.0), 0, i))(jnp.array([7, -1, 2]))
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[2] == 2.0


@pytest.mark.parametrize(
    ("index", "error", "message"),
    [
        (np.zeros((3,), np.int64), ValueError, r"gather: index of shape \(3,\) must have the rank"),
        (np.zeros((4, 1), np.int64), ValueError, r"gather: index of shape \(4, 1\) .* no larger"),
        (
            np.zeros((3, 1)),
            TypeError,
            r"gather: index must be an integer tensor, got dtype float64",
        ),
    ],
)
def test_gather_rejects_bad_index(index, error, message):
    with pytest.raises(RuntimeError):
        torch.gather(torch.zeros(3, 4), 1, tt(index))
    with pytest.raises(error, match=message):
        T.gather(jnp.zeros((3, 4), jnp.float32), 1, index)


# ----------------------------------------------------------------------------- std and var


@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2), (-1, 1), ()])
@pytest.mark.parametrize("correction", [0, 1, 2])
def test_std_var_match_torch(rng, dim, correction):
    x = rng.normal(size=(3, 4, 5))
    for keepdim in (False, True):
        kwargs = {"dim": dim, "correction": correction, "keepdim": keepdim}
        assert_close(T.var(x, **kwargs), torch.var(tt(x), **kwargs))
        assert_close(T.std(x, **kwargs), torch.std(tt(x), **kwargs))


def test_std_default_correction_differs_from_jnp(rng):
    x = rng.normal(size=(8,))
    expected = torch.std(tt(x))  # unbiased: divides by N - 1
    assert not np.isclose(jnp.std(jnp.asarray(x)), expected.item(), rtol=1e-3)
    assert_close(T.std(x), expected)
    assert_close(jnp.std(jnp.asarray(x), ddof=1), expected)


def test_var_with_correction_at_least_n_is_inf_like_torch_not_nan():
    x = np.array([1.0, 2.0])
    with pytest.warns(UserWarning):
        expected = torch.var(tt(x), correction=2)
    assert expected.item() == INF
    assert np.isnan(jnp.var(jnp.asarray(x), ddof=2))
    assert_same(T.var(x, correction=2), expected)


def test_std_var_reject_integer_input():
    with pytest.raises(RuntimeError):
        torch.std(torch.arange(3))
    with pytest.raises(TypeError, match=r"std: expected a floating-point tensor .*int32"):
        T.std(jnp.arange(3, dtype=jnp.int32))


# ----------------------------------------------------------------------------- max, min, argmax


@pytest.mark.parametrize("dim", [0, 1, -1, -3])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_argmax_argmin_match_torch(rng, dim, keepdim):
    x = rng.integers(0, 4, size=(3, 4, 5)).astype(np.float64)  # many ties: first index wins
    for ours, theirs in ((T.max, torch.max), (T.min, torch.min)):
        values, indices = ours(x, dim, keepdim)
        expected = theirs(tt(x), dim, keepdim)
        assert_same(values, expected.values)
        assert_same(indices, expected.indices)
        assert indices.dtype == jnp.int32
    assert_same(T.argmax(x, dim, keepdim), torch.argmax(tt(x), dim, keepdim))
    assert_same(T.argmin(x, dim, keepdim), torch.argmin(tt(x), dim, keepdim))


def test_full_reductions_match_torch(rng):
    x = rng.normal(size=(3, 4))
    assert_same(T.max(x), torch.max(tt(x)))
    assert_same(T.min(x), torch.min(tt(x)))
    for keepdim in (False, True):
        assert_same(T.argmax(x, keepdim=keepdim), torch.argmax(tt(x), keepdim=keepdim))
        assert_same(T.argmin(x, keepdim=keepdim), torch.argmin(tt(x), keepdim=keepdim))


def test_max_with_dim_sends_the_gradient_to_one_index_like_torch():
    x = np.array([[2.0, 2.0, 1.0], [0.0, 3.0, 3.0]])
    xt = tt(x).requires_grad_()
    torch.max(xt, 1).values.sum().backward()
    assert xt.grad.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    split = jax.grad(lambda v: jnp.max(v, axis=1).sum())(jnp.asarray(x))
    assert np.asarray(split).tolist() == [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]
    assert_same(jax.grad(lambda v: T.max(v, 1).values.sum())(jnp.asarray(x)), xt.grad)
    # the full reduction splits ties evenly in both libraries
    xt.grad = None
    torch.max(xt).backward()
    assert_same(jax.grad(lambda v: T.max(v))(jnp.asarray(x)), xt.grad)


def test_max_rejects_keepdim_without_dim():
    with pytest.raises(TypeError):
        torch.max(torch.zeros(2, 3), keepdim=True)
    with pytest.raises(TypeError, match=r"max: keepdim needs a dim"):
        T.max(jnp.zeros((2, 3), jnp.float32), keepdim=True)


def test_reductions_reject_dim_out_of_range_and_non_int_dim():
    with pytest.raises(ValueError, match=r"argmax: dim -3 out of range for a 2-d tensor"):
        T.argmax(jnp.zeros((2, 3), jnp.float32), -3)
    with pytest.raises(TypeError, match=r"min: dim must be an int, got 1.0"):
        T.min(jnp.zeros((2, 3), jnp.float32), 1.0)


# ----------------------------------------------------------------------------- topk and kthvalue


@pytest.mark.parametrize(
    ("shape", "dim", "k"), [((7,), 0, 3), ((4, 6), 0, 2), ((4, 6), -1, 6), ((3, 4, 5), 1, 0)]
)
@pytest.mark.parametrize("largest", [True, False])
def test_topk_matches_torch(rng, shape, dim, k, largest):
    x = distinct(rng, shape)
    values, indices = T.topk(x, k, dim, largest)
    expected = torch.topk(tt(x), k, dim, largest)
    assert_same(values, expected.values)
    assert_same(indices, expected.indices)


@PROPERTY
@given(seed=st.integers(0, 2**16), shape=SHAPES, largest=st.booleans())
def test_topk_kthvalue_property(seed, shape, largest):
    rng = np.random.default_rng(seed)
    x, dim = distinct(rng, shape), int(rng.integers(-len(shape), len(shape)))
    k = int(rng.integers(1, shape[dim] + 1))
    assert_same(T.topk(x, k, dim, largest).indices, torch.topk(tt(x), k, dim, largest).indices)
    ours, theirs = T.kthvalue(x, k, dim, True), torch.kthvalue(tt(x), k, dim, True)
    assert_same(ours.values, theirs.values)
    assert_same(ours.indices, theirs.indices)


def test_topk_along_dim_0_where_lax_top_k_only_uses_the_last_axis(rng):
    x = distinct(rng, (5, 3))
    expected = torch.topk(tt(x), 2, dim=0)
    lax_values = jax.lax.top_k(jnp.asarray(x), 2)[0]  # top 2 of each row instead
    assert lax_values.shape != tuple(expected.values.shape)
    assert_same(T.topk(x, 2, dim=0).values, expected.values)


def test_topk_nan_counts_as_largest_like_torch():
    x = np.array([1.0, math.nan, 3.0, -1.0])
    for largest in (True, False):
        ours, theirs = T.topk(x, 3, largest=largest), torch.topk(tt(x), 3, largest=largest)
        assert_same(ours.values, theirs.values)
        assert_same(ours.indices, theirs.indices)


def test_topk_gradient_matches_torch(rng):
    x, w = distinct(rng, (3, 5)), rng.normal(size=(3, 2))
    xt = tt(x).requires_grad_()
    (torch.topk(xt, 2, dim=1, largest=False).values * tt(w)).sum().backward()
    grad = jax.grad(lambda v: jnp.sum(T.topk(v, 2, dim=1, largest=False).values * w))(
        jnp.asarray(x)
    )
    assert_same(grad, xt.grad)


@pytest.mark.parametrize(
    ("shape", "dim", "k"), [((7,), 0, 1), ((7,), -1, 7), ((4, 6), 0, 3), ((3, 4, 5), -2, 2)]
)
@pytest.mark.parametrize("keepdim", [False, True])
def test_kthvalue_matches_torch(rng, shape, dim, k, keepdim):
    x = distinct(rng, shape)
    ours, theirs = T.kthvalue(x, k, dim, keepdim), torch.kthvalue(tt(x), k, dim, keepdim)
    assert_same(ours.values, theirs.values)
    assert_same(ours.indices, theirs.indices)


def test_kthvalue_ties_give_the_lowest_index_like_torch():
    x = [2.0, 1.0, 2.0]
    assert_same(T.kthvalue(np.array(x), 2).indices, torch.kthvalue(tt(x), 2).indices)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: T.topk(x, 6), r"topk: k=6 out of range for a dim of size 5 \(expected 0..5\)"),
        (lambda x: T.topk(x, -1), r"topk: k=-1 out of range"),
        (
            lambda x: T.kthvalue(x, 0),
            r"kthvalue: k=0 out of range for a dim of size 5 \(expected 1..5\)",
        ),
        (lambda x: T.kthvalue(x, 6), r"kthvalue: k=6 out of range"),
    ],
)
def test_topk_kthvalue_reject_k_out_of_range(call, message):
    with pytest.raises(ValueError, match=message):
        call(jnp.zeros(5, jnp.float32))


def test_torch_rejects_the_same_k():
    with pytest.raises(RuntimeError):
        torch.topk(torch.zeros(5), 6)
    with pytest.raises(RuntimeError):
        torch.kthvalue(torch.zeros(5), 0)


# ----------------------------------------------------------------------------- clamp


@pytest.mark.parametrize(("lo", "hi"), [(-0.5, 0.5), (-0.5, None), (None, 0.5), (1.0, -1.0)])
def test_clamp_values_and_gradients_match_torch(rng, lo, hi):
    x = np.concatenate(
        [rng.normal(size=8), [-0.5, 0.5, math.nan]]
    )  # exactly on the bounds, and NaN
    xt = tt(x).requires_grad_()
    expected = torch.clamp(xt, lo, hi)
    expected.sum().backward()
    value, grad = jax.value_and_grad(lambda v: T.clamp(v, lo, hi).sum())(jnp.asarray(x))
    assert_same(T.clamp(x, lo, hi), expected)
    assert np.isnan(value)
    assert_same(grad, xt.grad)


def test_clamp_with_tensor_bounds_matches_torch_gradients(rng):
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 0.3])
    lo, hi = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.4]), np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.2])
    args = [tt(a).requires_grad_() for a in (x, lo, hi)]
    torch.clamp(*args).sum().backward()
    grads = jax.grad(lambda *a: T.clamp(*a).sum(), argnums=(0, 1, 2))(x, lo, hi)
    for g, a in zip(grads, args, strict=True):
        assert_same(g, a.grad)


def test_clamp_gradient_at_the_boundary_is_1_where_jnp_clip_gives_half():
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    xt = tt(x).requires_grad_()
    torch.clamp(xt, 0.0, 1.0).sum().backward()
    assert xt.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # min <= x <= max, inclusive
    clip_grad = jax.grad(lambda v: jnp.clip(v, 0.0, 1.0).sum())(jnp.asarray(x))
    assert np.asarray(clip_grad).tolist() == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert_same(jax.grad(lambda v: T.clamp(v, 0.0, 1.0).sum())(jnp.asarray(x)), xt.grad)


def test_clamp_needs_a_bound():
    with pytest.raises(RuntimeError, match="At least one of 'min' or 'max' must not be None"):
        torch.clamp(torch.zeros(2))
    with pytest.raises(ValueError, match=r"clamp: at least one of min and max must not be None"):
        T.clamp(jnp.zeros(2, jnp.float32))


# ----------------------------------------------------------------------------- norm

PS = ["fro", 1, 2, INF, -INF, 0, 0.5, 1.5, 3]


@pytest.mark.parametrize("p", PS)
def test_norm_matches_torch(rng, p):
    x = rng.normal(size=(3, 4, 5))
    x[0, 1] = 0.0  # a zero vector along the last dim, and zeros for p = 0
    dims = [None, -1, (0, 2)] + ([] if p == "fro" else [(-1, 0, 1)])
    for dim in dims:
        for keepdim in (False, True):
            expected = torch.norm(tt(x), p, dim, keepdim)
            assert_close(T.norm(x, p, dim, keepdim), expected)
            if p != "fro":
                assert_close(
                    T.norm(x, p, dim, keepdim), torch.linalg.vector_norm(tt(x), p, dim, keepdim)
                )


@pytest.mark.parametrize("p", PS)
def test_norm_gradient_matches_torch_autograd(rng, p):
    x = rng.normal(size=(4, 5))
    x[0] = 0.0  # zero norm
    x[1, :3] = [2.0, -2.0, 0.0]  # tied |max| and a zero entry
    x[1, 3:] = [1.0, 0.5]
    x[2] = [0.1, -0.1, 1.0, -2.0, 3.0]  # tied |min|
    w = rng.normal(size=(4,))
    xt = tt(x).requires_grad_()
    (torch.norm(xt, p, dim=1) * tt(w)).sum().backward()
    expected = torch.zeros_like(xt) if xt.grad is None else xt.grad  # p=0: no grad_fn

    def loss(v):
        return T.norm(v, p, dim=1) @ w

    assert_close(jax.grad(loss)(jnp.asarray(x)), expected)
    if p in (2, INF, 0.5):  # forward mode goes through the same rule
        assert_close(jax.jacfwd(loss)(jnp.asarray(x)), expected)


def test_norm_of_a_matrix_is_the_vector_norm_where_jnp_linalg_norm_takes_a_matrix_norm(rng):
    x = rng.normal(size=(3, 4))
    expected = torch.norm(tt(x), 1)  # sum of |x|
    assert not np.isclose(jnp.linalg.norm(jnp.asarray(x), ord=1), expected.item())  # max column sum
    assert_close(T.norm(x, 1), expected)


@pytest.mark.parametrize(("p", "x"), [(2, [0.0, 0.0]), (1, [0.0, 1.0])])
def test_norm_gradient_at_zero_is_torchs_where_jnp_differs(p, x):
    xt = tt(x).requires_grad_()
    torch.norm(xt, p).backward()
    assert xt.grad.tolist()[0] == 0.0
    jnp_grad = jax.grad(lambda v: jnp.linalg.vector_norm(v, ord=p))(jnp.asarray(x))
    assert np.isnan(jnp_grad[0]) if p == 2 else jnp_grad[0] == 1.0  # NaN (sqrt), or |x|' = 1
    assert_same(jax.grad(lambda v: T.norm(v, p))(jnp.asarray(x)), xt.grad)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"p": "nuc"}, ValueError, r"norm: p='nuc' with dim=None is a matrix norm"),
        ({"dim": (0, 1, 2)}, ValueError, r"norm: p='fro' with dim=\(0, 1, 2\) is a matrix norm"),
        ({"dim": (1, -2)}, ValueError, r"norm: dim \(1, -2\) names a dimension twice"),
    ],
)
def test_norm_rejects_matrix_norms_and_repeated_dims(kwargs, error, message):
    with pytest.raises(error, match=message):
        T.norm(jnp.zeros((2, 3, 4), jnp.float32), **kwargs)


def test_norm_rejects_integer_input():
    with pytest.raises(RuntimeError):
        torch.norm(torch.arange(3))
    with pytest.raises(TypeError, match=r"norm: expected a floating-point tensor"):
        T.norm(jnp.arange(3, dtype=jnp.int32))


# ----------------------------------------------------------------------------- where


def test_where_one_argument_is_nonzero_as_tuple(rng):
    cond = rng.normal(size=(3, 4)) > 0
    expected = torch.where(tt(cond))
    got = T.where(cond)
    assert_pieces(got, torch.nonzero(tt(cond), as_tuple=True))
    assert_pieces(got, expected)
    assert all(i.dtype == jnp.int32 for i in got)


def test_where_three_arguments_matches_torch(rng):
    x, y = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    assert_same(T.where(x > y, x, y), torch.where(tt(x > y), tt(x), tt(y)))


def test_where_one_argument_refuses_tracing():
    with pytest.raises(TypeError, match=r"where: where\(condition\) has a data-dependent shape"):
        jax.jit(T.where)(jnp.ones(3, bool))


def test_where_needs_both_x_and_y():
    with pytest.raises(TypeError, match=r"where: expected both x and y, or neither"):
        T.where(jnp.ones(3, bool), jnp.ones(3, jnp.float32))


# ----------------------------------------------------------------------------- jit and float32


def test_helpers_trace_under_jit_and_keep_float32(rng):
    x = rng.normal(size=(4, 6)).astype(np.float32)
    index = rng.integers(0, 6, size=(4, 3))

    def f(x, index):
        return (
            T.chunk(x, 3, 1)[0],
            T.split(x, [2, 2])[1],
            T.gather(x, 1, index),
            T.std(x, 1),
            T.topk(x, 2, 0, largest=False).values,
            T.kthvalue(x, 3, -1).values,
            T.clamp(x, -0.5, 0.5),
            T.norm(x, 3, dim=0),
            T.max(x, 1).values,
            T.expand(x[:1], 2, -1),
        )

    xt = tt(x)
    expected = (
        xt.chunk(3, 1)[0],
        xt.split([2, 2])[1],
        torch.gather(xt, 1, tt(index)),
        xt.std(1),
        xt.topk(2, 0, largest=False).values,
        xt.kthvalue(3, -1).values,
        xt.clamp(-0.5, 0.5),
        xt.norm(3, dim=0),
        xt.max(1).values,
        xt[:1].expand(2, -1),
    )
    for got, want in zip(jax.jit(f)(x, index), expected, strict=True):
        assert got.dtype == jnp.float32
        assert_close(got, want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- names


def public_functions() -> set[str]:
    return {
        name
        for name, value in vars(T).items()
        if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == T.__name__
    }


def test_torch_names_stay_public_and_the_star_import_keeps_the_builtins():
    assert {"max", "min"} <= public_functions()
    assert T.max(np.array([1.0, 3.0])) == torch.max(torch.tensor([1.0, 3.0])).item()
    shadowing = public_functions() & set(dir(builtins))
    assert shadowing == {"max", "min"}
    assert set(T.__all__) == (public_functions() - shadowing) | {"ValuesIndices"}
    namespace = {}
    exec("from jaxnet.tensor import *", namespace)
    assert set(T.__all__) <= namespace.keys()
    assert not shadowing & namespace.keys()  # max and min there are still Python's


def test_the_module_never_calls_a_builtin_through_a_shadowed_name():
    """Inside jaxnet.tensor, ``max``, ``min`` and (in a function taking torch's argument of
    that name) ``sorted`` are not Python's: no code may call them bare."""
    module_wide = public_functions() & set(dir(builtins))
    calls = []
    for function in ast.parse(Path(T.__file__).read_text()).body:
        arguments = getattr(function, "args", None)
        names = (
            {a.arg for a in ast.walk(arguments) if isinstance(a, ast.arg)} if arguments else set()
        )
        shadowed = module_wide | (names & set(dir(builtins)))
        calls += [
            (node.lineno, node.func.id)
            for node in ast.walk(function)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in shadowed
        ]
    assert calls == []
