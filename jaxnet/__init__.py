"""jaxnet: PyTorch's fundamentals as pure functions on JAX."""

from jaxnet.params import count_parameters as count_parameters

__version__ = "0.1.0"
