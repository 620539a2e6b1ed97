"""``torch.nn``, functional: layers are immutable descriptions with pure ``init``/``apply``."""

from jaxnet.nn import init as init
from jaxnet.nn.layers import MLP as MLP
from jaxnet.nn.layers import Flatten as Flatten
from jaxnet.nn.layers import Identity as Identity
from jaxnet.nn.layers import Lambda as Lambda
from jaxnet.nn.layers import Linear as Linear
from jaxnet.nn.layers import ReLU as ReLU
from jaxnet.nn.layers import Sequential as Sequential
from jaxnet.nn.layers import Sigmoid as Sigmoid
from jaxnet.nn.layers import Tanh as Tanh
from jaxnet.nn.module import Module as Module
from jaxnet.nn.module import Params as Params
from jaxnet.nn.encoding import PositionalEncoding as PositionalEncoding
