"""jaxnet.nn.loss layers against their functional forms and torch.nn's loss modules."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxnet.nn.functional as F
from jaxnet.nn import loss as L

LAYERS = {
    "MSELoss": (L.MSELoss, F.mse_loss),
    "L1Loss": (L.L1Loss, F.l1_loss),
    "CrossEntropyLoss": (L.CrossEntropyLoss, F.cross_entropy),
    "NLLLoss": (L.NLLLoss, F.nll_loss),
    "BCELoss": (L.BCELoss, F.binary_cross_entropy),
    "BCEWithLogitsLoss": (L.BCEWithLogitsLoss, F.binary_cross_entropy_with_logits),
}


def layer_cases():
    """``id: (class name, input, target, constructor kwargs)``, float64, seeded."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5))
    probs = rng.uniform(0.05, 0.95, size=(6, 5))
    labels = rng.integers(0, 5, size=6)
    labels[::3] = 2
    weight = rng.uniform(0.5, 2.0, size=5)
    return {
        "mse": ("MSELoss", x, rng.normal(size=(6, 5)), {}),
        "mse-sum": ("MSELoss", x, rng.normal(size=(6, 5)), {"reduction": "sum"}),
        "l1-none": ("L1Loss", x, rng.normal(size=(6, 5)), {"reduction": "none"}),
        "ce-options": (
            "CrossEntropyLoss",
            x,
            labels,
            {"weight": weight, "ignore_index": 2, "label_smoothing": 0.2},
        ),
        "ce-probs": ("CrossEntropyLoss", x, probs / probs.sum(1, keepdims=True), {}),
        "nll-sum": ("NLLLoss", np.log(probs), labels, {"weight": weight, "reduction": "sum"}),
        "bce": ("BCELoss", probs, rng.uniform(size=(6, 5)), {"weight": weight}),
        "bce-logits": (
            "BCEWithLogitsLoss",
            x,
            rng.uniform(size=(6, 5)),
            {"pos_weight": weight, "reduction": "none"},
        ),
    }


CASES = layer_cases()


def torch_kwargs(kwargs):
    return {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("case", CASES)
def test_layer_equals_functional_and_torch(case):
    name, x, target, kwargs = CASES[case]
    layer_cls, function = LAYERS[name]
    criterion = layer_cls(**kwargs)
    value = criterion(x, target)
    np.testing.assert_array_equal(value, function(x, target, **kwargs))

    v = np.random.default_rng(1).normal(size=np.shape(value))
    grad = jax.grad(lambda x: jnp.sum(criterion(x, target) * v))(x)
    xt = torch.tensor(x, requires_grad=True)
    torch_value = getattr(torch.nn, name)(**torch_kwargs(kwargs))(xt, torch.tensor(target))
    torch_value.backward(torch.tensor(v))
    np.testing.assert_allclose(value, torch_value.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_layers_work_under_jit():
    criteria = {case: LAYERS[name][0](**kwargs) for case, (name, _, _, kwargs) in CASES.items()}
    inputs = {case: (x, target) for case, (_, x, target, _) in CASES.items()}
    jitted = jax.jit(lambda inputs: {case: criteria[case](*inputs[case]) for case in CASES})
    for case, value in jitted(inputs).items():
        np.testing.assert_allclose(value, criteria[case](*inputs[case]), rtol=1e-12, err_msg=case)


@pytest.mark.parametrize("name", LAYERS)
def test_arguments_and_defaults_are_torchs(name):
    layer_cls, _ = LAYERS[name]
    torch_params = inspect.signature(getattr(torch.nn, name)).parameters
    torch_defaults = {
        key: p.default for key, p in torch_params.items() if key not in ("size_average", "reduce")
    }
    ours = {key: p.default for key, p in layer_cls._signature.parameters.items()}
    assert ours == torch_defaults
    # The hyperparameters are attributes with torch's names and default values.
    criterion, torch_criterion = layer_cls(), getattr(torch.nn, name)()
    for key in ours:
        assert getattr(criterion, key) == getattr(torch_criterion, key), key
    assert repr(criterion) == repr(torch_criterion) == f"{name}()"


@pytest.mark.parametrize("name", [n for n in LAYERS if n not in ("MSELoss", "L1Loss")])
def test_weight_is_positional_as_in_torch(name):
    layer_cls, _ = LAYERS[name]
    weight = np.linspace(0.5, 2.0, 5)
    assert layer_cls(weight).weight is weight
    assert torch.equal(getattr(torch.nn, name)(torch.tensor(weight)).weight, torch.tensor(weight))


@pytest.mark.parametrize("name", ["MSELoss", "L1Loss"])
def test_functional_only_weight_is_not_a_layer_option_as_in_torch(name):
    """F.mse_loss / F.l1_loss take a per-element weight; torch's modules do not."""
    assert (
        "weight"
        in inspect.signature(getattr(torch.nn.functional, LAYERS[name][1].__name__)).parameters
    )
    assert "weight" not in inspect.signature(getattr(torch.nn, name)).parameters
    with pytest.raises(TypeError, match=rf"{name}\(\*, reduction.*unexpected keyword .*'weight'"):
        LAYERS[name][0](weight=np.ones(3))


def test_other_arguments_are_keyword_only():
    # torch's second positional argument is the deprecated size_average: MSELoss('sum')
    # silently means reduction='mean' there, so jaxnet refuses positional hyperparameters.
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        assert torch.nn.MSELoss("sum").reduction == "mean"
    with pytest.raises(TypeError, match=r"MSELoss\(\*, reduction.*too many positional"):
        L.MSELoss("sum")
    with pytest.raises(
        TypeError, match=r"CrossEntropyLoss.*unexpected keyword argument 'smoothing'"
    ):
        L.CrossEntropyLoss(smoothing=0.1)


@pytest.mark.parametrize("name", LAYERS)
def test_unknown_reduction_raises_at_construction(name):
    with pytest.raises(ValueError, match=rf"{name}: reduction must be one of .*got 'avg'"):
        LAYERS[name][0](reduction="avg")


def test_label_smoothing_is_checked_at_construction():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: label_smoothing must be in \[0, 1\]"):
        L.CrossEntropyLoss(label_smoothing=-0.1)


def test_layers_are_immutable_and_repr_their_options():
    criterion = L.CrossEntropyLoss(ignore_index=2, label_smoothing=0.1)
    with pytest.raises(AttributeError, match="CrossEntropyLoss is immutable"):
        criterion.reduction = "sum"
    assert repr(criterion) == "CrossEntropyLoss(ignore_index=2, label_smoothing=0.1)"


def test_repr_leaves_out_options_equal_to_their_default():
    """Compared by value: -100 and 0.0 built at run time are not the default objects."""
    ignore_index, smoothing = int("-100"), float("0.0")
    assert repr(L.CrossEntropyLoss(ignore_index=ignore_index, label_smoothing=smoothing)) == (
        "CrossEntropyLoss()"
    )
    assert repr(L.NLLLoss(weight=None, reduction="".join(["me", "an"]))) == "NLLLoss()"
    assert repr(L.BCELoss(reduction="sum")) == "BCELoss(reduction='sum')"


def test_call_errors_name_the_functional_form():
    with pytest.raises(ValueError, match=r"mse_loss: .*input \(4, 1\) and target \(4,\)"):
        L.MSELoss()(jnp.zeros((4, 1)), jnp.zeros(4))
