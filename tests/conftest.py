"""Test configuration: float64 available for formula checks, no silent rank promotion,
the same hypothesis examples on every run."""

import jax
import numpy as np
import pytest
import torch
from hypothesis import settings

# Hypothesis draws the same examples on every run (CI included): a failure found while
# exploring becomes a fixed regression test, not a failure of one CI run in several.
settings.register_profile("deterministic", derandomize=True)
settings.load_profile("deterministic")
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
