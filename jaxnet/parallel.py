"""Data-parallel training on JAX's sharding engine, on one device or many, one host or many.

PyTorch equivalents: ``torch.distributed.init_process_group`` (:func:`initialize`),
``DistributedDataParallel`` (placing the state replicated and the batch sharded, then
calling the ordinary jitted step), ``DistributedSampler`` (:func:`host_batch_order`).

Nothing here writes a collective by hand. Arrays are placed on a device
:class:`~jax.sharding.Mesh` with axes ``('data', 'model')``: the parameters and the
optimiser state replicated (:func:`replicate`), each batch split along its batch axis
over ``'data'`` (:func:`shard_batch`). ``jax.jit`` propagates those input shardings
through the jitted :func:`jaxnet.train.train_step` and :func:`jaxnet.train.train_loop`
unchanged: every device computes the gradient of its slice and XLA's SPMD partitioner
inserts the all-reduce that makes the mean over the global batch. The compiled epoch
keeps the data set replicated and shards only the ``(steps, B)`` index batches along
``B``, so each device gathers its own examples locally; the data set itself is never
all-gathered. Large weights can also be split over ``'model'`` (:func:`shard_params`).

Layers that compute batch statistics (BatchNorm) see the whole global batch: the loss
is one function of the sharded batch, so its means and variances are reduced over every
device, as torch's ``SyncBatchNorm`` computes them (not per device, as
``DistributedDataParallel`` with a plain ``BatchNorm`` would). Buffers are replicated
with the rest of the state.

The same code runs on one device (a 1x1 mesh) or many: the mesh is an argument ::

    mesh = parallel.make_mesh()                  # every device on 'data'
    state = parallel.replicate(train.TrainState.create(params, opt, key), mesh)
    state, metrics = step(state, parallel.shard_batch((x, y), mesh))

On several hosts every process runs the same program after :func:`initialize`; each one
loads only its piece of every global batch (:func:`host_batch_order`) and
:func:`global_batch` assembles the pieces into one array sharded over all devices.
On CPU, ``jax.config.update("jax_num_cpu_devices", N)`` before JAX's first operation (or
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before JAX starts) simulates N
devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxnet._checks import check_positive_int
from jaxnet._keys import on_key_data
from jaxnet.datasets import batch_order
from jaxnet.datasets.batching import num_examples

DATA = "data"
MODEL = "model"
PyTree = Any


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
) -> None:
    """Join a multi-host run: ``jax.distributed.initialize`` with the same arguments.

    PyTorch equivalent: ``torch.distributed.init_process_group(init_method=
    f"tcp://{coordinator_address}", world_size=num_processes, rank=process_id)``.
    Call it once in every process, before anything else touches JAX's devices. Process
    0 serves at ``coordinator_address`` (``"host:port"``); afterwards ``jax.devices()``
    lists the devices of all processes and :func:`make_mesh` spans them;
    ``local_device_ids`` limits this process to some of its own devices. On SLURM, Open
    MPI and cloud TPU the arguments may be left out and are detected.
    """
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )


def make_mesh(num_devices: int | None = None, model: int = 1) -> Mesh:
    """A ``(data, model)`` mesh over the first ``num_devices`` devices (default: all).

    PyTorch equivalent: ``init_device_mesh(device, (num_devices // model, model),
    mesh_dim_names=("data", "model"))``. ``model`` devices hold the pieces of a weight
    split by :func:`shard_params`; ``num_devices // model`` data-parallel groups each
    take a slice of every batch. Both axes are ``AxisType.Auto``: ``jax.jit``
    propagates the input shardings (a mesh from ``jax.make_mesh``, Explicit by
    default, is refused).
    """
    available = jax.device_count()
    num_devices = available if num_devices is None else num_devices
    check_positive_int("make_mesh", num_devices=num_devices, model=model)
    if num_devices > available:
        raise ValueError(
            f"make_mesh: {num_devices=} but only {available} devices are visible (on CPU, "
            f'jax.config.update("jax_num_cpu_devices", {num_devices}) before JAX starts)'
        )
    if num_devices % model:
        raise ValueError(f"make_mesh: {num_devices=} is not divisible by {model=}")
    return jax.make_mesh(
        (num_devices // model, model),
        (DATA, MODEL),
        axis_types=(AxisType.Auto, AxisType.Auto),
        devices=jax.devices()[:num_devices],
    )


def data_size(mesh: Mesh) -> int:
    """The number of data-parallel groups: the size of the mesh's ``'data'`` axis.

    PyTorch equivalent: ``mesh["data"].size()`` of a ``DeviceMesh`` (the world size of
    plain ``DistributedDataParallel``).
    """
    _check_mesh("data_size", mesh, DATA)
    return mesh.shape[DATA]


def _check_mesh(fn: str, mesh: Any, axis: str) -> None:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{fn}: expected a jax.sharding.Mesh, got {type(mesh).__name__}")
    if axis not in mesh.shape:
        raise ValueError(f"{fn}: expected a mesh with a {axis!r} axis, got axes {mesh.axis_names}")
    if any(kind != AxisType.Auto for kind in mesh.axis_types):
        raise ValueError(
            f"{fn}: expected mesh axes of type AxisType.Auto (parallel.make_mesh makes them; "
            f"jax.make_mesh defaults to Explicit), got {mesh.axis_types}"
        )


def check_batch_size(fn: str, batch_size: int, mesh: Mesh) -> None:
    """Raise ``ValueError`` (naming ``fn``) unless ``batch_size`` splits evenly over ``'data'``.

    PyTorch has no such check: ``DistributedSampler`` pads or drops examples instead, and
    ``Shard(dim)`` of a ``DTensor`` accepts uneven pieces.
    """
    _check_mesh(fn, mesh, DATA)
    devices = mesh.shape[DATA]
    if batch_size % devices:
        raise ValueError(
            f"{fn}: batch size {batch_size} does not divide evenly over the {devices} devices "
            f"of the mesh's {DATA!r} axis; use a multiple of {devices}"
        )


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every leaf of ``tree`` (arrays, typed PRNG keys, numbers) copied to every device.

    PyTorch equivalent: ``distribute_tensor(t, mesh, [Replicate()])``, or what
    ``DistributedDataParallel`` does to the module's state. On several processes each
    one supplies the copies on its own devices, so all must pass the same values (same
    seed, same checkpoint).
    """
    _check_mesh("replicate", mesh, DATA)
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda leaf: _place(leaf, sharding), tree)


def _place(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """``jax.device_put``; a mesh spanning processes takes this process's value via the host."""
    if sharding.is_fully_addressable or (
        isinstance(leaf, jax.Array) and not leaf.is_fully_addressable
    ):
        return jax.device_put(leaf, sharding)
    return on_key_data(lambda data: jax.device_put(np.asarray(data), sharding), leaf)


def shard_batch(tree: PyTree, mesh: Mesh, axis: int = 0) -> PyTree:
    """Each leaf split along its batch ``axis`` over the mesh's ``'data'`` axis.

    PyTorch equivalent: ``distribute_tensor(t, mesh, [Shard(axis)])``.
    Every process passes the whole global batch (the same values); use
    :func:`global_batch` when each process holds only its own piece. Index batches
    ``(steps, B)`` for :func:`jaxnet.train.train_loop` take ``axis=1``. A negative
    ``axis`` counts from each leaf's last axis (``-1`` is the last).
    """
    _check_mesh("shard_batch", mesh, DATA)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"shard_batch: axis must be an int, got {type(axis).__name__}")

    def sharding(leaf: Any) -> NamedSharding:
        rank = np.ndim(leaf)
        if not -rank <= axis < rank:
            raise ValueError(
                f"shard_batch: batch axis {axis} is out of range for an array of rank {rank}, "
                f"shape {np.shape(leaf)}"
            )
        check_batch_size("shard_batch", np.shape(leaf)[axis], mesh)
        return NamedSharding(mesh, PartitionSpec(*[None] * (axis % rank), DATA))  # B on 'data'

    shardings = jax.tree.map(sharding, tree)  # every leaf checked before any is placed
    return jax.tree.map(_place, tree, shardings)


def global_batch(local_tree: PyTree, mesh: Mesh) -> PyTree:
    """One global batch, sharded over ``'data'``, from each process's own piece.

    PyTorch equivalent: ``DTensor.from_local(local, mesh, [Shard(0)])``.
    ``local_tree`` holds this process's ``B / process_count`` examples (from
    :func:`host_batch_order`); the result has the global batch size ``B`` and each
    device holds ``B / data_size(mesh)`` of them. On one process this equals
    :func:`shard_batch`.
    """
    local = num_examples("global_batch", local_tree)
    check_batch_size("global_batch", jax.process_count() * local, mesh)
    sharding = NamedSharding(mesh, PartitionSpec(DATA))
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, a), local_tree)


def shard_params(tree: PyTree, mesh: Mesh, min_size: int = 1 << 18) -> PyTree:
    """Large weights split along their output dimension over ``'model'``, the rest replicated.

    A leaf of rank >= 2 (a Linear or Conv weight in torch's ``[out, in, ...]`` layout)
    with at least ``min_size`` elements and an output size divisible by the ``'model'``
    axis is split on dimension 0; everything else is replicated. Pass a whole
    ``TrainState``: optimiser moments have the weights' shapes and are split alike, so
    each device keeps ``1 / model`` of them. Training gives the same numbers.

    PyTorch equivalent: ``parallelize_module(module, mesh["model"], {name:
    ColwiseParallel()})`` for every large Linear.
    """
    _check_mesh("shard_params", mesh, MODEL)
    model = mesh.shape[MODEL]

    def place(leaf):
        shape = np.shape(leaf)
        split = len(shape) >= 2 and np.prod(shape) >= min_size and shape[0] % model == 0
        spec = PartitionSpec(MODEL) if split else PartitionSpec()  # [out, ...] over 'model'
        return _place(leaf, NamedSharding(mesh, spec))

    return jax.tree.map(place, tree)


def host_batch_order(
    key: jax.Array | None,
    n: int,
    batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
    *,
    shuffle: bool = True,
) -> list[np.ndarray]:
    """This process's piece of every global index batch of one epoch.

    Every process computes the same global order ``datasets.batch_order(key, n,
    batch_size, shuffle=shuffle, drop_last=True)`` and keeps the contiguous slice
    ``[p * b, (p + 1) * b)`` of each batch, ``b = batch_size // process_count``: the
    pieces of all processes are disjoint and together give exactly the global batches.
    Defaults: ``jax.process_index()`` and ``jax.process_count()``.

    PyTorch's ``DistributedSampler`` deals indices round-robin instead
    (``indices[rank::world_size]``); with ``shuffle=False`` its step-``k`` batches of all
    ranks hold the same examples as global batch ``k`` here.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(
            f"host_batch_order: need 0 <= process_index < process_count, "
            f"got {process_index=}, {process_count=}"
        )
    order = batch_order(key, n, batch_size, shuffle=shuffle, drop_last=True)  # checks n, B
    if batch_size % process_count:
        raise ValueError(
            f"host_batch_order: global batch size {batch_size} does not divide evenly "
            f"over {process_count} processes"
        )
    piece = batch_size // process_count
    begin = process_index * piece
    return [batch[begin : begin + piece] for batch in order]
