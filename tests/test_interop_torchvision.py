"""torchvision's resnet18 and vgg11 (random init), converted with jaxnet.from_torch: eval
and training outputs, BatchNorm buffers, one SGD step, compare on every layer, and back
with to_torch. float32 throughout (torchvision's dtype); batch 2."""

import copy

import jax
import numpy as np
import optax
import pytest
import torch

import jaxnet
from experiments._torchvision import import_torchvision
from jaxnet import optim
from jaxnet.nn import functional as F

# float32 through ~20 layers: the end-to-end differences measured are ~1e-6 of the logits.
OUT = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def torchvision():
    return import_torchvision()


@pytest.fixture(scope="module")
def resnet18(torchvision):
    torch.manual_seed(0)
    module = torchvision.models.resnet18(weights=None)
    return (module, *jaxnet.from_torch(module))


@pytest.fixture(scope="module")
def vgg11(torchvision):
    torch.manual_seed(0)
    module = torchvision.models.vgg11(weights=None)
    return (module, *jaxnet.from_torch(module))


def images(size, seed=0):
    return np.random.default_rng(seed).standard_normal((2, 3, size, size)).astype(np.float32)


def torch_eval(module, x):
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def eval_fn(model):
    return jax.jit(lambda p, b, x: model.apply(p, x, buffers=b, training=False)[0])


def test_resnet18_keeps_torchs_structure_and_weights(resnet18):
    module, model, params, buffers = resnet18
    assert [n for n, _ in model.named_modules()] == [n for n, _ in module.named_modules()]
    ours, theirs = model.state_dict(params, buffers), module.state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value.numpy(), err_msg=key)


@pytest.mark.parametrize("size", [224, 64])
def test_resnet18_eval_outputs_agree(resnet18, size):
    module, model, params, buffers = resnet18
    x = images(size)
    y = eval_fn(model)(params, buffers, x)
    np.testing.assert_allclose(y, torch_eval(module, x), **OUT)


def test_resnet18_training_outputs_and_batchnorm_buffers_agree(resnet18):
    module, model, params, buffers = resnet18
    twin = copy.deepcopy(module).train()
    x = images(64, seed=1)
    run = jax.jit(lambda p, b, x: model.apply(p, x, buffers=b, training=True))
    for _ in range(2):  # the second pass starts from the updated statistics
        y, buffers = run(params, buffers, x)
        with torch.no_grad():
            expected = twin(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(y, expected, **OUT)
    ours = model.state_dict(params, buffers)
    for key, value in twin.state_dict().items():
        if "running" in key or "num_batches" in key:
            np.testing.assert_allclose(ours[key], value.numpy(), err_msg=key, **OUT)
    assert int(ours["bn1.num_batches_tracked"]) == 2


def test_resnet18_one_sgd_step_agrees(resnet18):
    module, model, params, buffers = resnet18
    twin = copy.deepcopy(module).train()
    x, labels = images(64, seed=2), np.array([3, 917])
    opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(labels))
    loss.backward()
    expected_grads = {n: p.grad.numpy().copy() for n, p in twin.named_parameters()}
    opt.step()

    def loss_fn(p):
        y, _ = model.apply(p, x, buffers=buffers, training=True)
        return F.cross_entropy(y, labels)

    value, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    np.testing.assert_allclose(value, loss.item(), rtol=1e-5)
    # Batch statistics in the backward pass: float32 gradients measured within ~1.5e-4 of
    # each tensor's largest entry (conv1's, the deepest from the loss).
    for name, g in model.named_parameters(grads):
        scale = np.abs(expected_grads[name]).max()
        np.testing.assert_allclose(g, expected_grads[name], rtol=0, atol=1e-3 * scale, err_msg=name)
    sgd = optim.SGD(lr=0.1, momentum=0.9)
    updates, _ = sgd.update(grads, sgd.init(params), params)
    old = dict(model.named_parameters(params))
    for name, p in model.named_parameters(optax.apply_updates(params, updates)):
        step = dict(twin.named_parameters())[name].detach().numpy() - old[name]
        atol = 1e-3 * np.abs(step).max()  # the gradients' tolerance, scaled by lr
        np.testing.assert_allclose(p - old[name], step, rtol=0, atol=atol, err_msg=name)


def test_resnet18_compare_reports_every_layer_within_tolerance(resnet18):
    module, model, params, buffers = resnet18
    result = jaxnet.compare(module, model, params, images(64), buffers=buffers, grads=True)
    assert result.ok, str(result)
    assert len(result.rows) == 76 and result.rows[-1].name == ""  # every call, root last
    assert sum(row.grad_abs is not None for row in result.rows) == 41  # every conv, bn, fc
    assert "all 76 layer calls within tolerance" in str(result)


def test_resnet18_back_to_torch(resnet18):
    module, model, params, buffers = resnet18
    back = jaxnet.to_torch(model, params, buffers)
    assert isinstance(back, torch.fx.GraphModule)
    assert isinstance(back.layer1[0], torch.fx.GraphModule)
    ours, theirs = back.state_dict(), module.state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)
    x = images(64, seed=3)
    np.testing.assert_array_equal(torch_eval(back, x), torch_eval(module, x))


@pytest.mark.parametrize("size", [224, 64])
def test_vgg11_eval_outputs_agree(vgg11, size):
    module, model, params, buffers = vgg11
    assert type(model).__name__ == "VGG" and buffers == {}
    x = images(size)
    y = eval_fn(model)(params, buffers, x)
    np.testing.assert_allclose(y, torch_eval(module, x), **OUT)


def test_vgg11_compare_every_layer_output(vgg11):
    """Eval mode: vgg's dropout would draw different masks in the two frameworks."""
    module, model, params, buffers = vgg11
    result = jaxnet.compare(module, model, params, images(64), buffers=buffers, grads=False)
    assert result.ok, str(result)
    assert len(result.rows) == 32


@pytest.mark.slow
def test_vgg11_gradients_agree_in_float64(torchvision):
    """In float32 a last-bit difference before a max pool can pick another element of a
    near-tied window, and the gradient goes elsewhere (measured: 1.5e-2 relative at
    features.13); in float64 every layer's gradient agrees to ~1e-14."""
    torch.manual_seed(0)
    module = torchvision.models.vgg11(weights=None).double()
    model, params, buffers = jaxnet.from_torch(module)
    x = images(64).astype(np.float64)
    result = jaxnet.compare(module, model, params, x, buffers=buffers, grads=True)
    assert result.ok, str(result)
    assert sum(row.grad_abs is not None for row in result.rows) == 11  # 8 conv + 3 linear
