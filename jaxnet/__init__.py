"""jaxnet: PyTorch's fundamentals as pure functions on JAX."""

from jaxnet.params import count_parameters as count_parameters
from jaxnet.params import load_state_dict as load_state_dict
from jaxnet.params import named_parameters as named_parameters
from jaxnet.params import state_dict as state_dict

__version__ = "0.1.0"
