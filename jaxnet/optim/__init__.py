"""``torch.optim``, functional: optimisers are ``optax.GradientTransformation``s.

Every torch optimiser is here under its torch name, with torch's arguments (see
docs/optimizers.md); :func:`LBFGS` takes the loss function, as torch's ``step(closure)``.
:func:`param_groups` is torch's list of parameter groups, and
:func:`load_torch_state_dict` / :func:`torch_state_dict` read and write torch's
``optimizer.state_dict()``. ``jaxnet.optim.lr_scheduler`` holds torch's schedulers as
pure ``step -> lr`` functions, accepted as ``lr`` by every optimiser.
"""

from jaxnet.optim import lr_scheduler as lr_scheduler
from jaxnet.optim.adam import Adam as Adam
from jaxnet.optim.adam import Adamax as Adamax
from jaxnet.optim.adam import AdamW as AdamW
from jaxnet.optim.adam import NAdam as NAdam
from jaxnet.optim.adam import RAdam as RAdam
from jaxnet.optim.base import TorchOptimizer as TorchOptimizer
from jaxnet.optim.lbfgs import LBFGS as LBFGS
from jaxnet.optim.optimizers import ASGD as ASGD
from jaxnet.optim.optimizers import SGD as SGD
from jaxnet.optim.optimizers import Adadelta as Adadelta
from jaxnet.optim.optimizers import Adafactor as Adafactor
from jaxnet.optim.optimizers import Adagrad as Adagrad
from jaxnet.optim.optimizers import RMSprop as RMSprop
from jaxnet.optim.optimizers import Rprop as Rprop
from jaxnet.optim.param_groups import param_groups as param_groups
from jaxnet.optim.torch_state import load_torch_state_dict as load_torch_state_dict
from jaxnet.optim.torch_state import torch_state_dict as torch_state_dict
