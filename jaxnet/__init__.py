"""jaxnet: PyTorch's fundamentals as pure functions on JAX.

``import jaxnet`` gives every public module: ``jaxnet.nn`` (``torch.nn``), ``jaxnet.optim``
(``torch.optim``), ``jaxnet.train``, ``jaxnet.checkpoint``, ``jaxnet.datasets``,
``jaxnet.parallel``, ``jaxnet.ensemble``, ``jaxnet.autograd``, ``jaxnet.tensor``, and the
torch bridges ``from_torch``, ``to_torch`` and ``compare`` (torch is imported only when
they are called).
"""

from jaxnet import autograd as autograd
from jaxnet import checkpoint as checkpoint
from jaxnet import datasets as datasets
from jaxnet import ensemble as ensemble
from jaxnet import nn as nn
from jaxnet import optim as optim
from jaxnet import parallel as parallel
from jaxnet import tensor as tensor
from jaxnet import train as train
from jaxnet.interop import compare as compare
from jaxnet.interop import from_torch as from_torch
from jaxnet.interop import to_torch as to_torch
from jaxnet.params import count_parameters as count_parameters

__version__ = "0.1.0"
