"""Every optimiser in every configuration torch tests itself with: 50 steps against torch.

The configurations are those of ``optim_inputs_func_<name>("cpu")`` in the installed
torch's ``torch/testing/_internal/common_optimizers.py``, with the kernel-only options
(``foreach``, ``fused``, ``capturable``, ``differentiable``) dropped: jaxnet accepts them
without effect. A tensor ``lr`` is passed as a float. float64 must agree to 1e-10,
float32 to 1e-4.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from test_optim_common import (
    OPTIMIZER_NAMES,
    TOL32,
    TOL64,
    jaxnet_trajectory,
    torch_configs,
    torch_trajectory,
)

from jaxnet import optim

STEPS = 50
CASES = [
    pytest.param(name, kwargs, id=f"{name}-{desc}")
    for key, name in OPTIMIZER_NAMES.items()
    for desc, kwargs in torch_configs(key)
]


def test_every_torch_optimiser_with_configurations_is_covered():
    """LBFGS has its own test file; SparseAdam needs sparse gradients (docs/optimizers.md)
    and Muon is torch's newest (not in jaxnet)."""
    from test_optim_common import common_optimizers

    functions = {n[len("optim_inputs_func_") :] for n in dir(common_optimizers())}
    assert functions & {"lbfgs", "sparseadam", "muon", *OPTIMIZER_NAMES} == {
        "lbfgs",
        "sparseadam",
        "muon",
        *OPTIMIZER_NAMES,
    }
    assert len(CASES) > 60


# Rprop steps by the sign of g * prev. With maximize the parameters grow past 100 and the
# tanh units saturate; the float32 gradients get so small that rounding can flip their
# signs, and torch's and jaxnet's float32 runs part at step 42 (float64 agrees throughout).
FLOAT32_STEPS = {("Rprop", "maximize"): 40}


@pytest.mark.parametrize(("name", "kwargs"), CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_configuration(name, kwargs, dtype):
    params0, expected = torch_trajectory(
        lambda p: getattr(torch.optim, name)(p, **kwargs), STEPS, getattr(torch, dtype)
    )
    got = jaxnet_trajectory(getattr(optim, name)(**kwargs), params0, STEPS, getattr(jnp, dtype))
    assert got.dtype == np.dtype(dtype)
    if dtype == "float32":
        steps = FLOAT32_STEPS.get((name, ",".join(kwargs)), STEPS)
        got, expected = got[:steps], expected[:steps]
    assert np.abs(expected[-1] - expected[0]).max() > 1e-3  # the parameters really moved
    np.testing.assert_allclose(got, expected, **(TOL64 if dtype == "float64" else TOL32))
