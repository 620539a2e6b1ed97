"""jaxnet.nn.functional.one_hot against torch.nn.functional.one_hot: values, shapes, the
integer dtype, num_classes=-1 and the errors."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxnet.nn.functional as F


@pytest.mark.parametrize("shape", [(5,), (2, 3), ()])
@pytest.mark.parametrize("num_classes", [10, -1])
def test_one_hot_matches_torch(rng, shape, num_classes):
    labels = rng.integers(0, 10, shape)
    expected = TF.one_hot(torch.from_numpy(np.asarray(labels, np.int64)), num_classes).numpy()
    result = F.one_hot(labels, num_classes)
    assert result.dtype == jnp.int64 == expected.dtype  # the tests run with jax_enable_x64
    np.testing.assert_array_equal(result, expected)


def test_one_hot_defaults_like_torch():
    labels = np.array([2, 0, 4, 4], np.int64)
    expected = TF.one_hot(torch.from_numpy(labels)).numpy()  # num_classes=-1: 5 classes
    assert expected.shape == (4, 5)
    np.testing.assert_array_equal(F.one_hot(labels), expected)


def test_one_hot_is_jax_default_int_without_x64():
    with jax.enable_x64(False):
        result = F.one_hot(np.array([1, 0]), 3)
    assert result.dtype == jnp.int32
    np.testing.assert_array_equal(result, [[0, 1, 0], [1, 0, 0]])


def test_one_hot_under_jit_and_other_integer_dtypes():
    labels = np.array([3, 0, 9, 9, 1], np.uint8)  # torch takes only int64 labels
    expected = TF.one_hot(torch.from_numpy(labels).long(), 10).numpy()
    np.testing.assert_array_equal(F.one_hot(labels, 10), expected)
    np.testing.assert_array_equal(jax.jit(F.one_hot, static_argnums=1)(labels, 10), expected)
    np.testing.assert_array_equal(F.one_hot(labels, jnp.int32(10)), expected)  # a 0-d int


def test_one_hot_refuses_labels_out_of_range_like_torch():
    for labels in ([0, 10], [-1, 3]):
        with pytest.raises(RuntimeError, match="Class values must be"):
            TF.one_hot(torch.tensor(labels), 10)
    with pytest.raises(
        ValueError, match=re.escape("one_hot expected labels in 0..9, got values in 0..10")
    ):
        F.one_hot(np.array([0, 10]), 10)
    with pytest.raises(
        ValueError, match=re.escape("one_hot expected labels in 0..9, got values in -1..3")
    ):
        F.one_hot(np.array([-1, 3]), 10)


def test_one_hot_refuses_float_labels_like_torch():
    with pytest.raises(RuntimeError):
        TF.one_hot(torch.zeros(3), 10)
    with pytest.raises(TypeError, match="one_hot expected integer labels, got float32"):
        F.one_hot(np.zeros(3, np.float32), 10)


def test_one_hot_inferred_classes_need_concrete_non_empty_labels():
    with pytest.raises(RuntimeError, match="Can not infer total number of classes"):
        TF.one_hot(torch.zeros(0, dtype=torch.int64), -1)
    with pytest.raises(ValueError, match="one_hot: num_classes=-1 cannot infer the class count"):
        F.one_hot(np.zeros(0, np.int64), -1)
    with pytest.raises(ValueError, match=r"num_classes=-1 .* unknown under jax.jit; pass"):
        jax.jit(F.one_hot)(np.array([0, 1]))


@pytest.mark.parametrize(
    ("num_classes", "error", "match"),
    [
        (0, ValueError, "one_hot: num_classes must be positive, or -1 to infer it from the "
         "labels, got 0"),
        (-2, ValueError, "or -1 to infer it from the labels, got -2"),
        (2.0, TypeError, "one_hot: num_classes must be an int, got float"),
        (True, TypeError, "one_hot: num_classes must be an int, got bool"),
    ],
)  # fmt: skip
def test_one_hot_refuses_bad_num_classes_like_torch(num_classes, error, match):
    labels = np.array([0, 1, 1])
    with pytest.raises(error, match=re.escape(match)):
        F.one_hot(labels, num_classes)
    with pytest.raises((RuntimeError, TypeError)):  # torch refuses them too
        TF.one_hot(torch.from_numpy(labels), num_classes)
