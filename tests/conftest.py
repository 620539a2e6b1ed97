"""Test configuration: float64 available for formula checks, no silent rank promotion."""

import jax
import numpy as np
import pytest
import torch

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
torch.set_num_threads(1)


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed: inputs shared by torch and jaxnet."""
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_torch():
    """Torch's own initialisers run in many tests; seed them so every run is the same."""
    torch.manual_seed(0)
