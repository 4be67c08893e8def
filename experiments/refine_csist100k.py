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
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from csist_jax import metrics, models, physics, refine, solvers
from csist_jax.data import csist100k
from csist_jax.refine import localize, position_crb, rmse_bound

TEST_START = csist100k.SPLIT_START["test"]
THRESHOLD = 50.0  # CSIST-100K map brightness threshold (SPEC sec. 6)
MATCH = 0.5  # px: RMSE over one-to-one matches closer than this
BATCH = 2000


@jax.jit
def oracle_fit(images, targets, count):
    """LM from the true positions and count; scored like ``localize`` (predicted position error)."""

    def one(z, t, k):
        active = (jnp.arange(t.shape[0]) < k).astype(z.dtype)
        theta, _, H = refine.fit_one(t, active, z, sigma=0.5, saturation=255.0, iterations=30)
        _, score = refine.position_score(H, active, refine.pixel_variance(z, 0.0))
        return jnp.concatenate([theta[:, :2] * active[:, None], score[:, None]], axis=1)

    return jax.vmap(one)(images, targets, count)


def _timed(fn):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0


def point_row(name, points, point_count, data, seconds=None, note=""):
    scores = metrics.cso_map_from_points(points, point_count, data["targets"], data["count"])
    rmse = metrics.localization_rmse(points, point_count, data["targets"], data["count"], max_distance=MATCH)
    return dict(
        method=name,
        **scores,
        count_accuracy=metrics.count_accuracy(np.asarray(point_count), data["count"]),
        rmse=rmse["rmse"],
        fps=(len(data["count"]) / seconds) if seconds else None,
        note=note,
    )


def map_row(name, maps, data, seconds=None, note=""):
    scores = metrics.cso_map_from_maps(maps, data["targets"], data["count"], 3, THRESHOLD)
    return dict(
        method=name,
        **scores,
        count_accuracy=None,
        rmse=None,
        fps=(len(data["count"]) / seconds) if seconds else None,
        note=note,
    )


def markdown(rows, title):
    head = (
        "| method | CSO-mAP | AP05 | AP10 | AP15 | AP20 | AP25 | count acc. | RMSE (px) | frames/s | notes |"
    )
    lines = [f"**{title}**", "", head, "|" + "---|" * 11]
    for r in rows:
        cells = [r["method"], f"{100 * r['mAP']:.2f}"] + [
            f"{100 * r[k]:.2f}" for k in ("AP05", "AP10", "AP15", "AP20", "AP25")
        ]
        cells.append("" if r["count_accuracy"] is None else f"{100 * r['count_accuracy']:.1f} %")
        cells.append("" if r["rmse"] is None else f"{r['rmse']:.4f}")
        cells.append("" if r["fps"] is None else f"{r['fps']:,.0f}")
        cells.append(r["note"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def crb_table(points, point_count, data):
    per = metrics.by_count(points, point_count, data["targets"], data["count"], max_distance=MATCH)
    bound = np.asarray(position_crb(data["targets"]))
    lines = [
        "| targets | images | count acc. | RMSE (px) | CRB (px) | RMSE / CRB |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
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
        lines.append(
            f"| {k} | {r['images']} | {100 * r['count_accuracy']:.1f} % | {r['rmse']:.4f} | {b:.4f} | "
            f"{r['rmse'] / b:.2f} |"
        )
    return "\n".join(lines), rows


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

    data = csist100k.generate(0, args.test_size, start=TEST_START, return_clean=True)
    images = data["image"].astype(np.float32)
    stored, clean = [], []

    labels = physics.hr_label(data["targets"], 3)
    stored.append(map_row("exact HR label, on its grid", labels, data, note="grid ceiling at c = 3"))

    op = physics.sampling_operator(3)
    maps, t = _timed(lambda: solvers.fista(images, op, args.fista_lam, args.fista_iterations))
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
    (points, count), t = _timed(lambda: localize(images, batch_size=BATCH))
    stored.append(point_row("**localize, image only**", points, count, data, t))
    (seeded, seeded_count), t_s = _timed(lambda: localize(images, hr_maps=maps, batch_size=BATCH))
    stored.append(
        point_row(
            "localize seeded by FISTA maps", seeded, seeded_count, data, t_s, note="frames/s excludes FISTA"
        )
    )
    for path in args.checkpoint:
        module, variables = models.load_checkpoint(path)
        parts = os.path.abspath(path).rstrip("/").split("/")
        name = parts[-2] if parts[-1] == "best" else parts[-1]  # a trainer's <workdir>/best
        apply = models.jit(module.apply, inference_of=module)
        net_maps, t = _timed(
            lambda apply=apply, variables=variables: jnp.concatenate(
                [apply(variables, jnp.asarray(images[i : i + 1024])) for i in range(0, len(images), 1024)]
            )
        )
        stored.append(map_row(f"network {name}, on its grid", net_maps, data, t))
        (p, k), t = _timed(lambda net_maps=net_maps: localize(images, hr_maps=net_maps, batch_size=BATCH))
        stored.append(
            point_row(
                f"localize seeded by network {name}", p, k, data, t, note="frames/s excludes the network"
            )
        )
    oracle, _ = _timed(
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

    (cpoints, ccount), t = _timed(lambda: localize(data["clean"], batch_size=BATCH))
    clean.append(point_row("**localize, image only**", cpoints, ccount, data, t))
    coracle, _ = _timed(
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
        markdown(stored, f"CSIST-100K test frames as stored (8-bit, clipped), n = {n:,}"),
        "",
        markdown(clean, f"The same frames unquantised (float), n = {n:,}"),
        "",
        "**Localisation RMSE of `localize` (8-bit) against the Cramer-Rao bound, per target count**",
        "",
    ]
    table, crb_rows = crb_table(np.asarray(points), np.asarray(count), data)
    text.append(table)
    report = "\n".join(text)
    print(report)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "refine_csist100k.md"), "w") as f:
            f.write(report + "\n")
        with open(os.path.join(args.out, "refine_csist100k.json"), "w") as f:
            json.dump({"stored": stored, "clean": clean, "crb": crb_rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
