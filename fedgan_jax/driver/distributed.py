"""Several processes (hosts) as one federation: `jax.distributed`, global arrays, one writer.

With ``P`` processes started on one or several hosts (the same command on each, with
``--num_processes``, ``--process_id`` and ``--coordinator_address``, or from a cluster's
environment such as SLURM's), `initialize` joins them into one JAX runtime whose devices
are every process's devices. A federation with ``fl.mesh_devices=-1`` then shards its
client axis over all of them (`engine.make_mesh`):

* each process places only its own clients on its own devices (`to_global` with a
  callback that reads just the shards of its devices);
* the round is one SPMD program over the whole mesh (`spanning`): its inputs are made
  global (the same value on every process), its outputs are gathered into replicated
  arrays and returned as ordinary local arrays;
* everything else (evaluation, the adversary's generator and attacks) runs on every
  process on the same local inputs, so every process holds the same state; only process
  0 writes the workdir, its checkpoints and the results (`is_writer`), and only it prints
  progress. Every process reads the checkpoint to resume.

On CPU the processes talk through gloo (JAX's CPU collectives); on GPUs through NCCL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fedgan_jax.core.errors import ConfigError


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins this process to the others. With no arguments, JAX reads them from the
    cluster's environment (SLURM, Open MPI, ...). Must run before any computation."""
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ConfigError(
            "--coordinator_address, --num_processes and --process_id go together "
            "(or none of them, to read them from the cluster's environment)"
        )
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ConfigError(f"--process_id={process_id}: must lie in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )


def multiprocess() -> bool:
    return jax.process_count() > 1


def is_writer() -> bool:
    """Only process 0 writes files and prints progress."""
    return jax.process_index() == 0


def _global_leaf(value, sharding: NamedSharding):
    if isinstance(value, int | float):  # Python scalars stay weakly typed constants
        return value
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        data = _global_leaf(jax.random.key_data(value), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_global(tree: Any, sharding: NamedSharding) -> Any:
    """Host values (the same on every process) as global arrays with `sharding`; each
    process transfers only the shards of its own devices."""
    return jax.tree.map(lambda v: _global_leaf(v, sharding), tree)


def to_local(tree: Any) -> Any:
    """Fully replicated global arrays as arrays on this process's default device."""
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), tree)


def spanning(fn: Callable, mesh: Mesh, *, global_args: tuple[int, ...]) -> Callable:
    """`fn` as one program over a mesh that spans processes: the arguments at
    `global_args` are global arrays already (the clients); every other argument is made
    global, replicated; the results come back replicated, as local arrays."""
    replicated = NamedSharding(mesh, P())
    gathered = jax.jit(fn, out_shardings=replicated)

    def run(*args):
        args = [
            a if i in global_args or a is None else to_global(a, replicated)
            for i, a in enumerate(args)
        ]
        return to_local(gathered(*args))

    return run
