"""One process of a two-process ``jax.distributed`` training run on this machine's CPUs (test_multihost.py).

    python tests/e2e/multihost_worker.py PROCESS_ID PORT WORKDIR NUM_EPOCHS OUT.npz

joins the job at ``localhost:PORT`` (2 processes, 1 CPU device each; cross-process collectives over
Gloo, JAX's CPU default), runs :func:`csist_jax.train.train_and_evaluate` on the suite's tiny run
(``tests.helpers.tiny_config``) in the shared ``WORKDIR`` and writes the final parameters, the step and
the number of steps this call trained to ``OUT.npz``. Without arguments (process count 1) it is the
single-process reference.
"""

from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_config(num_epochs: int = 2):
    """The suite's tiny run (``tests.helpers.tiny_config``: ISTA-Net, 1 stage of 4 channels, 64 frames,
    batch 16) for ``num_epochs``."""
    from tests.helpers import tiny_config

    return tiny_config(optim={"num_epochs": num_epochs})


def run(workdir: str, num_epochs: int, out: str) -> None:
    import jax

    from csist_jax import train

    result = train.train_and_evaluate(tiny_config(num_epochs), workdir)
    params = {
        "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(result["params"])
    }
    np.savez(
        out,
        step=result["step"],
        trained=result["timing"]["steps"],
        processes=jax.process_count(),
        devices=jax.device_count(),
        **{f"params/{k}": v for k, v in params.items()},
    )


def main(argv: list[str]) -> None:
    process_id, port, workdir, num_epochs, out = argv
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # the default; said for the reader
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}", num_processes=2, process_id=int(process_id)
    )
    run(workdir, int(num_epochs), out)
    jax.distributed.shutdown()
    # the results are written and the job is shut down: leave without running the C++ static destructors
    # (the coordinator's gRPC server can abort in its destructor at interpreter exit, after a clean run)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main(sys.argv[1:])
