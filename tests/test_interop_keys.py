"""key_mapping_hint: prefixes and consistent renamings between a model's state-dict keys and
a checkpoint's, on the keys of real torch models."""

import torch
from torch import nn as tnn

from jaxnet.interop import key_mapping_hint


def model_keys():
    net = tnn.Sequential(tnn.Linear(4, 8), tnn.BatchNorm1d(8), tnn.ReLU(), tnn.Linear(8, 2))
    return list(net.state_dict())


def test_data_parallel_prefix_is_named_with_the_fix():
    class Wrapper(tnn.Module):  # what torch.nn.DataParallel's state_dict looks like on a CPU
        def __init__(self, module):
            super().__init__()
            self.module = module

    expected = model_keys()
    given = list(
        Wrapper(
            tnn.Sequential(tnn.Linear(4, 8), tnn.BatchNorm1d(8), tnn.ReLU(), tnn.Linear(8, 2))
        ).state_dict()
    )
    hint = key_mapping_hint(expected, given)
    assert "prefix 'module.'" in hint and "DataParallel" in hint
    assert "k.removeprefix('module.')" in hint
    fixed = {k.removeprefix("module."): k for k in given}
    assert list(fixed) == expected


def test_a_model_prefix_to_strip_and_one_to_add():
    expected = model_keys()
    hint = key_mapping_hint(expected, ["model." + k for k in expected])
    assert "prefix 'model.'" in hint and "strip it" in hint and "DataParallel" not in hint
    hint = key_mapping_hint(["backbone." + k for k in expected], expected)
    assert "the model's keys carry the prefix 'backbone.'" in hint and "'backbone.' + k" in hint


def test_a_consistent_renaming_of_a_layer():
    expected = [k.replace("3.", "head.", 1) if k.startswith("3.") else k for k in model_keys()]
    hint = key_mapping_hint(expected, model_keys())
    assert "'3.' -> 'head.'" in hint and "'3.weight' -> 'head.weight'" in hint


def test_renamed_blocks_deep_in_the_path():
    expected = [f"encoder.blocks.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    given = [k.replace("blocks", "layers") for k in expected]
    hint = key_mapping_hint(expected, given)
    assert "'encoder.layers.' -> 'encoder.blocks.'" in hint


def test_leftover_keys_are_counted():
    expected = model_keys()
    given = ["module." + k for k in expected] + ["module.extra.weight"]
    hint = key_mapping_hint(expected, given)
    assert "prefix 'module.'" in hint and "1 key(s) of the state dict still match nothing" in hint


def test_no_hint_when_nothing_consistent_explains_the_difference():
    expected = model_keys()
    assert key_mapping_hint(expected, expected) is None
    assert key_mapping_hint(expected, expected[:-1]) is None  # only missing keys
    assert (
        key_mapping_hint(expected, ["a.x", "b.y", "c.z", "d.w", "e.v", "f.u", "g.t", "h.s", "i.r"])
        is None
    )
    assert key_mapping_hint(["fc.weight"], ["conv.bias"]) is None


def test_hint_for_a_real_checkpoint_saved_from_data_parallel():
    net = tnn.Linear(3, 2)
    wrapped = torch.nn.DataParallel(net)  # works on CPU: the prefix is in the state dict
    hint = key_mapping_hint(list(net.state_dict()), list(wrapped.state_dict()))
    assert "prefix 'module.'" in hint
