"""Datasets as NumPy arrays (``torchvision.datasets``), the order of their mini-batches
(``DataLoader``'s batch sampler) and on-device transforms (``torchvision.transforms``)."""

from jaxnet.datasets.batching import batch_order as batch_order
from jaxnet.datasets.csvfile import read_csv as read_csv
from jaxnet.datasets.errors import MNISTChecksumError as MNISTChecksumError
from jaxnet.datasets.errors import MNISTFormatError as MNISTFormatError
from jaxnet.datasets.idx import read_idx as read_idx
from jaxnet.datasets.mnist import MNIST as MNIST
from jaxnet.datasets.mnist import MNIST_SHA256 as MNIST_SHA256
from jaxnet.datasets.mnist import load_mnist as load_mnist
from jaxnet.datasets.transforms import MNIST_MEAN as MNIST_MEAN
from jaxnet.datasets.transforms import MNIST_STD as MNIST_STD
from jaxnet.datasets.transforms import normalize as normalize
from jaxnet.datasets.transforms import normalize_channels as normalize_channels
from jaxnet.datasets.transforms import random_crop as random_crop
from jaxnet.datasets.transforms import random_horizontal_flip as random_horizontal_flip
