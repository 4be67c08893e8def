"""Learned step sizes and thresholds against analytic ISTA, on the grid and after continuous refinement.

    python -m experiments.refine_learned_steps --train=4000 --test=2000 --steps=300

ISTA with ``T`` iterations, ``x_{k+1} = max(x_k - t_k Phi^T (Phi x_k - z) - t_k lam_k, 0)`` from ``x_0 = 0``
(``csist_jax.solvers.gradient_step`` and ``nonneg_soft_threshold``). Analytic: ``t_k = 1 / ||Phi||^2`` and
``lam_k = 10`` for every ``k``. Learned: the ``2 T`` scalars ``(t_k, lam_k)`` (kept positive through their
logarithms) trained by Adam on ``mean (x_T - s)^2`` against the HR labels (the train split of seed 0),
starting from the analytic values: the unfolded network with nothing but its step sizes and thresholds
trainable. Both are scored on their grid and after ``localize`` seeded by their maps (the test split of
seed 0; ``csist100k.SPLIT_START``). About 3 minutes on a 2-core CPU.
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


def unrolled(params, images, op):
    """``T`` ISTA iterations with per-iteration step ``exp(log_t[k])`` and threshold ``exp(log_lam[k])``."""
    x = jnp.zeros(images.shape[:-2] + op.in_shape, images.dtype)
    for log_t, log_lam in zip(params["log_t"], params["log_lam"], strict=True):
        t = jnp.exp(log_t)
        x = solvers.nonneg_soft_threshold(solvers.gradient_step(x, images, op, t), t * jnp.exp(log_lam))
    return x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    c = 3
    op = physics.sampling_operator(c)
    train = csist100k.generate(0, args.train, start=csist100k.SPLIT_START["train"])
    test = csist100k.generate(0, args.test, start=csist100k.SPLIT_START["test"])
    z_train = jnp.asarray(train["image"], jnp.float32)
    s_train = physics.hr_label(train["targets"], c)
    z_test = jnp.asarray(test["image"], jnp.float32)
    step = float(solvers.default_step(op))
    analytic = {
        "log_t": jnp.full(args.iterations, jnp.log(step)),
        "log_lam": jnp.full(args.iterations, jnp.log(10.0)),
    }

    def loss(params, z, s):
        return losses.regression(unrolled(params, z, op), s)

    opt = optax.adam(args.lr)

    @jax.jit
    def update(params, state, key):
        idx = jax.random.choice(key, z_train.shape[0], (64,), replace=False)
        value, grad = jax.value_and_grad(loss)(params, z_train[idx], s_train[idx])
        updates, state = opt.update(grad, state)
        return optax.apply_updates(params, updates), state, value

    params, state = analytic, opt.init(analytic)
    for i in range(args.steps):
        params, state, _ = update(params, state, jax.random.fold_in(jax.random.PRNGKey(0), i))

    rows = []
    for name, p in (("analytic ISTA", analytic), ("learned steps and thresholds", params)):
        maps = jax.jit(unrolled)(p, z_test, op)
        grid = tables.score_maps(maps, test, c, 50.0)
        points, count = localize(test["image"], hr_maps=maps, c=c)
        refined = evaluation.point_scores({"points": points, "count": count}, test)
        rows.append(
            dict(
                method=name,
                train_loss=float(loss(p, z_train[:1000], s_train[:1000])),
                grid_mAP=grid["mAP"],
                refined_mAP=refined["mAP"],
                steps=[float(v) for v in jnp.exp(p["log_t"])],
                lams=[float(v) for v in jnp.exp(p["log_lam"])],
            )
        )
        print({k: v for k, v in rows[-1].items() if k not in ("steps", "lams")}, flush=True)
    lines = [
        f"**Learned step sizes and thresholds ({args.iterations} ISTA iterations, c = 3; "
        f"{args.train} training frames, {args.steps} Adam steps; {args.test} test frames)**",
        "",
    ]
    header = ["method", "label MSE (train)", "CSO-mAP on its grid", "+ localize", "steps t_k (first, last)"]
    header += ["thresholds lam_k (first, last)"]
    body = [
        [r["method"], f"{r['train_loss']:.3f}", f"{100 * r['grid_mAP']:.2f}", f"{100 * r['refined_mAP']:.2f}"]
        + [f"{r['steps'][0]:.3f}, {r['steps'][-1]:.3f}", f"{r['lams'][0]:.2f}, {r['lams'][-1]:.2f}"]
        for r in rows
    ]
    text = "\n".join(lines + [report.markdown_table(header, body)])
    print(text)
    if args.out:
        report.write(os.path.join(args.out, "refine_learned_steps"), text, rows)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
