"""The calling rule of jaxnet.nn: a loss layer is called like torch's, ``loss(input, target)``;
every other layer runs through ``apply(params, x)`` (or ``layer(scope, x)`` inside a parent's
forward), and torch's ``layer(x)`` raises a TypeError that names ``apply``."""

import inspect
import re

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxnet import nn
from jaxnet.nn import loss

# One construction of every nn.Module exported from jaxnet.nn.
LAYERS = {
    "Module": lambda: nn.Module(),
    "ELU": lambda: nn.ELU(),
    "GELU": lambda: nn.GELU(),
    "LeakyReLU": lambda: nn.LeakyReLU(),
    "LogSoftmax": lambda: nn.LogSoftmax(dim=1),
    "ReLU": lambda: nn.ReLU(),
    "Sigmoid": lambda: nn.Sigmoid(),
    "SiLU": lambda: nn.SiLU(),
    "Softmax": lambda: nn.Softmax(dim=1),
    "Tanh": lambda: nn.Tanh(),
    "MLP": lambda: nn.MLP(4, [8], 2),
    "Sequential": lambda: nn.Sequential(nn.Linear(4, 2), nn.ReLU()),
    "ModuleList": lambda: nn.ModuleList([nn.Linear(4, 2)]),
    "ModuleDict": lambda: nn.ModuleDict({"out": nn.Linear(4, 2)}),
    "Conv1d": lambda: nn.Conv1d(1, 2, 3),
    "Conv2d": lambda: nn.Conv2d(1, 2, 3),
    "ConvTranspose2d": lambda: nn.ConvTranspose2d(1, 2, 3),
    "Dropout": lambda: nn.Dropout(),
    "Dropout2d": lambda: nn.Dropout2d(),
    "PositionalEncoding": lambda: nn.PositionalEncoding(4, 2),
    "Flatten": lambda: nn.Flatten(),
    "Identity": lambda: nn.Identity(),
    "Lambda": lambda: nn.Lambda(jnp.tanh),
    "Linear": lambda: nn.Linear(4, 2),
    "BatchNorm1d": lambda: nn.BatchNorm1d(4),
    "BatchNorm2d": lambda: nn.BatchNorm2d(4),
    "LayerNorm": lambda: nn.LayerNorm(4),
    "AdaptiveAvgPool2d": lambda: nn.AdaptiveAvgPool2d(1),
    "AdaptiveMaxPool2d": lambda: nn.AdaptiveMaxPool2d(1),
    "AvgPool2d": lambda: nn.AvgPool2d(2),
    "MaxPool2d": lambda: nn.MaxPool2d(2),
    "Unflatten": lambda: nn.Unflatten(1, (2, 2)),
    "ZeroPad2d": lambda: nn.ZeroPad2d(1),
}

# Inputs of every loss layer exported from jaxnet.nn: (input, target), float64.
_RNG = np.random.default_rng(0)
_LOGITS = _RNG.normal(size=(4, 3))
_PROBABILITIES = 1 / (1 + np.exp(-_LOGITS))
_BINARY = (_RNG.random((4, 3)) < 0.5).astype(np.float64)
_LABELS = np.array([0, 2, 1, 2])
LOSSES = {
    "MSELoss": (_LOGITS, _PROBABILITIES),
    "L1Loss": (_LOGITS, _PROBABILITIES),
    "CrossEntropyLoss": (_LOGITS, _LABELS),
    "NLLLoss": (_LOGITS - np.log(np.exp(_LOGITS).sum(1, keepdims=True)), _LABELS),
    "BCELoss": (_PROBABILITIES, _BINARY),
    "BCEWithLogitsLoss": (_LOGITS, _BINARY),
}


def exported_classes(base: type) -> set[str]:
    return {
        name
        for name, value in vars(nn).items()
        if inspect.isclass(value) and issubclass(value, base)
    }


def test_every_exported_class_is_a_layer_a_loss_or_a_declaration():
    layers, losses = exported_classes(nn.Module), exported_classes(loss._Loss)
    assert layers == LAYERS.keys()
    assert losses == LOSSES.keys()
    others = {n for n, v in vars(nn).items() if inspect.isclass(v)} - layers - losses
    assert others == {"Parameter", "Buffer", "Scope"}  # declarations and forward's view


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_layer_called_like_torch_names_apply(name):
    layer = LAYERS[name]()
    x = jnp.zeros((2, 4))
    prefix = re.escape(f"{layer.short_name()}: run a layer on its own with .apply(params, x)")
    with pytest.raises(TypeError, match=prefix + r".*Got ArrayImpl of shape \(2, 4\) as the"):
        layer(x)
    with pytest.raises(TypeError, match=prefix + r".*Got dict as the first argument"):
        layer({}, x)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_loss_layer_is_called_like_torch(name):
    input, target = LOSSES[name]
    expected = getattr(torch.nn, name)()(torch.from_numpy(input), torch.from_numpy(target))
    result = getattr(nn, name)()(jnp.asarray(input), jnp.asarray(target))
    np.testing.assert_allclose(result, expected.numpy(), rtol=1e-12, atol=1e-14)
