"""Conv, pooling and image layers against torch.nn: state dicts, outputs, gradients, init,
buffers of a CNN with BatchNorm2d, and errors that name the layer."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnet import nn

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 1e-5, "atol": 1e-5}

LAYERS = {
    "conv1d": (
        lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1, dtype=jnp.float64),
        lambda: torch.nn.Conv1d(4, 6, 3, stride=2, padding=1),
        (2, 4, 9),
    ),
    "conv2d-same-even": (
        lambda: nn.Conv2d(4, 6, (2, 4), padding="same", dilation=(1, 2), dtype=jnp.float64),
        lambda: torch.nn.Conv2d(4, 6, (2, 4), padding="same", dilation=(1, 2)),
        (2, 4, 7, 9),
    ),
    "conv2d-depthwise-reflect": (
        lambda: nn.Conv2d(4, 8, 3, groups=4, padding=1, padding_mode="reflect", dtype=jnp.float64),
        lambda: torch.nn.Conv2d(4, 8, 3, groups=4, padding=1, padding_mode="reflect"),
        (2, 4, 6, 6),
    ),
    "conv2d-circular-nobias": (
        lambda: nn.Conv2d(
            3, 5, 3, padding=2, padding_mode="circular", bias=False, dtype=jnp.float64
        ),
        lambda: torch.nn.Conv2d(3, 5, 3, padding=2, padding_mode="circular", bias=False),
        (1, 3, 5, 6),
    ),
    "conv-transpose2d": (
        lambda: nn.ConvTranspose2d(
            4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dtype=jnp.float64
        ),
        lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        (2, 4, 5, 5),
    ),
    "maxpool-ceil": (
        lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        lambda: torch.nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        (2, 3, 8, 7),
    ),
    "avgpool": (
        lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        lambda: torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        (2, 3, 8, 7),
    ),
    "adaptive-avg": (
        lambda: nn.AdaptiveAvgPool2d((3, 5)),
        lambda: torch.nn.AdaptiveAvgPool2d((3, 5)),
        (2, 3, 7, 8),
    ),
    "adaptive-max": (
        lambda: nn.AdaptiveMaxPool2d(3),
        lambda: torch.nn.AdaptiveMaxPool2d(3),
        (2, 3, 7, 8),
    ),
    "zeropad": (
        lambda: nn.ZeroPad2d((1, 0, 2, 3)),
        lambda: torch.nn.ZeroPad2d((1, 0, 2, 3)),
        (2, 3, 4, 4),
    ),
    "unflatten": (
        lambda: nn.Unflatten(1, (2, 6)),
        lambda: torch.nn.Unflatten(1, (2, 6)),
        (3, 12, 2),
    ),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_forward_and_grads_equal_torch(name, rng):
    make_ours, make_theirs, shape = LAYERS[name]
    ours, theirs = make_ours(), make_theirs().double()
    params = ours.load_state_dict(theirs.state_dict()).params
    assert [n for n, _ in ours.named_parameters(params)] == [
        n for n, _ in theirs.named_parameters()
    ]
    x = rng.standard_normal(shape)
    tx = torch.from_numpy(x).requires_grad_()
    t_y = theirs(tx)
    w = rng.standard_normal(tuple(t_y.shape))
    (t_y * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(ours.apply(params, x), t_y.detach().numpy(), **F64)
    np.testing.assert_allclose(jax.jit(ours.apply)(params, x), t_y.detach().numpy(), **F64)
    gp, gx = jax.grad(lambda p, x: (ours.apply(p, x) * w).sum(), argnums=(0, 1))(params, x)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **F64)
    for n, p in theirs.named_parameters():
        np.testing.assert_allclose(dict(ours.named_parameters(gp))[n], p.grad.numpy(), **F64)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (nn.Conv2d(6, 12, (3, 5), groups=3), torch.nn.Conv2d(6, 12, (3, 5), groups=3)),
        (nn.Conv1d(4, 8, 7), torch.nn.Conv1d(4, 8, 7)),
        (nn.ConvTranspose2d(6, 4, 3, groups=2), torch.nn.ConvTranspose2d(6, 4, 3, groups=2)),
    ],
)
def test_default_init_is_torch_kaiming_uniform_and_bias_bound(ours, theirs):
    params = ours.init(jax.random.key(0))
    weight = theirs.weight.detach().numpy()
    assert params["weight"].shape == weight.shape and params["bias"].shape == tuple(
        theirs.bias.shape
    )
    fan_in = weight.shape[1] * math.prod(weight.shape[2:])  # in / groups * kernel
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) and torch's bias rule
    for name in ("weight", "bias"):
        ours_values = np.asarray(params[name])
        theirs_values = getattr(theirs, name).detach().numpy()
        assert np.abs(ours_values).max() <= bound and np.abs(theirs_values).max() <= bound
    np.testing.assert_allclose(np.asarray(params["weight"]).std(), bound / math.sqrt(3), rtol=0.15)


def lenet_bn_pair(dropout: bool):
    """d2l's LeNet with BatchNorm2d (and Dropout before the classifier), in both styles."""
    drop, t_drop = ([nn.Dropout(0.5)], [torch.nn.Dropout(0.5)]) if dropout else ([], [])
    ours = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), *drop, nn.Linear(120, 10),
    )  # fmt: skip
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(6, 16, 5), torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(400, 120),
        torch.nn.ReLU(), *t_drop, torch.nn.Linear(120, 10),
    )  # fmt: skip
    return ours, theirs


def test_cnn_with_batchnorm2d_and_dropout_state_dict_round_trip():
    ours, theirs = lenet_bn_pair(dropout=True)
    theirs.train()
    theirs(torch.randn(8, 1, 28, 28))  # running statistics moved away from their init
    loaded = ours.load_state_dict(theirs.state_dict())
    sd = ours.state_dict(loaded.params, loaded.buffers)
    assert list(sd) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(sd[key], value.numpy())
    fresh = lenet_bn_pair(dropout=True)[1]
    fresh.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)


def test_cnn_training_pass_equals_torch_outputs_grads_and_buffers(rng):
    ours, theirs = lenet_bn_pair(dropout=False)
    loaded = ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    theirs.train()
    t_loss = theirs(torch.from_numpy(x)).square().mean()
    t_loss.backward()

    def loss_fn(params, buffers):
        y, buffers = ours.apply(params, x, buffers=buffers)
        return jnp.mean(y**2), buffers

    (loss, buffers), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        loaded.params, loaded.buffers
    )
    np.testing.assert_allclose(loss, t_loss.item(), **F32)
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(
            dict(ours.named_parameters(grads))[name], p.grad.numpy(), rtol=1e-4, atol=1e-6
        )
    sd = ours.state_dict(loaded.params, buffers)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(sd[key], value.numpy(), **F32)


def test_channels_last_input_is_named_with_the_permute():
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(
        ValueError,
        match=r"^Conv2d\(3 -> 8, 3x3\): conv2d expected input \(N, C, H, W\) with C=3 channels, "
        r"got shape \(2, 32, 32, 3\); the channels look last: reorder them with "
        r"x\.transpose\(0, 3, 1, 2\) \(torch: x\.permute\(0, 3, 1, 2\)\)",
    ):
        conv.apply(conv.init(jax.random.key(0)), jnp.zeros((2, 32, 32, 3)))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: nn.Conv2d(3, 8, 3, padding="full"), r"padding must be 'same', 'valid' or ints"),
        (lambda: nn.Conv2d(3, 8, 3, padding_mode="mirror"), r"padding_mode must be one of"),
        (lambda: nn.Conv2d(3, 8, 3, groups=2), r"groups=2 must divide in_channels=3"),
        (lambda: nn.Conv2d(4, 6, 3, groups=4), r"groups=4 must divide out_channels=6"),
        (lambda: nn.Conv2d(3, 8, 3, stride=2, padding="same"), r"padding='same' is not supported"),
    ],
)
def test_bad_configurations_are_refused_as_torch_refuses_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_kernel_larger_than_padded_input_is_refused():
    conv = nn.Conv2d(1, 1, 5)
    with pytest.raises(ValueError, match=r"^Conv2d\(1 -> 1, 5x5\): .*kernel"):
        conv.apply(conv.init(jax.random.key(0)), jnp.zeros((1, 1, 3, 3)))


def test_dropout2d_zeroes_whole_channels():
    layer = nn.Dropout2d(0.5)
    y = layer.apply({}, jnp.ones((4, 16, 3, 3)), key=jax.random.key(0))
    per_channel = np.asarray(y).reshape(4, 16, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))
    np.testing.assert_array_equal(layer.apply({}, jnp.ones((1, 2, 2, 2)), training=False), 1.0)
