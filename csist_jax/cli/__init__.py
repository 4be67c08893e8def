"""The commands for users' files: ``python -m csist_jax COMMAND ...`` (console script ``csist-jax``).

``unmix`` (:mod:`csist_jax.cli.unmix`): the point targets in PNG / NPY / NPZ files, folders and the
official dataset layouts, as one CSV; reading in :mod:`csist_jax.cli.inputs`, the resumable, shardable
chunks in :mod:`csist_jax.cli.chunks`, the pictures in :mod:`csist_jax.cli.overlay`. The user's guide is
docs/cli.md.
"""

#: command -> (module with ``main(argv, prog)``, one line for ``--help``)
COMMANDS = {
    "unmix": (
        "csist_jax.cli.unmix",
        "point targets in frame files (PNG, NPY, NPZ, folders, the official layouts) -> one CSV",
    ),
}
