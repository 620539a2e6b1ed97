"""Errors raised for malformed or corrupted MNIST files."""


class MNISTFormatError(ValueError):
    """A data file is malformed: the message names the file and what is wrong with it.

    PyTorch has no dedicated type: torchvision's MNIST reader fails with ``AssertionError``
    or ``RuntimeError``."""


class MNISTChecksumError(MNISTFormatError):
    """A file or cached array set does not have the checksum it must have.

    PyTorch counterpart: torchvision's ``check_integrity`` returns ``False`` and
    ``MNIST(download=True)`` raises ``RuntimeError``."""
