"""Learned against analytic sampling operator: does learning ``Phi`` from data help the grid solver?

    python -m experiments.refine_learned_operator --train=4000 --test=2000 --steps=400

A learned operator is a ``csist_jax.physics.DenseOperator`` whose matrix is a parameter, fitted by Adam to
``min_A mean ||A s_i - z_i||^2`` (``csist_jax.train.losses.data_misfit``) over training pairs (HR label
``s_i`` at ``c = 3``, stored 8-bit image ``z_i``; the train split of seed 0), started from the analytic
``Phi`` and from random (``N(0, 1e-3)``). Each operator is then used by FISTA (``lam`` 10, 100 iterations,
step ``1 / ||A||^2``) on the test frames (the test split of seed 0; ``csist100k.SPLIT_START``), scored on its
grid and after ``localize`` seeded by its maps. Also reported: the held-out data misfit ``mean ||A s - z||^2``
and the distance ``||A - Phi||_F / ||Phi||_F``. About 3 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import optax

from csist_jax import physics, solvers
from csist_jax.data import csist100k
from csist_jax.refine import localize
from csist_jax.train import evaluation, losses
from experiments import report, tables


def train_operator(A0, labels, images, steps, lr, batch, seed=0):
    """Adam on the data misfit of a dense operator; returns the learned matrix."""
    opt = optax.adam(lr)
    state = opt.init(A0)
    flat_s = labels.reshape(labels.shape[0], -1)
    flat_z = images.reshape(images.shape[0], -1)

    def loss(A, s, z):
        return losses.data_misfit(s @ A.T, z)

    @jax.jit
    def step(A, state, key):
        idx = jax.random.choice(key, flat_s.shape[0], (batch,), replace=False)
        value, grad = jax.value_and_grad(loss)(A, flat_s[idx], flat_z[idx])
        updates, state = opt.update(grad, state)
        return optax.apply_updates(A, updates), state, value

    A = A0
    key = jax.random.PRNGKey(seed)
    for i in range(steps):
        A, state, _ = step(A, state, jax.random.fold_in(key, i))
    return A, float(loss(A, flat_s, flat_z))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    c = 3
    train = csist100k.generate(0, args.train, start=csist100k.SPLIT_START["train"])
    test = csist100k.generate(0, args.test, start=csist100k.SPLIT_START["test"])
    s_train = jnp.asarray(physics.hr_label(train["targets"], c))
    z_train = jnp.asarray(train["image"], jnp.float32)
    s_test = jnp.asarray(physics.hr_label(test["targets"], c))
    z_test = jnp.asarray(test["image"], jnp.float32)
    analytic = physics.sampling_operator(c)
    phi = analytic.matrix()
    starts = {
        "analytic Phi": None,
        "learned, from Phi": phi,
        "learned, from random": 1e-3 * jax.random.normal(jax.random.PRNGKey(1), phi.shape),
    }
    rows = []
    for name, A0 in starts.items():
        if A0 is None:
            op = analytic
            train_misfit = float(jnp.mean(jnp.sum((analytic.forward(s_train) - z_train) ** 2, axis=(1, 2))))
        else:
            A, train_misfit = train_operator(A0, s_train, z_train, args.steps, args.lr, 256)
            op = physics.DenseOperator(A=A, size=11, hr=11 * c)
        misfit = float(jnp.mean(jnp.sum((op.forward(s_test) - z_test) ** 2, axis=(1, 2))))
        distance = float(jnp.linalg.norm(op.matrix() - phi) / jnp.linalg.norm(phi))
        maps = solvers.fista(z_test, op, 10.0, 100)
        grid = tables.score_maps(maps, test, c, 50.0)
        points, count = localize(test["image"], hr_maps=maps, c=c)
        refined = evaluation.point_scores({"points": points, "count": count}, test)
        rows.append(
            dict(
                operator=name,
                train_misfit=train_misfit,
                test_misfit=misfit,
                distance=distance,
                fista_grid_mAP=grid["mAP"],
                fista_refined_mAP=refined["mAP"],
            )
        )
        print(rows[-1], flush=True)
    lines = [
        f"**Learned against analytic operator (c = 3; {args.train} training frames, {args.steps} Adam steps; "
        f"{args.test} test frames)**",
        "",
    ]
    header = ["operator", "data misfit, train", "data misfit, test", "rel. distance to Phi"]
    header += ["FISTA on its grid", "FISTA + localize"]
    body = [
        [r["operator"], f"{r['train_misfit']:.1f}", f"{r['test_misfit']:.1f}", f"{r['distance']:.3f}"]
        + [f"{100 * r['fista_grid_mAP']:.2f}", f"{100 * r['fista_refined_mAP']:.2f}"]
        for r in rows
    ]
    text = "\n".join(lines + [report.markdown_table(header, body)])
    print(text)
    if args.out:
        report.write(os.path.join(args.out, "refine_learned_operator"), text, rows)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
