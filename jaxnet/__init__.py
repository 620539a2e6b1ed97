"""jaxnet: PyTorch's fundamentals as pure functions on JAX."""

from jaxnet.interop import compare as compare
from jaxnet.interop import from_torch as from_torch
from jaxnet.interop import to_torch as to_torch
from jaxnet.params import count_parameters as count_parameters

__version__ = "0.1.0"
