"""Learned against analytic localisation on CSIST-100K: grid networks, ``refine.localize``, the learned
localiser, and the localiser polished by one fit, on the same test frames in one run.

    python -m experiments.localizer_table --checkpoint=runs/cpu_localizer/best --out=outputs/localizer_table
    python -m experiments.localizer_table --test-size=2000 --grid=experiments/checkpoints/ista_net_plus_c3_cpu

Test frames: the generator's test split (``csist100k.SPLIT_START``, seed 0), as stored (8-bit, rounded,
clipped at 255) and unquantised (float). Rows:

* the exact HR label scored on its grid (the ceiling of every grid method at ``c = 3``), and every
  ``--grid`` network scored on its grid;
* ``refine.localize`` from the image alone (the model-order search);
* the learned localiser (``--checkpoint``), decoded by ``localizer.points`` at threshold 0.5 (its
  count) and at ``--low-threshold`` (more low-probability detections: a higher CSO-mAP, a worse count);
* the localiser + polish (``refine.polish``: one short fit of its points, kept where the fit's cost is at
  most ``--max-cost``, chosen on validation frames: the sweep is printed), and + polish + fallback
  (images whose polish was not kept refitted by ``refine.localize``'s full search);
* the oracle fit (LM from the true positions and count: a reference, not a method).

Frames/s: the best of ``--repeats`` timed calls on all test frames after an untimed one, each method in
its own best batching (the networks in chunks of ``--batch``, ``localize`` in its default chunks), on
this machine in this run; the ratio to ``localize`` is the column to read. Then, per true target count,
the RMSE (matches within 0.5 px) of each point method next to the Cramer-Rao bound. About 5 minutes for
10,000 frames on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from csist_jax import models, physics, refine
from csist_jax.data import csist100k
from csist_jax.models import localizer
from csist_jax.refine.polish import MAX_COST
from csist_jax.train import evaluation
from experiments import report, tables
from experiments.tables import map_row, oracle_fit, point_row, point_table

TEST_START = csist100k.SPLIT_START["test"]
VAL_START = csist100k.SPLIT_START["val"]


def _timed(fn, repeats: int):
    """``(result, seconds)``: the fastest of ``repeats`` calls after an untimed one (``report.timed``)."""
    return report.timed(fn, repeats=repeats, warmup=1)


def localizer_runner(module, variables, batch: int):
    """``run(images, threshold) -> points dict``: the network and its decoding, jitted, in chunks."""

    @models.jit(inference_of=module)
    def decode(v, x, threshold):
        return localizer.points(module.apply(v, x), threshold=threshold)

    def run(images, threshold):
        parts = [
            decode(variables, jnp.asarray(images[i : i + batch]), threshold)
            for i in range(0, len(images), batch)
        ]
        return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)

    return run


def gate_sweep(run, costs=(10.0, 15.0, 25.0, 40.0, 80.0), n: int = 2000) -> tuple[str, list]:
    """The polish gate on ``n`` validation frames: the share of images kept and CSO-mAP per ``max_cost``."""
    data = csist100k.generate(0, n, start=VAL_START)
    images = jnp.asarray(data["image"], jnp.float32)
    found = run(images, localizer.THRESHOLD)
    right = np.asarray(found["count"]) == data["count"]
    title = (
        f"**Polish gate on {n:,} validation frames** (8-bit; the localiser's count is right on "
        f"{100 * right.mean():.1f} % of them)"
    )
    rows, body = [], []
    for c in costs:
        out = refine.polish(images, found, max_cost=c)
        kept = np.asarray(out["accepted"])
        score = evaluation.point_scores(out, data)["mAP"]
        kept_right = right[kept].mean() if kept.any() else float("nan")  # nan: no frame in the group
        rejected_right = right[~kept].mean() if (~kept).any() else float("nan")
        rows.append(dict(max_cost=c, kept=kept.mean(), kept_right=kept_right, mAP=score))
        shares = [f"{100 * x:.1f} %" for x in (kept.mean(), kept_right, rejected_right)]
        body.append([f"{c:g}", *shares, f"{100 * score:.2f}"])
    header = ["max_cost", "polish kept", "kept, right count", "not kept, right count", "CSO-mAP"]
    return f"{title}\n\n" + report.markdown_table(header, body), rows


def point_methods(images, run, args):
    """``[(name, result, seconds, note)]`` of localize and the localiser's variants on ``images``."""
    out = []
    loc, t = _timed(lambda: refine.fit_sources(np.asarray(images)), args.repeats)
    out.append(("**refine.localize**", loc, t, "model-order search"))
    found, t_net = _timed(lambda: run(images, localizer.THRESHOLD), args.repeats)
    out.append(("**learned localiser**", found, t_net, f"p >= {localizer.THRESHOLD:g}"))
    low, t_low = _timed(lambda: run(images, args.low_threshold), args.repeats)
    out.append(("learned localiser", low, t_low, f"p >= {args.low_threshold:g}"))
    polished, t_pol = _timed(
        lambda: refine.polish(images, run(images, localizer.THRESHOLD), max_cost=args.max_cost), args.repeats
    )
    kept = float(np.mean(np.asarray(polished["accepted"])))
    out.append(("**learned + polish**", polished, t_pol, f"fit kept on {100 * kept:.1f} %"))
    full, t_full = _timed(
        lambda: refine.polish(
            images, run(images, localizer.THRESHOLD), max_cost=args.max_cost, fallback=True
        ),
        args.repeats,
    )
    out.append(("learned + polish + fallback", full, t_full, f"localize on {100 * (1 - kept):.1f} %"))
    return out


def crb_lines(methods, data) -> tuple[str, list]:
    """Per true target count: each method's RMSE (matches within 0.5 px) and the Cramer-Rao bound."""
    bound = np.asarray(refine.position_crb(data["targets"]))
    per = {
        f"{name.strip('*')} ({note})": evaluation.point_scores_by_count(r, data)
        for name, r, _, note in methods
    }
    names = list(per)
    rows, body = [], []
    for k in sorted(per[names[0]]):
        sel = data["count"] == k
        crb = refine.rmse_bound(bound[sel], data["count"][sel])
        rmses = [per[n][k]["rmse"] for n in names]
        rows.append(dict(count=int(k), images=int(sel.sum()), crb=crb, **dict(zip(names, rmses))))
        body.append([str(k), str(int(sel.sum())), *(f"{r:.4f}" for r in rmses), f"{crb:.4f}"])
    return report.markdown_table(["targets", "images", *names, "CRB (px)"], body), rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="runs/cpu_localizer/best", help="a saved learned localiser")
    parser.add_argument(
        "--grid",
        action="append",
        default=None,
        help="a saved grid network (repeatable; default: the shipped one)",
    )
    parser.add_argument("--test-size", type=int, default=10_000)
    parser.add_argument("--val-size", type=int, default=2000, help="validation frames of the gate sweep")
    parser.add_argument("--low-threshold", type=float, default=0.1)
    parser.add_argument("--max-cost", type=float, default=MAX_COST, help="the polish gate (refine.polish)")
    parser.add_argument("--batch", type=int, default=500, help="frames per network call")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="", help="directory for the markdown tables and JSON rows")
    args = parser.parse_args(argv)
    if not 1 <= args.test_size <= csist100k.SPLIT_SIZE["test"]:
        parser.error(f"--test-size must be in 1..{csist100k.SPLIT_SIZE['test']}, got {args.test_size}")
    grids = args.grid if args.grid is not None else [tables.shipped("ista_net_plus_c3_cpu")]
    tables.require([args.checkpoint, *grids])
    module, variables = models.load_checkpoint(args.checkpoint)
    if not models.is_localizer(module):
        parser.error(
            f"--checkpoint {args.checkpoint} holds a {type(module).__name__}, not a learned localiser"
        )
    run = localizer_runner(module, variables, args.batch)

    data = csist100k.generate(0, args.test_size, start=TEST_START, return_clean=True)
    n = args.test_size
    text, dump = [], {}
    gate, dump["gate"] = gate_sweep(run, n=args.val_size)
    text += [gate, ""]
    for frames, title in (("image", "as stored (8-bit, clipped)"), ("clean", "unquantised (float)")):
        images = jnp.asarray(data[frames], jnp.float32)
        rows = []
        if frames == "image":
            labels = physics.hr_label(data["targets"], 3)
            rows.append(map_row("exact HR label, on its grid", labels, data, note="grid ceiling at c = 3"))
            for path in grids:
                net, net_vars = models.load_checkpoint(path)
                apply = evaluation.make_apply(net, evaluation.make_mesh())
                maps, t = _timed(
                    lambda net=net, v=net_vars, apply=apply, images=images: evaluation.predict(
                        net, v, images, min(args.batch, n), apply=apply
                    ),
                    args.repeats,
                )
                name = os.path.basename(os.path.abspath(path).rstrip("/"))
                rows.append(map_row(f"{type(net).__name__} `{name}`, on its grid", maps, data, t))
        methods = point_methods(images, run, args)
        base = None
        for name, r, t, note in methods:
            row = point_row(name, np.asarray(r["points"]), np.asarray(r["count"]), data, t, note)
            base = row["fps"] if base is None else base
            row["note"] = f"{note}; {row['fps'] / base:.1f}x localize"
            rows.append(row)
        oracle = oracle_fit(images, jnp.asarray(data["targets"]), jnp.asarray(data["count"]))
        rows.append(
            point_row("oracle fit (true start and count)", oracle, data["count"], data, note="reference")
        )
        text += [point_table(rows, f"CSIST-100K test frames {title}, n = {n:,}"), ""]
        dump[frames] = rows
        if frames == "image":
            table, dump["crb"] = crb_lines(methods, data)
            text += [
                "**Localisation RMSE (px) per true target count, 8-bit frames, against the CRB**",
                "",
                table,
                "",
            ]
    markdown = "\n".join(text)
    print(markdown)
    if args.out:
        report.write(os.path.join(args.out, "localizer_table"), markdown, dump)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
