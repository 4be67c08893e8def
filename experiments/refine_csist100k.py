"""Beyond the grid on CSIST-100K: continuous localisation against grid-scored maps, and the CRB.

    python -m experiments.refine_csist100k --test-size=10000 --out=outputs/refine_csist100k
    python -m experiments.refine_csist100k --checkpoint=runs/cpu_dista_net/best   # + a network

Test frames: the generator test split (``csist100k.SPLIT_START``, seed 0), as stored (8-bit, rounded,
clipped at 255) and unquantised (``clean``). Rows:

* the exact HR label map scored on its grid (the ceiling of every grid method at ``c = 3``);
* FISTA (analytic, ``lam`` 10, 100 iterations) scored on its grid, and ``localize`` seeded by its maps;
* ``localize`` from the image alone;
* every ``--checkpoint`` network scored on its grid, and ``localize`` seeded by its maps;
* the reference "oracle" fit: Levenberg-Marquardt started at the true positions with the true count.

Then, per true target count, the localisation RMSE of ``localize`` (detections matched one-to-one
within 0.5 px) next to the Cramer-Rao bound (8-bit rounding as variance 1/12). About 3 minutes for
10,000 frames on a 2-core CPU. Prints markdown tables; with ``--out`` also writes them and JSON rows.
"""

from __future__ import annotations

import argparse
import os

import jax.numpy as jnp
import numpy as np

from csist_jax import models, physics, solvers
from csist_jax.data import csist100k
from csist_jax.refine import localize, position_crb, rmse_bound
from csist_jax.train import evaluation
from experiments import report, tables
from experiments.tables import map_row, oracle_fit, point_row, point_table

TEST_START = csist100k.SPLIT_START["test"]
BATCH = 2000


def crb_table(points, point_count, data):
    """Per true target count: count accuracy and RMSE of the detections beside the Cramer-Rao bound."""
    per = evaluation.point_scores_by_count({"points": points, "count": point_count}, data)
    bound = np.asarray(position_crb(data["targets"]))
    rows, body = [], []
    for k, r in per.items():
        sel = data["count"] == k
        b = rmse_bound(bound[sel], data["count"][sel])
        rows.append(
            dict(
                count=int(k),
                images=int(r["images"]),
                count_accuracy=r["count_accuracy"],
                rmse=r["rmse"],
                crb=b,
            )
        )
        acc = report.cell(r["count_accuracy"], ".1f", scale=100) + " %"
        body.append([str(k), str(r["images"]), acc, f"{r['rmse']:.4f}", f"{b:.4f}", f"{r['rmse'] / b:.2f}"])
    header = ["targets", "images", "count acc.", "RMSE (px)", "CRB (px)", "RMSE / CRB"]
    return report.markdown_table(header, body), rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--test-size", type=int, default=10_000)
    parser.add_argument("--checkpoint", action="append", default=[], help="a saved network (repeatable)")
    parser.add_argument("--fista-lam", type=float, default=10.0)
    parser.add_argument("--fista-iterations", type=int, default=100)
    parser.add_argument("--out", default="", help="directory for the markdown tables and JSON rows")
    args = parser.parse_args(argv)
    tables.require(args.checkpoint)

    data = csist100k.generate(0, args.test_size, start=TEST_START, return_clean=True)
    images = data["image"].astype(np.float32)
    stored, clean = [], []

    labels = physics.hr_label(data["targets"], 3)
    stored.append(map_row("exact HR label, on its grid", labels, data, note="grid ceiling at c = 3"))

    op = physics.sampling_operator(3)
    maps, t = report.timed(lambda: solvers.fista(images, op, args.fista_lam, args.fista_iterations))
    stored.append(
        map_row(
            "FISTA map, on its grid",
            maps,
            data,
            t,
            note=f"lam {args.fista_lam:g}, {args.fista_iterations} it",
        )
    )
    # every call runs in chunks of BATCH frames; compile that shape outside the timings
    warm = slice(0, min(len(images), BATCH))
    localize(images[warm])
    localize(images[warm], hr_maps=maps[warm])
    (points, count), t = report.timed(lambda: localize(images, batch_size=BATCH))
    stored.append(point_row("**localize, image only**", points, count, data, t))
    (seeded, seeded_count), t_s = report.timed(lambda: localize(images, hr_maps=maps, batch_size=BATCH))
    stored.append(
        point_row(
            "localize seeded by FISTA maps", seeded, seeded_count, data, t_s, note="frames/s excludes FISTA"
        )
    )
    for path in args.checkpoint:
        module, variables = models.load_checkpoint(path)
        parts = os.path.abspath(path).rstrip("/").split("/")
        name = parts[-2] if parts[-1] == "best" else parts[-1]  # a trainer's <workdir>/best
        apply = evaluation.make_apply(module, evaluation.make_mesh())
        net_maps, t = report.timed(
            lambda m=module, v=variables, apply=apply: evaluation.predict(
                m, v, images, min(1024, len(images)), apply=apply
            )
        )
        stored.append(map_row(f"network {name}, on its grid", net_maps, data, t))
        (p, k), t = report.timed(
            lambda net_maps=net_maps: localize(images, hr_maps=net_maps, batch_size=BATCH)
        )
        stored.append(
            point_row(
                f"localize seeded by network {name}", p, k, data, t, note="frames/s excludes the network"
            )
        )
    oracle, _ = report.timed(
        lambda: oracle_fit(jnp.asarray(images), jnp.asarray(data["targets"]), jnp.asarray(data["count"]))
    )
    stored.append(
        point_row(
            "oracle fit (true start and count)",
            oracle,
            data["count"],
            data,
            note="reference, not a method",
        )
    )

    (cpoints, ccount), t = report.timed(lambda: localize(data["clean"], batch_size=BATCH))
    clean.append(point_row("**localize, image only**", cpoints, ccount, data, t))
    coracle, _ = report.timed(
        lambda: oracle_fit(
            jnp.asarray(data["clean"]), jnp.asarray(data["targets"]), jnp.asarray(data["count"])
        )
    )
    clean.append(
        point_row(
            "oracle fit (true start and count)",
            coracle,
            data["count"],
            data,
            note="reference, not a method",
        )
    )

    n = args.test_size
    text = [
        point_table(stored, f"CSIST-100K test frames as stored (8-bit, clipped), n = {n:,}"),
        "",
        point_table(clean, f"The same frames unquantised (float), n = {n:,}"),
        "",
        "**Localisation RMSE of `localize` (8-bit) against the Cramer-Rao bound, per target count**",
        "",
    ]
    table, crb_rows = crb_table(np.asarray(points), np.asarray(count), data)
    text.append(table)
    markdown = "\n".join(text)
    print(markdown)
    if args.out:
        dump = {"stored": stored, "clean": clean, "crb": crb_rows}
        report.write(os.path.join(args.out, "refine_csist100k"), markdown, dump)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
