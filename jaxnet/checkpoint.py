"""Checkpoints as safetensors files: torch-named weights and whole training states.

PyTorch equivalents: ``torch.save(module.state_dict(), path)`` with
``module.load_state_dict(torch.load(path))`` for weights, and ``torch.save`` of a
``{'model': ..., 'optimizer': ..., 'step': ...}`` dict for a training state.

jaxnet writes safetensors instead of pickle: an 8-byte little-endian header length, a
JSON header (dtype, shape and byte range of every tensor, plus string metadata) and the
raw bytes. Reading a file runs no code.

* :func:`save_weights` / :func:`load_weights`: the keys are torch's ``state_dict`` names
  (``'0.weight'``), in torch's layout, so ``module.load_state_dict(
  safetensors.torch.load_file(path))`` reads a jaxnet file and a file from
  ``safetensors.torch.save_file(module.state_dict(), path)`` loads into jaxnet params.
* :func:`save_state` / :func:`load_state`: any pytree (a ``TrainState`` with params,
  optimiser state, step and PRNG key); the keys are the ``jax.tree_util.keystr`` paths
  of its leaves (``".opt_state[0].mu['0']['weight']"``).

Writes are atomic: the bytes go to a temporary file in the target's directory, are
flushed to disk, then renamed over the target, so a crash leaves either the old file or
the new one; the next successful save of the same target removes the temporary files of
saves that were killed (:func:`jaxnet._safefile.write_atomically`). The metadata entry
``tensors_sha256`` holds a SHA-256 over every tensor's name, dtype (NumPy's
``dtype.str``), shape and bytes in name order (:func:`jaxnet._safefile.arrays_sha256`);
loading checks it where present, so a damaged payload is refused while files from torch
and other tools, which lack it, still load. Dtypes: bool, (u)int8-64, float8 (e4m3fn,
e5m2), float16, bfloat16, float32, float64 and complex64, all bit-exact both ways (a
torch bfloat16 ``state_dict`` saved with
``safetensors.torch.save_file`` loads into a ``jnp.bfloat16`` template).

Files are untrusted. Loading opens the path without blocking and refuses anything but a
regular file (a FIFO, ``/dev/zero``, a folder); reads and checks the whole header (at most
100 MB; JSON, names checked for repeats in linear time, dtypes, shapes, byte ranges
against the file size, see :class:`jaxnet._safefile.SafetensorsFile`); compares every
name, shape and dtype with the template; and only then reads the bytes of the tensors
the template asks for. Every problem raises :class:`CheckpointError`, and a refused file
costs little. Measured on a shared 2-core machine (load average 10): refusing a 2 GiB
sparse file holding one unexpected tensor took 0.3 ms, with no measurable Python
allocation and no growth of the peak RSS; refusing a 5.8 MB header of 100,000 tensor
names with one repeated took 2.6 s (``json.loads`` alone takes 1.6 s of it there) and
raised the peak RSS by 70 MB.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import params as params_lib
from jaxnet._keys import is_typed_key
from jaxnet._safefile import (
    SAFETENSORS_NAMES,
    SafetensorsFile,
    arrays_sha256,
    safetensors_chunks,
    unique_names,
    write_atomically,
)

PyTree = Any

_STATE_FORMAT = "jaxnet.train_state"
_STATE_VERSION = "1"
# "pt": torch's names and layout; the tag Hugging Face tools check on weight files.
_WEIGHTS_METADATA = {"format": "pt"}
# Metadata entry holding the SHA-256 of the tensors (see _tensors_sha256).
_DIGEST_KEY = "tensors_sha256"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, or not matching the template.

    PyTorch equivalent: the ``RuntimeError`` of ``module.load_state_dict`` (template
    mismatches) and the errors of ``torch.load`` / ``safetensors.torch.load_file``.
    """


def save_weights(
    path: str | os.PathLike, model: Any, params: PyTree, buffers: PyTree | None = None
) -> None:
    """Write the model's ``state_dict`` (params and buffers) as a safetensors file keyed by
    torch's names.

    PyTorch equivalent: ``safetensors.torch.save_file(module.state_dict(), path)``; a
    tied layer's tensors are written at each of its positions, as torch lists them.
    Raises ``ValueError`` naming every parameter holding NaN or inf, and writes nothing,
    if any does.
    """
    state_dict = model.state_dict(params, buffers)
    tensors = {name: _host_array("save_weights", name, v) for name, v in state_dict.items()}
    _refuse_non_finite("save_weights", tensors)
    _write("save_weights", path, tensors, _WEIGHTS_METADATA)


def load_weights(path: str | os.PathLike, model: Any) -> params_lib.LoadedState:
    """The model's params and buffers read from a torch-named safetensors file.

    PyTorch equivalent: ``module.load_state_dict(safetensors.torch.load_file(path))``
    with ``strict=True``: every key of the model's ``state_dict`` must be present with
    its shape and dtype and the file may hold no other key; a tied layer needs its
    tensors under one of its positions only, as ``safetensors.torch.load_model`` reads
    what ``save_model`` wrote. Returns :class:`jaxnet.params.LoadedState` (``.params``,
    ``.buffers``); raises :class:`CheckpointError` otherwise.
    """
    where = f"load_weights: {os.fspath(path)!r}"
    with _open(where, path) as file:
        if file.metadata.get("format") == _STATE_FORMAT:
            raise CheckpointError(
                f"{where} is a training state written by save_state; read it with load_state"
            )
        # Only tensors whose name, shape and dtype the template expects are read; the others
        # are stand-ins without data, which load_state_dict then refuses by name and shape.
        expected = params_lib.state_dict_spec(model)
        wanted = [
            name
            for name, entry in file.entries.items()
            if name in expected
            and (entry.shape, entry.dtype) == (expected[name].shape, expected[name].dtype)
        ]
        tensors = _read_tensors(where, file, wanted)
        tensors.update(
            {
                name: _stand_in(np.empty(0, entry.dtype), entry.shape)
                for name, entry in file.entries.items()
                if name not in tensors
            }
        )
    tensors = params_lib.fill_tied_keys(model, tensors)
    try:
        return model.load_state_dict(tensors, strict=True)
    except ValueError as error:
        raise CheckpointError(
            f"load_weights: {os.fspath(path)!r} does not match the template: {error}"
        ) from error


def save_state(path: str | os.PathLike, state: PyTree) -> None:
    """Write a whole training state (any pytree) as one safetensors file.

    PyTorch equivalent: ``torch.save({'model': model.state_dict(), 'optimizer':
    optimizer.state_dict(), 'step': step}, path)``.

    Leaves may be JAX or NumPy arrays, NumPy scalars or Python numbers; typed PRNG keys
    (``jax.random.key``) are stored as their key data with the implementation's name in
    the metadata, raw ``uint32`` keys as plain arrays. ``None`` leaves and empty
    containers are structure, kept by the template given to :func:`load_state`.

    Raises ``ValueError``, writing nothing, if a float leaf of ``state.params`` (or
    ``state['params']``) holds NaN or inf. Only the params are checked because optimiser
    states may hold inf on purpose (a best-loss-so-far starting at inf); a state without
    a ``params`` field is checked whole.
    """
    leaves, _ = _flatten("save_state", state)
    tensors = {name: _host_array("save_state", name, _raw(leaf)) for name, leaf in leaves.items()}
    key_impls = {name: _key_impl(leaf) for name, leaf in leaves.items() if _key_impl(leaf)}
    has_params = hasattr(state, "params") or (isinstance(state, Mapping) and "params" in state)
    checked = {n: tensors[n] for n in tensors if _under_params(n)} if has_params else tensors
    _refuse_non_finite("save_state", checked)
    metadata = {
        "format": _STATE_FORMAT,
        "version": _STATE_VERSION,
        "prng_keys": json.dumps(key_impls, sort_keys=True),
    }
    _write("save_state", path, tensors, metadata)


def load_state(path: str | os.PathLike, like: PyTree) -> PyTree:
    """A training state read from a :func:`save_state` file, shaped like the template ``like``.

    PyTorch equivalent: ``checkpoint = torch.load(path)`` followed by
    ``model.load_state_dict(checkpoint['model'])`` and
    ``optimizer.load_state_dict(checkpoint['optimizer'])``.

    The file must hold exactly the leaves of ``like`` (same ``keystr`` paths, shapes and
    dtypes, typed PRNG keys of the same implementation); otherwise one
    :class:`CheckpointError` lists every mismatch. Each leaf comes back as the template's
    kind: JAX arrays on the template leaf's sharding, NumPy arrays, or Python numbers.
    The result equals the saved state bit for bit.
    """
    where = f"load_state: {os.fspath(path)!r}"
    with _open(where, path) as file:
        tensors = _read_state(where, file, like)
    leaves, treedef = _flatten("load_state", like)
    restored = [_restore(leaf, tensors[name], _key_impl(leaf)) for name, leaf in leaves.items()]
    return jax.tree_util.tree_unflatten(treedef, restored)


def _read_state(where: str, file: SafetensorsFile, like: PyTree) -> dict[str, np.ndarray]:
    """The tensors of a training state, read once the header matches the template ``like``."""
    metadata, entries = file.metadata, file.entries
    tag = (metadata.get("format"), metadata.get("version"))
    if tag != (_STATE_FORMAT, _STATE_VERSION):
        raise CheckpointError(
            f"{where} is not a jaxnet training state: expected format {_STATE_FORMAT!r} "
            f"version {_STATE_VERSION!r}, got format {tag[0]!r} version {tag[1]!r}"
        )
    file_impls = _parse_key_impls(where, metadata.get("prng_keys", "{}"), entries)
    leaves, _ = _flatten("load_state", like)
    problems = []
    for name, leaf in leaves.items():
        if name not in entries:
            problems.append(f"missing key {name!r}")
            continue
        shape, dtype = _shape_dtype(_raw(leaf))
        got = entries[name]
        if (got.shape, got.dtype) != (shape, dtype):
            problems.append(
                f"{name!r}: expected {dtype}{list(shape)}, got {got.dtype}{list(got.shape)}"
            )
        if file_impls.get(name) != _key_impl(leaf):
            problems.append(
                f"{name!r}: expected {_describe_key(_key_impl(leaf))}, "
                f"got {_describe_key(file_impls.get(name))}"
            )
    problems += [f"unexpected key {name!r}" for name in sorted(entries.keys() - leaves.keys())]
    if problems:
        raise CheckpointError(
            f"{where} does not match the template ({len(problems)} problems):\n  "
            + "\n  ".join(problems)
        )
    return _read_tensors(where, file, list(entries))


def _flatten(fn: str, tree: PyTree) -> tuple[dict[str, Any], Any]:
    """``{keystr name: leaf}`` in flattening order, and the treedef of ``tree``."""
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    leaves = {jax.tree_util.keystr(path): leaf for path, leaf in paths_leaves}
    if len(leaves) != len(paths_leaves):
        raise ValueError(f"{fn}: two leaves print the same path; names: {list(leaves)}")
    return leaves, treedef


def _key_impl(leaf: Any) -> str | None:
    """The PRNG implementation's name if ``leaf`` is a typed key array, else ``None``."""
    return str(jax.random.key_impl(leaf)) if is_typed_key(leaf) else None


def _raw(leaf: Any) -> Any:
    """What is stored for ``leaf``: the key data of a typed key, the leaf itself otherwise."""
    return jax.random.key_data(leaf) if is_typed_key(leaf) else leaf


def _under_params(name: str) -> bool:
    """Whether a ``keystr`` name lies in the ``params`` field (attribute or mapping key)."""
    return name in (".params", "['params']") or name.startswith(
        (".params.", ".params[", "['params']")
    )


def _shape_dtype(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype as stored, without copying array data to the host."""
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        return tuple(leaf.shape), np.dtype(leaf.dtype)
    array = np.asarray(leaf)
    return array.shape, array.dtype


def _stand_in(leaf: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A read-only array of ``leaf``'s dtype and shape (or ``shape``) that holds no data."""
    leaf_shape, dtype = _shape_dtype(leaf)
    return np.broadcast_to(np.zeros((), dtype), leaf_shape if shape is None else shape)


def _describe_key(impl: str | None) -> str:
    return f"a typed PRNG key ({impl})" if impl else "a plain array"


def _host_array(fn: str, name: str, value: Any) -> np.ndarray:
    """``value`` as a C-contiguous NumPy array of a dtype safetensors.numpy can read back."""
    array = np.asarray(value, order="C")
    if array.dtype not in SAFETENSORS_NAMES:
        raise TypeError(
            f"{fn}: {name!r} has dtype {array.dtype}; checkpoints hold "
            f"{', '.join(str(d) for d in SAFETENSORS_NAMES)} (cast it first)"
        )
    return array


def _refuse_non_finite(fn: str, tensors: Mapping[str, np.ndarray]) -> None:
    bad = [
        name
        for name, array in tensors.items()
        if jnp.issubdtype(array.dtype, jnp.inexact) and not np.isfinite(array).all()
    ]
    if bad:
        raise ValueError(
            f"{fn}: refusing to write non-finite values (NaN or inf) in {', '.join(bad)}; "
            "nothing was written"
        )


def _restore(template: Any, value: np.ndarray, impl: str | None) -> Any:
    """``value`` as the same kind of leaf as ``template``."""
    if isinstance(template, jax.Array):
        if impl:
            value = jax.random.wrap_key_data(value, impl=impl)
        elif template.weak_type and value.ndim == 0:
            # A weakly typed scalar (a step counter out of a jitted step) stays weak, so the
            # step does not retrace on resume. Weak scalars have the default dtype of their
            # kind, as a Python number converted by jnp.asarray does.
            value = jnp.asarray(value.item())
        return jax.device_put(value, template.sharding)
    if isinstance(template, np.ndarray):
        return value.copy()
    return value[()] if isinstance(template, np.generic) else value.item()


def _parse_key_impls(where: str, text: str, tensors: Mapping[str, Any]) -> dict[str, str]:
    """The ``prng_keys`` metadata: a JSON object from stored names to PRNG impl names."""
    try:
        impls = json.loads(text, object_pairs_hook=unique_names)
    except (ValueError, RecursionError):  # not JSON, a name repeated, or nested too deeply
        impls = None
    if not isinstance(impls, dict) or not all(
        isinstance(name, str) and name in tensors and isinstance(impl, str)
        for name, impl in impls.items()
    ):
        raise CheckpointError(
            f"{where} has corrupt 'prng_keys' metadata: expected a JSON object mapping stored "
            f"tensor names to PRNG implementation names, got {text[:200]!r}"
        )
    return impls


def _open(where: str, path: str | os.PathLike) -> SafetensorsFile:
    """``path`` opened as a safetensors file with its header checked (see the module doc)."""
    try:
        return SafetensorsFile(path)
    except OSError as error:
        raise CheckpointError(f"{where} cannot be read: {error.strerror or error}") from error
    except ValueError as error:
        raise CheckpointError(f"{where} is not a valid safetensors file: {error}") from error


def _read_tensors(where: str, file: SafetensorsFile, names: list[str]) -> dict[str, np.ndarray]:
    """The tensors ``names``; when they are all the file holds, checked against the SHA-256
    the file records (jaxnet's files do; torch's and other tools' don't)."""
    try:
        tensors = file.read(names)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{where} cannot be read: {error}") from error
    recorded = file.metadata.get(_DIGEST_KEY)
    if recorded is not None and len(tensors) == len(file.entries):
        actual = _tensors_sha256(tensors)
        if actual != recorded:
            raise CheckpointError(
                f"{where} is corrupt: its tensors have SHA-256 {actual}, "
                f"the file recorded {recorded}"
            )
    return tensors


def _write(
    fn: str, path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str]
) -> None:
    """Write ``tensors`` and ``metadata``, plus the tensors' SHA-256, atomically to ``path``."""
    metadata = {**metadata, _DIGEST_KEY: _tensors_sha256(tensors)}
    write_atomically(fn, path, *safetensors_chunks(tensors, metadata))


def _tensors_sha256(tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over each tensor's name, dtype, shape and bytes, in name order."""
    return arrays_sha256({name: tensors[name] for name in sorted(tensors)})
