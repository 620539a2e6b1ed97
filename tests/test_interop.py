"""jaxnet.from_torch / to_torch / compare against torch: every table layer both ways, the
seed models, traced custom modules, and every refusal."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch import nn as tnn

import jaxnet
from experiments._common import torch_mlp
from jaxnet import nn
from jaxnet.interop import ConversionError, _graph, _layers, _ops

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 1e-5, "atol": 1e-6}


def torch_out(module, *xs, training=False):
    module.train(training)
    with torch.no_grad():
        return module(*(torch.as_tensor(x) for x in xs)).numpy()


def assert_state_dicts_equal(ours, theirs, **tolerance):
    """Same keys in the same order, same dtypes, and values equal bit for bit (or within
    ``tolerance``)."""
    assert list(ours) == list(theirs)
    for key in theirs:
        theirs_value = (
            theirs[key].detach().numpy() if hasattr(theirs[key], "detach") else theirs[key]
        )
        assert np.asarray(ours[key]).dtype == theirs_value.dtype, key
        if tolerance:
            np.testing.assert_allclose(ours[key], theirs_value, err_msg=key, **tolerance)
        else:
            np.testing.assert_array_equal(np.asarray(ours[key]), theirs_value, err_msg=key)


# ---------------------------------------------------------------- import without torch


def test_import_jaxnet_without_torch():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        import jaxnet
        assert callable(jaxnet.from_torch) and callable(jaxnet.compare)
        assert "torch" not in [m.split(".")[0] for m in sys.modules if sys.modules[m]]
        try:
            jaxnet.from_torch(object())
        except ImportError:
            print("ImportError")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "ImportError"


# ---------------------------------------------------------------- the layer table both ways

LAYERS = [
    (lambda: tnn.Linear(5, 3), (4, 5)),
    (lambda: tnn.Linear(5, 3, bias=False), (2, 4, 5)),
    (lambda: tnn.Identity(), (2, 3)),
    (lambda: tnn.Flatten(1, 2), (2, 3, 4, 5)),
    (lambda: tnn.Unflatten(1, (2, 3)), (4, 6)),
    (lambda: tnn.ReLU(inplace=True), (3, 4)),
    (lambda: tnn.Sigmoid(), (3, 4)),
    (lambda: tnn.Tanh(), (3, 4)),
    (lambda: tnn.SiLU(), (3, 4)),
    (lambda: tnn.GELU("tanh"), (3, 4)),
    (lambda: tnn.GELU(), (3, 4)),
    (lambda: tnn.LeakyReLU(0.2), (3, 4)),
    (lambda: tnn.ELU(0.5), (3, 4)),
    (lambda: tnn.Softmax(dim=0), (3, 4)),
    (lambda: tnn.LogSoftmax(dim=-1), (3, 4)),
    (lambda: tnn.Dropout(0.3), (3, 4)),
    (lambda: tnn.Dropout2d(0.3), (2, 3, 4, 4)),
    (lambda: tnn.BatchNorm1d(4, eps=1e-3, momentum=0.3), (6, 4)),
    (lambda: tnn.BatchNorm1d(4, affine=False, momentum=None), (6, 4, 3)),
    (lambda: tnn.BatchNorm2d(3, track_running_stats=False), (2, 3, 4, 4)),
    (lambda: tnn.LayerNorm((4, 5), eps=1e-4), (2, 4, 5)),
    (lambda: tnn.LayerNorm(5, bias=False), (3, 5)),
    (lambda: tnn.Conv1d(3, 4, 3, stride=2, padding=1, bias=False), (2, 3, 9)),
    (
        lambda: tnn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=2, groups=2),
        (2, 4, 9, 8),
    ),
    (lambda: tnn.Conv2d(3, 4, 3, padding="same", padding_mode="reflect"), (2, 3, 6, 6)),
    (
        lambda: tnn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        (2, 4, 5, 5),
    ),
    (lambda: tnn.MaxPool2d(3, 2, 1, ceil_mode=True), (2, 3, 8, 8)),
    (lambda: tnn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 8, 8)),
    (lambda: tnn.AdaptiveAvgPool2d((2, 3)), (2, 3, 7, 8)),
    (lambda: tnn.AdaptiveMaxPool2d(3), (2, 3, 7, 8)),
    (lambda: tnn.ZeroPad2d((1, 2, 0, 1)), (2, 3, 4, 4)),
]


@pytest.mark.parametrize(("make", "shape"), LAYERS, ids=lambda v: repr(v()) if callable(v) else "")
@pytest.mark.parametrize("training", [False, True])
def test_every_table_layer_converts_agrees_and_converts_back(make, shape, training, rng):
    module = make().double()
    if training and isinstance(module, tnn.Dropout | tnn.Dropout2d):
        pytest.skip("dropout masks are drawn by each framework's own RNG")
    x = rng.standard_normal(shape)
    model, params, buffers = jaxnet.from_torch(module)
    assert type(model) is getattr(nn, type(module).__name__)
    assert_state_dicts_equal(model.state_dict(params, buffers), module.state_dict())

    back = jaxnet.to_torch(model, params, buffers)
    assert type(back) is type(module)
    assert repr(back) == repr(module).replace("inplace=True", "")  # in place means nothing in JAX
    assert_state_dicts_equal(model.state_dict(params, buffers), back.state_dict())
    np.testing.assert_array_equal(torch_out(back, x), torch_out(module, x))

    expected = torch_out(module, x, training=training)  # updates torch's running statistics
    y, new_buffers = model.apply(params, x, buffers=buffers, training=training)
    np.testing.assert_allclose(y, expected, **F64)
    assert_state_dicts_equal(model.state_dict(params, new_buffers), module.state_dict(), **F64)


def test_the_tables_cover_the_same_layers():
    torch_names = {cls.__name__ for cls in _layers.torch_to_jaxnet()}
    jaxnet_names = {cls.__name__ for cls in _layers.jaxnet_to_torch()}
    assert torch_names == jaxnet_names
    assert torch_names == {type(make()).__name__ for make, _ in LAYERS}


def test_a_subclass_that_keeps_forward_converts_as_its_base(rng):
    class MyConv(tnn.Conv2d):
        pass

    module = MyConv(2, 3, 3).double()
    model, params, _ = jaxnet.from_torch(module)
    assert type(model) is nn.Conv2d
    x = rng.standard_normal((1, 2, 5, 5))
    np.testing.assert_allclose(model.apply(params, x), torch_out(module, x), **F64)


# ---------------------------------------------------------------- the seed models


def test_seed_mlp_converts_bit_exactly_and_agrees(rng):
    module = torch_mlp()
    model, params, buffers = jaxnet.from_torch(module)
    assert isinstance(model, nn.Sequential) and buffers == {}
    assert_state_dicts_equal(model.state_dict(params), module.state_dict())
    x = rng.standard_normal((8, 784)).astype(np.float32)
    np.testing.assert_allclose(model.apply(params, x), torch_out(module, x), **F32)
    result = jaxnet.compare(module, model, params, x)
    assert result.ok, str(result)
    assert [row.name for row in result.rows] == ["0", "1", "2", "3", "4", ""]


def test_tied_sequential_stays_tied_and_gradients_add(rng):
    shared = tnn.Linear(8, 8)
    module = tnn.Sequential(
        tnn.Linear(4, 8), tnn.ReLU(), shared, tnn.ReLU(), shared, tnn.ReLU(), tnn.Linear(8, 1)
    ).double()
    model, params, _ = jaxnet.from_torch(module)
    assert model[2] is model[4] and "4" not in params
    assert_state_dicts_equal(model.state_dict(params), module.state_dict())
    x = rng.standard_normal((5, 4))

    grads = jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2))(params)
    module.zero_grad()
    (module(torch.as_tensor(x)) ** 2).sum().backward()
    for name, value in model.named_parameters(grads):
        np.testing.assert_allclose(value, dict(module.named_parameters())[name].grad, **F64)
    back = jaxnet.to_torch(model, params)
    assert back[2] is back[4]
    assert_state_dicts_equal(model.state_dict(params), back.state_dict())


class CenteredLayer(tnn.Module):
    def forward(self, X):
        return X - X.mean()


class TorchMyLinear(tnn.Module):
    def __init__(self, in_units, units, detach=True):
        super().__init__()
        self.weight = tnn.Parameter(torch.randn(in_units, units))
        self.bias = tnn.Parameter(torch.randn(units))
        self.detach = detach

    def forward(self, X):
        if self.detach:  # the seed's version reads .data: no gradient reaches the parameters
            return TF.relu(torch.matmul(X, self.weight.data) + self.bias.data)
        return TF.relu(torch.matmul(X, self.weight) + self.bias)


@pytest.mark.parametrize("detach", [True, False])
def test_seed_custom_layers_convert_and_agree(detach, rng):
    module = tnn.Sequential(
        tnn.Linear(8, 64),
        CenteredLayer(),
        TorchMyLinear(64, 8, detach),
        TorchMyLinear(8, 1, detach),
    ).double()
    model, params, _ = jaxnet.from_torch(module)
    assert isinstance(model[1], _graph.TracedModule) and repr(model[1]) == "CenteredLayer()"
    assert set(params["2"]) == {"weight", "bias"}
    assert_state_dicts_equal(model.state_dict(params), module.state_dict())
    x = rng.standard_normal((6, 8))
    np.testing.assert_allclose(model.apply(params, x), torch_out(module, x), **F64)

    result = jaxnet.compare(module, model, params, x, grads=True)
    assert result.ok, str(result)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, x)))(params)
    module.zero_grad()
    module(torch.as_tensor(x)).sum().backward()
    for name, value in model.named_parameters(grads):
        torch_grad = dict(module.named_parameters())[name].grad
        expected = np.zeros(value.shape) if torch_grad is None else torch_grad.numpy()
        np.testing.assert_allclose(value, expected, **F64)
    assert (module[2].weight.grad is None) == detach


# ---------------------------------------------------------------- traced custom modules


class Block(tnn.Module):
    """Residual additions, concatenation, reshapes and functional calls."""

    def __init__(self, channels=3):
        super().__init__()
        self.conv = tnn.Conv2d(channels, 4, 3, padding=1)
        self.bn = tnn.BatchNorm2d(4)
        self.skip = tnn.Conv2d(channels, 4, 1)
        self.heads = tnn.ModuleDict({"a": tnn.Linear(8, 5), "b": tnn.Linear(8, 5)})
        self.scale = tnn.Parameter(torch.linspace(0.5, 1.5, 5))
        self.register_buffer("offset", torch.arange(5.0))

    def forward(self, x):
        h = TF.relu(self.bn(self.conv(x)) + self.skip(x))  # (B, 4, H, W)
        pooled = torch.cat([TF.adaptive_avg_pool2d(h, 1), TF.adaptive_max_pool2d(h, 1)], dim=1)
        flat = pooled.view(pooled.size(0), -1)  # (B, 8)
        mean = h.mean(dim=(2, 3)).unsqueeze(1).transpose(1, 2).squeeze(-1)  # (B, 4)
        out = self.heads["a"](flat) * self.scale - self.heads["b"](flat) / 2 + self.offset
        return torch.flatten(out, 1) + mean.sum(1, keepdim=True) * x.shape[-1]


@pytest.mark.parametrize("training", [False, True])
def test_traced_module_agrees_at_any_input_size(training, rng):
    module = Block().double()
    model, params, buffers = jaxnet.from_torch(module)
    assert type(model).__name__ == "Block" and isinstance(model.heads, nn.ModuleDict)
    assert_state_dicts_equal(model.state_dict(params, buffers), module.state_dict())
    for size in (6, 11):  # one conversion, two input sizes: no shape is fixed at trace time
        x = rng.standard_normal((2, 3, size, size))
        y, new_buffers = model.apply(params, x, buffers=buffers, training=training)
        np.testing.assert_allclose(y, torch_out(module, x, training=training), **F64)
        assert_state_dicts_equal(model.state_dict(params, new_buffers), module.state_dict(), **F64)
        buffers = new_buffers
    result = jaxnet.compare(module, model, params, x, buffers=buffers, training=training)
    assert result.ok, str(result)


def test_traced_module_under_jit_and_back_to_torch(rng):
    module = Block().double()
    model, params, buffers = jaxnet.from_torch(module)
    x = rng.standard_normal((2, 3, 7, 7))
    run = jax.jit(lambda p, b, x: model.apply(p, x, buffers=b, training=False)[0])
    np.testing.assert_allclose(run(params, buffers, x), torch_out(module, x), **F64)

    back = jaxnet.to_torch(model, params, buffers)
    assert isinstance(back, torch.fx.GraphModule) and isinstance(back.heads, tnn.ModuleDict)
    assert_state_dicts_equal(model.state_dict(params, buffers), back.state_dict())
    np.testing.assert_array_equal(torch_out(back, x), torch_out(module, x))


class ModeDependent(tnn.Module):
    def __init__(self):
        super().__init__()
        self.fc = tnn.Linear(3, 3)

    def forward(self, x):
        if self.training:  # a Python branch on the mode: fx fixes it at trace time
            return self.fc(x) * 2
        return self.fc(x)


def test_a_forward_branching_on_training_runs_the_graph_of_each_mode(rng):
    module = ModeDependent().double()
    model, params, _ = jaxnet.from_torch(module)
    x = rng.standard_normal((4, 3))
    for training in (False, True):
        y = model.apply(params, x, training=training)
        np.testing.assert_allclose(y, torch_out(module, x, training=training), **F64)
    with pytest.raises(TypeError, match="differs between training and eval mode"):
        jaxnet.to_torch(model, params)


class FunctionalDropout(tnn.Module):
    def forward(self, x):
        return TF.dropout(x, 0.25, training=self.training)


def test_functional_dropout_follows_the_mode_and_draws_from_the_key(rng):
    model, params, _ = jaxnet.from_torch(FunctionalDropout())
    x = rng.standard_normal((50, 40)) + 5.0
    np.testing.assert_array_equal(model.apply(params, x, training=False), x)
    y = np.asarray(model.apply(params, x, training=True, key=jax.random.key(3)))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, **F64)  # torch's scaling
    assert 0.65 < kept.mean() < 0.85
    with pytest.raises(ValueError, match="apply got no key"):
        model.apply(params, x, training=True)


# ---------------------------------------------------------------- refusals


class Unsupported(tnn.Module):
    def __init__(self):
        super().__init__()
        self.act = tnn.PReLU()
        self.emb = tnn.Embedding(10, 3)
        self.fc = tnn.Linear(3, 3)

    def forward(self, x):
        h = torch.cumsum(self.fc(x), 1)
        return h.cummax(0).values + self.act(h)


def test_every_unsupported_layer_and_op_is_listed_with_its_line():
    with pytest.raises(ConversionError) as info:
        jaxnet.from_torch(tnn.Sequential(tnn.Linear(3, 3), Unsupported()))
    problems = info.value.problems
    assert len(problems) == 5, problems
    text = str(info.value)
    assert "nothing was converted" in text
    assert "1.act (PReLU): unsupported layer torch PReLU" in text
    assert "1.emb (Embedding): unsupported layer torch Embedding" in text
    assert "torch.cumsum (test_interop.py:" in text and "h = torch.cumsum(self.fc(x), 1)" in text
    assert "Tensor.cummax (test_interop.py:" in text
    assert "unsupported tensor attribute .values" in text


class DataDependent(tnn.Module):
    def __init__(self):
        super().__init__()
        self.fc = tnn.Linear(3, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


def test_data_dependent_control_flow_points_to_converting_children_by_hand():
    with pytest.raises(ConversionError, match="control flow") as info:
        jaxnet.from_torch(tnn.Sequential(DataDependent()))
    text = str(info.value)
    assert "0 (DataDependent): torch.fx cannot trace its forward" in text
    assert "test_interop.py:" in text and "if x.sum() > 0:" in text
    assert "jaxnet.from_torch(module.fc)" in text


def test_an_input_of_another_shape_is_refused_naming_the_node_and_line(rng):
    class Head(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(3 * 4 * 4, 2)

        def forward(self, x):
            return self.fc(x.view(x.size(0), -1))

    model, params, _ = jaxnet.from_torch(Head())
    assert model.apply(params, np.zeros((2, 3, 4, 4), np.float32)).shape == (2, 2)
    with pytest.raises(
        ValueError, match=r"Head, call_module fc \(test_interop.py:\d+: return"
    ) as e:
        model.apply(params, np.zeros((2, 3, 5, 5), np.float32))
    assert "Linear(48 -> 2) expected input [..., 48], got shape (2, 75)" in str(e.value)


def test_parameters_shared_between_different_layers_are_refused():
    a, b = tnn.Linear(3, 3), tnn.Linear(3, 3)
    b.weight = a.weight
    with pytest.raises(ConversionError, match=r"'0\.weight' is shared with '1\.weight'"):
        jaxnet.from_torch(tnn.Sequential(a, b))


def test_from_torch_refuses_a_non_module():
    with pytest.raises(TypeError, match=r"from_torch expects a torch\.nn\.Module, got Linear"):
        jaxnet.from_torch(nn.Linear(2, 2))


def test_example_inputs_catch_a_conversion_that_disagrees(monkeypatch, rng):
    class Tanh(tnn.Module):
        def forward(self, x):
            return torch.tanh(x)

    module = tnn.Sequential(tnn.Linear(3, 3), Tanh())
    x = rng.standard_normal((2, 3)).astype(np.float32)
    model, params, _ = jaxnet.from_torch(module, example_inputs=[x])  # agrees: no error
    np.testing.assert_allclose(model.apply(params, x), torch_out(module, x), **F32)
    monkeypatch.setitem(_ops.functions(), torch.tanh, jnp.sin)  # a wrong translation
    with pytest.raises(ValueError, match="differs from torch on the example inputs, first at '1'"):
        jaxnet.from_torch(module, example_inputs=[x])


def test_to_torch_refuses_custom_forwards_naming_each():
    class Mine(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

        def forward(self, scope, x):
            return self.fc(scope, x)

    model = nn.Sequential(Mine(), nn.ReLU(), nn.Lambda(jnp.sin, name="sin"))
    with pytest.raises(TypeError) as info:
        jaxnet.to_torch(model, model.init(jax.random.key(0)))
    text = str(info.value)
    assert "0 (Mine) has its own forward" in text and "2 (Lambda) has its own forward" in text


def test_to_torch_of_jaxnet_layers(rng):
    model = nn.Sequential(
        nn.MLP(4, [8], 6), nn.Unflatten(1, (2, 3)), nn.LayerNorm(3), nn.Flatten(), nn.Tanh()
    )
    params = model.init(jax.random.key(1))
    back = jaxnet.to_torch(model, params)
    assert isinstance(back[0], tnn.Sequential) and back.training
    assert_state_dicts_equal(model.state_dict(params), back.state_dict())
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.apply(params, x), torch_out(back, x), **F32)


# ---------------------------------------------------------------- compare


def test_compare_names_the_first_layer_that_differs(rng):
    module = tnn.Sequential(
        tnn.Linear(4, 8), tnn.ReLU(), tnn.Linear(8, 8), tnn.Tanh(), tnn.Linear(8, 2)
    )
    model, params, _ = jaxnet.from_torch(module)
    params["2"]["bias"] = params["2"]["bias"].at[3].add(1e-3)  # the jaxnet twin's bug
    x = rng.standard_normal((5, 4)).astype(np.float32)
    result = jaxnet.compare(module, model, params, x)
    assert not result.ok
    assert (result.first_mismatch, result.first_mismatch_kind) == ("2", "output")
    by_name = {row.name: row for row in result.rows}
    # layer by layer: the layers around it get torch's inputs, so their outputs agree
    assert all(by_name[name].out_abs < 1e-6 for name in ("0", "1", "3", "4"))
    assert not by_name["2"].ok and by_name["2"].out_abs == pytest.approx(1e-3, rel=1e-3)
    assert not by_name[""].ok  # the end-to-end row
    assert "first beyond tolerance: '2' (output" in str(result)
    markdown = result.to_markdown()
    assert markdown.startswith("| layer | type | shape |") and "| 2 | Linear | 5x8 |" in markdown
    assert jaxnet.compare(module, model, params, x, atol=1e-2).ok  # the tolerance is the user's


def test_compare_finds_a_gradient_only_difference(rng):
    module = tnn.Sequential(tnn.Linear(3, 3), TorchMyLinear(3, 2, detach=False)).double()
    model, params, _ = jaxnet.from_torch(module)
    detached = tnn.Sequential(module[0], TorchMyLinear(3, 2, detach=True)).double()
    detached[1].load_state_dict(module[1].state_dict())
    x = rng.standard_normal((4, 3))
    result = jaxnet.compare(detached, model, params, x)  # same outputs, other gradients
    assert all(row.out_abs < 1e-12 for row in result.rows)
    assert (result.first_mismatch, result.first_mismatch_kind) == ("1", "gradient")
    assert jaxnet.compare(detached, model, params, x, grads=False).ok


def test_compare_leaves_the_torch_module_alone_and_refuses_dropout_in_training(rng):
    module = tnn.Sequential(tnn.Linear(3, 4), tnn.BatchNorm1d(4), tnn.Dropout(0.2))
    module.eval()
    model, params, buffers = jaxnet.from_torch(module)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    x = rng.standard_normal((6, 3)).astype(np.float32)
    assert jaxnet.compare(module, model, params, x, buffers=buffers).ok
    with pytest.raises(ValueError, match="dropout"):
        jaxnet.compare(module, model, params, x, buffers=buffers, training=True)
    module[2].p = 0.0
    model, params, buffers = jaxnet.from_torch(module)
    assert jaxnet.compare(module, model, params, x, buffers=buffers, training=True).ok
    assert not module.training and not module._forward_hooks
    assert_state_dicts_equal({k: v.numpy() for k, v in module.state_dict().items()}, before)


def test_compare_argument_errors():
    module = tnn.Linear(2, 2)
    model, params, _ = jaxnet.from_torch(module)
    with pytest.raises(TypeError, match=r"torch_module must be a torch\.nn\.Module"):
        jaxnet.compare(model, model, params, np.zeros((1, 2)))
    with pytest.raises(TypeError, match="model must be a jaxnet Module"):
        jaxnet.compare(module, module, params, np.zeros((1, 2)))
    with pytest.raises(TypeError, match="training must be a bool"):
        jaxnet.compare(module, model, params, np.zeros((1, 2)), training=1)
