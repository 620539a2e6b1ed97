"""jaxnet: PyTorch's fundamentals as pure functions on JAX."""

__version__ = "0.1.0"
