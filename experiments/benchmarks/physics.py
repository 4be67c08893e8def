"""Physics benchmarks: the closed-form Phi against per-entry numerical integration, and rendering."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate

from csist_jax import physics
from csist_jax.data import csist100k
from experiments.benchmarks.common import Row, best_time


def _dblquad_entry(r, q, x, y, sigma):
    """Reference: one entry of Phi by numerical 2-D integration, as the original toolkit builds it."""

    def density(v, u):
        return np.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)

    return integrate.dblquad(density, r - 0.5, r + 0.5, q - 0.5, q + 0.5)[0]


def run(quick: bool = False) -> list[Row]:
    c, sigma = 3, 0.5
    hr = 11 * c
    n_entries = 121 * hr * hr
    sample = 60 if quick else 300
    rng = np.random.default_rng(0)
    rows_idx = rng.integers(0, 121, sample)
    cols_idx = rng.integers(0, hr * hr, sample)
    centres = (np.arange(hr) - (c - 1) // 2) / c
    t0 = time.perf_counter()
    ref = [
        _dblquad_entry(m // 11, m % 11, centres[n // hr], centres[n % hr], sigma)
        for m, n in zip(rows_idx, cols_idx)
    ]
    per_entry = (time.perf_counter() - t0) / sample
    dblquad_full = per_entry * n_entries
    ours = best_time(lambda: physics.sampling_matrix(c, sigma=sigma), repeats=10)
    err = float(np.max(np.abs(np.asarray(physics.sampling_matrix(c, sigma=sigma))[rows_idx, cols_idx] - ref)))
    out = [
        Row("physics", "Phi c=3, closed form (separable, kron)", ours * 1e3, "ms"),
        Row(
            "physics",
            "Phi c=3, per-entry dblquad (projected full matrix)",
            dblquad_full,
            "s",
            note=f"{sample} entries timed, x{n_entries} entries",
        ),
        Row(
            "physics",
            "Phi c=3 speed-up: closed form vs dblquad",
            dblquad_full / ours,
            "x",
            ratio=dblquad_full / ours,
            target=">= 1000x",
            note=f"max |diff| on timed entries {err:.1e} (float32)",
        ),
    ]

    n = 2000 if quick else 10000
    targets = jnp.asarray(csist100k.generate(seed=0, n=n)["targets"])
    render = jax.jit(physics.render)
    t_render = best_time(lambda: render(targets))
    op = physics.sampling_operator(c)
    dense = physics.dense_operator(op)
    maps = physics.hr_label(targets, c)
    sep_fwd = jax.jit(lambda s: op.adjoint(op.forward(s)))
    dense_fwd = jax.jit(lambda s: dense.adjoint(dense.forward(s)))
    t_sep = best_time(lambda: sep_fwd(maps))
    t_dense = best_time(lambda: dense_fwd(maps))
    out += [
        Row("physics", f"render {n} images x 5 targets", n / t_render, "frames/s"),
        Row(
            "physics",
            "Phi^T Phi s, separable (G s G^T)",
            n / t_sep,
            "frames/s",
            ratio=t_dense / t_sep,
            note="ratio vs the dense 121x1089 matrix form",
        ),
        Row("physics", "Phi^T Phi s, dense matrix", n / t_dense, "frames/s"),
    ]
    return out
