"""jaxnet.datasets.transforms: on-device normalisation and augmentation with torchvision's
semantics (RandomCrop(size, padding) with zero padding, RandomHorizontalFlip(p),
Normalize(mean, std)), as pure jittable functions of (key, batch)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnet.datasets import normalize_channels, random_crop, random_horizontal_flip


def distinct_images(n, c=2, h=5, w=6):
    """Images whose every pixel is different, so each crop window is unique."""
    return jnp.arange(n * c * h * w, dtype=jnp.float32).reshape(n, c, h, w) + 1


@pytest.mark.parametrize(("size", "padding"), [(5, 0), (4, 2), ((3, 6), 1), ((7, 8), 1)])
def test_each_crop_is_a_window_of_the_zero_padded_image(size, padding):
    images = distinct_images(400)
    out = np.asarray(
        jax.jit(random_crop, static_argnums=(2, 3))(jax.random.key(1), images, size, padding)
    )
    h, w = (size, size) if isinstance(size, int) else size
    assert out.shape == (400, 2, h, w)
    # torch's F.pad with zeros, as RandomCrop(padding=...) pads
    padded = torch.nn.functional.pad(torch.from_numpy(np.array(images)), (padding,) * 4).numpy()
    rows, columns = padded.shape[2] - h + 1, padded.shape[3] - w + 1
    seen = set()
    for n in range(len(out)):
        matches = [
            (i, j)
            for i in range(rows)
            for j in range(columns)
            if np.array_equal(out[n], padded[n, :, i : i + h, j : j + w])
        ]
        assert len(matches) == 1, f"crop {n} is not one window of its padded image"
        seen.add(matches[0])
    assert seen == {(i, j) for i in range(rows) for j in range(columns)}  # every offset drawn


def test_crop_depends_only_on_the_key():
    images = distinct_images(16)
    a = random_crop(jax.random.key(3), images, 4, 2)
    np.testing.assert_array_equal(a, random_crop(jax.random.key(3), images, 4, 2))
    assert not np.array_equal(a, random_crop(jax.random.key(4), images, 4, 2))


def test_crop_without_padding_to_full_size_is_the_identity():
    images = distinct_images(3)
    np.testing.assert_array_equal(random_crop(jax.random.key(0), images, (5, 6)), images)


@pytest.mark.parametrize("p", [0.5, 0.1, 0.0, 1.0])
def test_flip_probability_within_a_binomial_bound(p):
    n = 4000
    images = distinct_images(n, c=1, h=2, w=3)
    out = np.asarray(
        jax.jit(random_horizontal_flip, static_argnums=2)(jax.random.key(7), images, p)
    )
    mirrored = np.asarray(images)[..., ::-1]
    flipped = np.array([np.array_equal(o, m) for o, m in zip(out, mirrored, strict=True)])
    kept = np.array([np.array_equal(o, x) for o, x in zip(out, np.asarray(images), strict=True)])
    assert np.all(flipped ^ kept)  # each image is itself or its mirror image, never else
    bound = 5 * math.sqrt(n * p * (1 - p))  # 5 standard deviations
    assert abs(flipped.sum() - n * p) <= bound


def test_flip_mirrors_the_last_axis_like_torch():
    images = distinct_images(2)
    out = random_horizontal_flip(jax.random.key(0), images, p=1.0)
    np.testing.assert_array_equal(out, torch.flip(torch.from_numpy(np.array(images)), [-1]))


def numpy_normalize(x, mean, std):
    """torchvision.transforms.Normalize, in NumPy: (x - mean[c]) / std[c]."""
    mean, std = np.asarray(mean, x.dtype), np.asarray(std, x.dtype)
    return (x - mean[:, None, None]) / std[:, None, None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_channels_equals_torchvision_normalize(rng, dtype):
    x = rng.uniform(0, 1, (4, 3, 5, 5)).astype(dtype)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    got = jax.jit(normalize_channels)(x, mean, std)
    assert got.dtype == dtype
    tolerance = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(got, numpy_normalize(x, mean, std), rtol=tolerance, atol=tolerance)
    grey = x[:, :1]
    np.testing.assert_allclose(
        normalize_channels(grey, [0.1307], [0.3081]),
        numpy_normalize(grey, [0.1307], [0.3081]),
        rtol=tolerance,
        atol=tolerance,
    )


def test_augmentations_run_inside_a_compiled_epoch():
    """One scanned epoch, each batch augmented from its own key."""
    batches = distinct_images(12).reshape(3, 4, 2, 5, 6)
    keys = jax.random.split(jax.random.key(0), 3)

    def step(total, key_batch):
        key, batch = key_batch
        crop_key, flip_key = jax.random.split(key)
        x = random_horizontal_flip(flip_key, random_crop(crop_key, batch, 4, 1))
        x = normalize_channels(x, (0.5, 0.5), (2.0, 2.0))
        return total + x.sum(), x

    _, out = jax.jit(functools.partial(jax.lax.scan, step))(0.0, (keys, batches))
    for k in range(3):
        crop_key, flip_key = jax.random.split(keys[k])
        expected = random_horizontal_flip(flip_key, random_crop(crop_key, batches[k], 4, 1))
        np.testing.assert_allclose(out[k], (expected - 0.5) / 2.0, rtol=1e-6)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda x: random_crop(jax.random.key(0), x, 8),
            ValueError,
            r"crop size \(8, 8\) is larger",
        ),
        (lambda x: random_crop(jax.random.key(0), x, 4, -1), ValueError, "padding=-1 must be"),
        (lambda x: random_crop(jax.random.key(0), x, 2.5), TypeError, r"size\[0\]=2.5 must be"),
        (lambda x: random_crop(jax.random.key(0), x, (2, 2, 2)), ValueError, "a pair"),
        (lambda x: random_crop(jax.random.key(0), x[0, 0], 2), ValueError, r"\(N, \.\.\., H, W\)"),
        (lambda x: random_horizontal_flip(jax.random.key(0), x, 1.5), ValueError, "probability"),
        (lambda x: normalize_channels(x, (0.5,) * 3, (1.0,) * 3), ValueError, "1 or 2 values"),
        (lambda x: normalize_channels(x, 0.5, 0.0), ValueError, "std evaluated to zero"),
        (lambda x: normalize_channels(x.astype(jnp.uint8), 0.5, 1.0), TypeError, "float images"),
    ],
)
def test_bad_arguments_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call(distinct_images(2))
