"""``torch.nn``, functional: layers are immutable descriptions with pure ``init``/``apply``."""

from jaxnet.nn import functional as functional
from jaxnet.nn import init as init
from jaxnet.nn import utils as utils
from jaxnet.nn.encoding import PositionalEncoding as PositionalEncoding
from jaxnet.nn.layers import MLP as MLP
from jaxnet.nn.layers import Flatten as Flatten
from jaxnet.nn.layers import Identity as Identity
from jaxnet.nn.layers import Lambda as Lambda
from jaxnet.nn.layers import Linear as Linear
from jaxnet.nn.layers import ReLU as ReLU
from jaxnet.nn.layers import Sequential as Sequential
from jaxnet.nn.layers import Sigmoid as Sigmoid
from jaxnet.nn.layers import Tanh as Tanh
from jaxnet.nn.loss import BCELoss as BCELoss
from jaxnet.nn.loss import BCEWithLogitsLoss as BCEWithLogitsLoss
from jaxnet.nn.loss import CrossEntropyLoss as CrossEntropyLoss
from jaxnet.nn.loss import L1Loss as L1Loss
from jaxnet.nn.loss import MSELoss as MSELoss
from jaxnet.nn.loss import NLLLoss as NLLLoss
from jaxnet.nn.module import Module as Module
from jaxnet.nn.module import Params as Params
