"""DeRefNet on SeqCSIST windows: a compact Optax training loop with CSO-mAP validation.

    python -m experiments.train_derefnet --trajectories=350 --steps=300 --out=runs/derefnet   # CPU scale
    python -m experiments.train_derefnet --trajectories=3500 --steps=100000 --batch=64   # GPU/TPU

Windows of 5 frames are cut from generated trajectories (``csist_jax.data.seqcsist``); each predicts its
centre frame's HR label, and the network receives the centre frame's true index. Published recipe (SPEC
sec. 7): Adam, lr 1e-4, weight decay 1e-5; the loss is ``csist_jax.train.losses.derefnet_loss``,
by default the objective the toolkit trains (``--objective=toolkit``; ``--objective=paper`` for the
paper's weights 1, 0.01, 0.01). Validation scores the centre frames of the validation split's
first trajectories (``seqcsist.SPLIT_START``) with CSO-mAP at the SeqCSIST brightness threshold 70. Writes
``<out>/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from csist_jax import metrics, models, physics
from csist_jax.data import seqcsist
from csist_jax.train import losses

THRESHOLD = 70.0  # SeqCSIST brightness threshold of the detections (SPEC sec. 6)
PUBLISHED_MAP = 51.55  # DeRefNet on SeqCSIST, SPEC sec. 9 (x100)


def make_train_step(net, tx, objective: str = "toolkit"):
    """A pure jitted update ``(params, opt_state, constants, windows, index, label) -> (.., loss, parts)``
    of ``losses.derefnet_loss(..., objective=objective)`` for a network of ``net.n_frames``-frame
    trajectories."""
    if objective not in losses.DEREFNET_OBJECTIVES:
        raise ValueError(f"objective must be one of {losses.DEREFNET_OBJECTIVES}, got {objective!r}")

    @models.jit(donate_argnums=(0, 1))
    def step(params, opt_state, constants, windows, index, label):
        def loss_fn(p):
            out, aux = net.apply({"params": p, **constants}, windows, index, return_aux=True)
            return losses.derefnet_loss(out, aux, label, objective=objective, n_frames=net.n_frames)

        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, parts

    return step


def evaluate(net, variables, data: dict, c: int, batch: int = 256) -> dict:
    """CSO-mAP of the centre-frame HR maps of ``data`` (a :func:`seqcsist.windows` output)."""
    apply = models.jit(net.apply)
    maps = [
        np.asarray(
            apply(
                variables,
                jnp.asarray(data["image"][i : i + batch], jnp.float32),
                data["frame"][i : i + batch],
            )
        )
        for i in range(0, len(data["count"]), batch)
    ]
    return metrics.cso_map_from_maps(np.concatenate(maps), data["targets"], data["count"], c, THRESHOLD)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--trajectories", type=int, default=350, help="training trajectories (16 windows each)"
    )
    parser.add_argument("--val-trajectories", type=int, default=50)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-5)
    parser.add_argument("--c", type=int, default=3)
    parser.add_argument(
        "--objective",
        choices=losses.DEREFNET_OBJECTIVES,
        default="toolkit",
        help="training objective: the toolkit's (default) or the paper's weights (1, 0.01, 0.01)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/derefnet")
    args = parser.parse_args(argv)
    if min(args.trajectories, args.val_trajectories, args.steps, args.batch) < 1:
        parser.error("--trajectories, --val-trajectories, --steps and --batch must be >= 1")
    for flag, count, split in (
        ("--trajectories", args.trajectories, "train"),
        ("--val-trajectories", args.val_trajectories, "val"),
    ):
        if count > seqcsist.SPLIT_SIZE[split]:
            parser.error(f"{flag} must be <= {seqcsist.SPLIT_SIZE[split]} (the {split} split), got {count}")
    os.makedirs(args.out, exist_ok=True)

    train = seqcsist.windows(
        seqcsist.generate(args.seed, args.trajectories, start=seqcsist.SPLIT_START["train"])
    )
    val = seqcsist.windows(
        seqcsist.generate(args.seed, args.val_trajectories, start=seqcsist.SPLIT_START["val"])
    )
    labels = np.asarray(physics.hr_label(train["targets"], args.c))
    op = physics.sampling_operator(args.c)
    net = models.create("derefnet", c=args.c, q_init=np.asarray(physics.q_init(labels, op)))
    key = jax.random.PRNGKey(args.seed)
    variables = net.init(key, jnp.asarray(train["image"][:2], jnp.float32), train["frame"][:2])
    params, constants = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    tx = optax.chain(optax.add_decayed_weights(args.weight_decay), optax.adam(args.lr))
    opt_state = tx.init(params)
    step = make_train_step(net, tx, args.objective)
    rng = np.random.default_rng(args.seed)
    n = len(train["count"])
    bar = tqdm(range(args.steps), desc="derefnet", unit="step")
    for _ in bar:
        idx = rng.choice(n, size=min(args.batch, n), replace=False)
        params, opt_state, loss, parts = step(
            params,
            opt_state,
            constants,
            jnp.asarray(train["image"][idx], jnp.float32),
            jnp.asarray(train["frame"][idx]),
            jnp.asarray(labels[idx]),
        )
        if not np.isfinite(float(loss)):
            raise FloatingPointError(f"non-finite DeRefNet loss {float(loss)}; lower --lr")
        bar.set_postfix(loss=f"{float(loss):.1f}", mse=f"{float(parts['regression']):.1f}")
    score = evaluate(net, {"params": params, **constants}, val, args.c)
    print(
        f"\nDeRefNet after {args.steps} steps on {n} windows: val CSO-mAP {100 * score['mAP']:.2f} "
        f"(published, full scale: {PUBLISHED_MAP})"
    )
    result = {"args": vars(args), "val": score}
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
