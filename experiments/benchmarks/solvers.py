"""Solver benchmarks: ISTA/FISTA frames/s, separable operator against the dense-matrix form."""

from __future__ import annotations

import jax.numpy as jnp

from csist_jax import physics, solvers
from csist_jax.data import csist100k
from experiments.benchmarks.common import Row, best_time


def run(quick: bool = False) -> list[Row]:
    n = 1024 if quick else 4096
    iterations = 100
    images = jnp.asarray(csist100k.generate(seed=0, n=n)["image"], jnp.float32)
    op = physics.sampling_operator(3)
    dense = physics.dense_operator(op)
    rows = []
    for name, solver in (("ISTA", solvers.ista), ("FISTA", solvers.fista)):
        t_sep = best_time(lambda solver=solver: solver(images, op, 10.0, iterations), repeats=3)
        t_dense = best_time(lambda solver=solver: solver(images, dense, 10.0, iterations), repeats=3)
        rows += [
            Row(
                "solvers",
                f"{name} {iterations} it, separable Phi (batch {n})",
                n / t_sep,
                "frames/s",
                ratio=t_dense / t_sep,
                target=">= 1000 fr/s" if name == "ISTA" else "",
                note="ratio vs dense-matrix Phi, same run",
            ),
            Row("solvers", f"{name} {iterations} it, dense Phi (batch {n})", n / t_dense, "frames/s"),
        ]
    return rows
