"""``torch.nn``, functional: layers are immutable descriptions with pure ``init``/``apply``.

What is callable, and how:

* **Loss layers** (:mod:`jaxnet.nn.loss`: ``MSELoss``, ``CrossEntropyLoss``, ...) are called
  directly, like torch's: ``nn.MSELoss()(input, target)``. A loss has no parameters,
  buffers or randomness, so calling it needs nothing but its inputs.
* **Every other layer** (each :class:`Module`) runs with its parameters:
  ``model.apply(params, x)`` on its own (``apply(params, x, buffers=..., key=...,
  training=...)`` for running statistics and dropout), and ``self.child(scope, x)`` for a
  sub-layer inside its parent's ``forward``. A layer holds no arrays, so torch's
  ``layer(x)`` has nothing to compute with; it raises a ``TypeError`` naming ``apply``.
"""

from jaxnet.nn import functional as functional
from jaxnet.nn import init as init
from jaxnet.nn import utils as utils
from jaxnet.nn.activation import ELU as ELU
from jaxnet.nn.activation import GELU as GELU
from jaxnet.nn.activation import LeakyReLU as LeakyReLU
from jaxnet.nn.activation import LogSoftmax as LogSoftmax
from jaxnet.nn.activation import ReLU as ReLU
from jaxnet.nn.activation import Sigmoid as Sigmoid
from jaxnet.nn.activation import SiLU as SiLU
from jaxnet.nn.activation import Softmax as Softmax
from jaxnet.nn.activation import Tanh as Tanh
from jaxnet.nn.containers import MLP as MLP
from jaxnet.nn.containers import Sequential as Sequential
from jaxnet.nn.conv import Conv1d as Conv1d
from jaxnet.nn.conv import Conv2d as Conv2d
from jaxnet.nn.conv import ConvTranspose2d as ConvTranspose2d
from jaxnet.nn.dropout import Dropout as Dropout
from jaxnet.nn.dropout import Dropout2d as Dropout2d
from jaxnet.nn.encoding import PositionalEncoding as PositionalEncoding
from jaxnet.nn.linear import Flatten as Flatten
from jaxnet.nn.linear import Identity as Identity
from jaxnet.nn.linear import Lambda as Lambda
from jaxnet.nn.linear import Linear as Linear
from jaxnet.nn.loss import BCELoss as BCELoss
from jaxnet.nn.loss import BCEWithLogitsLoss as BCEWithLogitsLoss
from jaxnet.nn.loss import CrossEntropyLoss as CrossEntropyLoss
from jaxnet.nn.loss import L1Loss as L1Loss
from jaxnet.nn.loss import MSELoss as MSELoss
from jaxnet.nn.loss import NLLLoss as NLLLoss
from jaxnet.nn.module import Buffer as Buffer
from jaxnet.nn.module import Module as Module
from jaxnet.nn.module import ModuleDict as ModuleDict
from jaxnet.nn.module import ModuleList as ModuleList
from jaxnet.nn.module import Parameter as Parameter
from jaxnet.nn.module import Params as Params
from jaxnet.nn.module import Scope as Scope
from jaxnet.nn.normalization import BatchNorm1d as BatchNorm1d
from jaxnet.nn.normalization import BatchNorm2d as BatchNorm2d
from jaxnet.nn.normalization import LayerNorm as LayerNorm
from jaxnet.nn.pooling import AdaptiveAvgPool2d as AdaptiveAvgPool2d
from jaxnet.nn.pooling import AdaptiveMaxPool2d as AdaptiveMaxPool2d
from jaxnet.nn.pooling import AvgPool2d as AvgPool2d
from jaxnet.nn.pooling import MaxPool2d as MaxPool2d
from jaxnet.nn.pooling import Unflatten as Unflatten
from jaxnet.nn.pooling import ZeroPad2d as ZeroPad2d
