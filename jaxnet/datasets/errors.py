"""Errors raised for malformed or corrupted MNIST files."""


class MNISTFormatError(ValueError):
    """A data file is malformed: the message names the file and what is wrong with it."""


class MNISTChecksumError(MNISTFormatError):
    """A file or cached array set does not have the checksum it must have."""
