"""MNIST as CSV text: one row per image, the label then 784 pixel values.

The layout of the widely shared ``mnist_train.csv``/``mnist_test.csv`` files: an optional
header row (``label,1x1,1x2,...``), then ``label,p0,...,p783`` per row with integers
``0..9`` and ``0..255``. NumPy's C parser (``np.loadtxt``) reads the 110 MB training file
in about two seconds and rejects anything that is not an integer in ``0..255``.
"""

from __future__ import annotations

import itertools
import os
import re
import warnings
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from jaxnet.datasets.errors import MNISTFormatError

PIXELS = 28 * 28
COLUMNS = 1 + PIXELS


def read_csv(file: str | os.PathLike | BinaryIO) -> tuple[np.ndarray, np.ndarray]:
    """Read an MNIST CSV file: ``(images (N, 28, 28) uint8, labels (N,) uint8)``.

    ``file`` is a path or a binary file object (e.g. a ``zipfile`` member, read as a
    stream). A first row that does not start with a digit is a header and is skipped.
    Raises ``MNISTFormatError`` naming the file for an empty file, rows without 785
    columns, a value that is not an integer in ``0..255`` or a label outside ``0..9``.
    Every message names the offending row the same way: ``data row k``, counting from 1
    the rows after the header (blank lines are skipped and not counted), and columns
    from 1 (column 1 is the label).
    The PyTorch counterpart is reading the file with pandas and ``torch.tensor``.
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as stream:
            return _read_stream(stream, os.fspath(file))
    return _read_stream(file, getattr(file, "name", "<stream>"))


def _whole_lines(lines: Iterator[bytes], name: str) -> Iterator[bytes]:
    """The lines, refusing a last line without its newline: a file cut inside a number
    would otherwise read as a valid row with a wrong value."""
    for line in lines:
        if not line.endswith(b"\n"):
            raise MNISTFormatError(f"{name}: the last line has no newline (truncated file?)")
        yield line


def _read_stream(stream: BinaryIO, name: str) -> tuple[np.ndarray, np.ndarray]:
    first = stream.readline().removeprefix(b"\xef\xbb\xbf")  # drop a UTF-8 byte order mark
    if not first.strip():
        raise MNISTFormatError(f"{name}: empty file or blank first line, expected MNIST CSV rows")
    lines = itertools.chain([first], stream) if first[:1].isdigit() else stream  # else a header
    lines = _whole_lines(lines, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy warns on no rows: checked below
            table = np.loadtxt(lines, delimiter=",", dtype=np.uint8, ndmin=2)  # (N, columns)
    except MNISTFormatError:
        raise  # from _whole_lines, already naming the file
    except ValueError as err:
        raise MNISTFormatError(f"{name}: {_describe(str(err))}") from None
    if not len(table):  # only a header (a first line of digits is a row)
        raise MNISTFormatError(f"{name}: no data rows after the header, expected MNIST CSV rows")
    if table.shape[1] != COLUMNS:
        raise MNISTFormatError(f"{name}: {_wrong_columns(1, table.shape[1])}")
    labels = np.ascontiguousarray(table[:, 0])  # (N,)
    if np.any(labels > 9):
        row = int(np.argmax(labels > 9))
        raise MNISTFormatError(f"{name}: data row {row + 1}: label {labels[row]} outside 0..9")
    return table[:, 1:].reshape(-1, 28, 28), labels


# NumPy's loadtxt counts data rows from 0 in conversion errors and from 1 in column-count
# errors (blank lines skipped in both); jaxnet counts from 1 in every message.
_BAD_VALUE = re.compile(r"could not convert string (.*) to uint8 at row (\d+), column (\d+)\.?")
_COLUMNS_CHANGED = re.compile(r"the number of columns changed from (\d+) to (\d+) at row (\d+)")


def _describe(message: str) -> str:
    """NumPy's loadtxt error in jaxnet's words, with rows numbered from 1."""
    if match := _BAD_VALUE.match(message):
        value, row, column = match[1], int(match[2]) + 1, int(match[3])
        return f"data row {row}, column {column}: {value} is not an integer in 0..255"
    if match := _COLUMNS_CHANGED.match(message):
        first, got, row = (int(group) for group in match.groups())
        return _wrong_columns(1, first) if first != COLUMNS else _wrong_columns(row, got)
    return f"malformed MNIST CSV: {message}"


def _wrong_columns(row: int, got: int) -> str:
    return f"data row {row}: expected {COLUMNS} columns (label and {PIXELS} pixels), got {got}"
