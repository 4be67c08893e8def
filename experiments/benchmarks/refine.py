"""Continuous localisation benchmarks: ``localize`` frames/s, the separable normal equations against a
plain dense-Jacobian Levenberg-Marquardt step, and the cost of refinement against the networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from csist_jax import models, physics, solvers
from csist_jax.data import csist100k
from csist_jax.refine import fit, localize
from experiments.benchmarks.common import Row, best_time


def _plain_lm_iteration(theta, active, z):
    """The textbook LM step: dense ``J`` by autodiff through ``render``, ``J^T J`` over all 121 pixels."""

    def residual(t):
        t = t * jnp.stack([jnp.ones_like(active), jnp.ones_like(active), active], -1)
        return fit.censored_residual(physics.render(t), z, 255.0).reshape(-1)

    r = residual(theta)
    J = jax.jacfwd(residual)(theta).reshape(r.shape[0], -1)
    H = J.T @ J
    free = jnp.repeat(active, 3) > 0
    A = H + jnp.diag(jnp.where(free, 1e-2 * jnp.diagonal(H) + 1e-9, 1.0))
    step = -jnp.linalg.solve(A, J.T @ r).reshape(theta.shape)
    trial = theta + step
    better = jnp.sum(residual(trial) ** 2) < jnp.sum(r * r)
    return jnp.where(better, trial, theta)


def run(quick: bool = False) -> list[Row]:
    n = 1024 if quick else 4096
    data = csist100k.generate(seed=0, n=n, start=2_000_000_000)
    images = jnp.asarray(data["image"], jnp.float32)
    rows = []

    t_loc = best_time(lambda: localize(images)[0], repeats=3)
    rows.append(
        Row(
            "refine",
            f"localize, image only (batch {n})",
            n / t_loc,
            "frames/s",
            target=">= 1000 fr/s",
            note="greedy orders 1-5, escape moves, top-2 polish",
        )
    )

    theta = jnp.asarray(data["targets"]) + 0.02
    active = (jnp.arange(5)[None, :] < jnp.asarray(data["count"])[:, None]).astype(jnp.float32)
    steps = 20
    ours = jax.jit(
        jax.vmap(lambda t, a, z: fit.lm_fit(t, a, z, sigma=0.5, saturation=255.0, iterations=steps)[0])
    )

    @jax.jit
    def plain(theta, active, images):
        def one(t, a, z):
            return jax.lax.fori_loop(0, steps, lambda _, t: _plain_lm_iteration(t, a, z), t)

        return jax.vmap(one)(theta, active, images)

    t_ours = best_time(lambda: ours(theta, active, images), repeats=3)
    t_plain = best_time(lambda: plain(theta, active, images), repeats=3)
    rows += [
        Row(
            "refine",
            f"LM fit, 5 sources, {steps} it, separable J^T J (batch {n})",
            n / t_ours,
            "frames/s",
            ratio=t_plain / t_ours,
            note="ratio vs dense autodiff Jacobian LM, same run",
        ),
        Row(
            "refine", f"LM fit, 5 sources, {steps} it, dense autodiff J (batch {n})", n / t_plain, "frames/s"
        ),
    ]

    # the price of refinement next to producing the HR map it can be seeded with
    op = physics.sampling_operator(3)
    t_fista = best_time(lambda: solvers.fista(images, op, 10.0, 100), repeats=3)
    rows.append(
        Row(
            "refine",
            f"FISTA 100 it, HR map (batch {n})",
            n / t_fista,
            "frames/s",
            ratio=t_fista / t_loc,
            note="ratio = localize speed / this",
        )
    )
    maps = solvers.fista(images, op, 10.0, 100)
    t_seeded = best_time(lambda: localize(images, hr_maps=maps)[0], repeats=2)
    rows.append(Row("refine", f"localize seeded by HR maps (batch {n})", n / t_seeded, "frames/s"))
    net = models.create("dista_net", c=3)
    variables = net.init(jax.random.PRNGKey(0), images[:2])
    apply = jax.jit(net.apply)
    t_net = best_time(lambda: apply(variables, images), repeats=2)
    rows.append(
        Row(
            "refine",
            f"DISTA-Net forward, c=3 (batch {n})",
            n / t_net,
            "frames/s",
            ratio=t_net / t_loc,
            note="ratio = localize speed / this",
        )
    )
    return rows
