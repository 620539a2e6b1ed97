"""``torch.optim``, functional: optimisers are ``optax.GradientTransformation``s.

``jaxnet.optim.lr_scheduler`` holds torch's schedulers as pure ``step -> lr`` functions,
accepted as ``lr`` by every optimiser.
"""

from jaxnet.optim import lr_scheduler as lr_scheduler
from jaxnet.optim.optimizers import SGD as SGD
from jaxnet.optim.optimizers import Adagrad as Adagrad
from jaxnet.optim.optimizers import Adam as Adam
from jaxnet.optim.optimizers import AdamW as AdamW
from jaxnet.optim.optimizers import RMSprop as RMSprop
