"""Quickstart: generate a CSIST-100K-protocol test set, unmix it with analytic ISTA and FISTA, score it.

    python -m experiments.quickstart                    # ~2-4 minutes on a 2-core CPU
    python -m experiments.quickstart --n-test 10000     # the published test-set size

Steps: a seeded validation set chooses each solver's lambda and iteration count (printed); the seeded
test set is then unmixed and scored with CSO-mAP (SPEC sec. 6, brightness threshold 50, c = 3), next to
the exact HR label (each target in its nearest HR cell) and the published numbers. A small trained
ISTA-Net+ shipped in ``experiments/checkpoints/`` (its training command is in the README there) adds a
learned row, and the continuous localisation of ``csist_jax.refine`` (from the image alone, and seeded
by the network's maps) adds the rows that leave the grid; the shipped learned localiser (points
straight from a small network, alone and with one gated ``refine.polish`` fit) adds the fast ones.
Frames per second are measured on the test set after compilation. A figure of a few test images
(input with the true and the fitted positions, the FISTA and network HR estimates) is written to
``<out>/quickstart.png`` and every number to ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

import csist_jax
from csist_jax import models, physics, refine, solvers
from csist_jax.data import csist100k
from csist_jax.models import localizer
from csist_jax.train import evaluation
from experiments import published, report, tables
from experiments.published import AP_KEYS

C = 3
THRESHOLD = 50.0  # CSIST-100K brightness threshold of the detections (SPEC sec. 6)
LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
ITERATIONS = (50, 100, 200, 500)
#: the published rows printed beside ours (``experiments.published.CSIST100K``)
PUBLISHED_ROWS = ("ista", "ista_net", "ista_net_plus", "dista_net")
CHECKPOINT = tables.shipped("ista_net_plus_c3_cpu")
LOCALIZER_CHECKPOINT = tables.shipped("localizer_c3_cpu")


def _frames_per_second(fn, n: int) -> float:
    """``n`` frames over the time of one ``fn()`` after a compiling call."""
    return n / report.timed(fn, warmup=1)[1]


def _maps(maps, data) -> dict:
    """CSO-mAP and APs of HR maps (``evaluation.map_scores``)."""
    scores = tables.score_maps(maps, data, C, THRESHOLD)
    return {k: scores[k] for k in AP_KEYS}


def _points(points, count, data) -> dict:
    """CSO-mAP and APs of continuous detections (``evaluation.point_scores``)."""
    scores = evaluation.point_scores({"points": points, "count": count}, data)
    return {k: scores[k] for k in AP_KEYS}


def figure(path, images, panels, targets, count, points=None, point_count=None, n_show: int = 4) -> None:
    """Input images (true positions, fitted positions) above one row per HR-map panel ``(title, maps)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 1 + len(panels)
    fig, axes = plt.subplots(rows, n_show, figsize=(3.2 * n_show, 3.3 * rows), constrained_layout=True)
    centres = np.asarray(physics.hr_cell_centres(C))
    half = 0.5 / C
    extent = (centres[0] - half, centres[-1] + half, centres[-1] + half, centres[0] - half)
    for k in range(n_show):
        truth = targets[k, : count[k]]
        ax = axes[0, k]
        ax.imshow(
            images[k], cmap="inferno", origin="upper", extent=(-0.5, 10.5, 10.5, -0.5), vmin=0, vmax=255
        )
        ax.set_title(f"input 11x11 ({count[k]} targets)")
        if points is not None:
            fit = points[k, : point_count[k]]
            ax.scatter(
                fit[:, 1], fit[:, 0], marker="X", s=45, c="lime", edgecolors="black", linewidths=0.6, zorder=3
            )
        for row, (title, maps) in enumerate(panels, start=1):
            axes[row, k].imshow(maps[k], cmap="viridis", origin="upper", extent=extent)
            axes[row, k].set_title(f"{title}, {11 * C}x{11 * C}")
        for a in axes[:, k]:
            # x is the row (vertical axis), y the column (horizontal): plot (y, x)
            a.scatter(truth[:, 1], truth[:, 0], s=60, facecolors="none", edgecolors="cyan", linewidths=1.5)
            cx, cy = np.mean(truth[:, 0]), np.mean(truth[:, 1])
            a.set_xlim(cy - 2.5, cy + 2.5)
            a.set_ylim(cx + 2.5, cx - 2.5)
            a.set_xlabel("y (column, px)")
            a.set_ylabel("x (row, px)")
    fig.suptitle(
        "CSIST-100K protocol test images, zoomed to 5x5 px: cyan circles = true positions, "
        "green crosses = continuous fit"
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table(rows: list[dict]) -> str:
    header = ["method", "lambda", "iters", *AP_KEYS, "frames/s"]
    body = [
        [r["method"], str(r.get("lam", "")), str(r.get("iters", ""))]
        + [report.cell(r.get(k), scale=100) for k in AP_KEYS]
        + [report.cell(r.get("fps"), ",.0f")]
        for r in rows
    ]
    return report.markdown_table(header, body, widths=[26, 6, 5, *(6 for _ in AP_KEYS), 9])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-test", type=int, default=3000, help="test images (default 3000)")
    parser.add_argument("--n-val", type=int, default=1000, help="validation images for tuning (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="base seed: val uses seed+1, test seed+2")
    parser.add_argument(
        "--out", default="outputs/quickstart", help="directory for the figure and results.json"
    )
    args = parser.parse_args(argv)
    if args.n_test < 1 or args.n_val < 1:
        parser.error("--n-test and --n-val must be >= 1")
    os.makedirs(args.out, exist_ok=True)

    print(f"jax {jax.__version__} on {jax.devices()[0].platform.upper()} ({jax.device_count()} device(s))")
    val = csist100k.generate(args.seed + 1, args.n_val)
    test = csist100k.generate(args.seed + 2, args.n_test)
    print(
        f"generated {args.n_val} validation + {args.n_test} test images (CSIST-100K protocol, 8-bit, c = {C})"
    )
    op = physics.sampling_operator(C)
    print(f"Phi: {op.size * op.size} x {op.hr * op.hr}, ||Phi||^2 = {float(op.norm_squared()):.3f}")

    test_images = jnp.asarray(test["image"], jnp.float32)
    rows = []
    # the exact label: each target's brightness in its nearest cell (SPEC sec. 6's 'grid ceiling'; a
    # network can rank its detections better and score above it, see experiments.grid_ranking)
    label = physics.hr_label(test["targets"], C)
    rows.append({"method": "exact HR label", **_maps(label, test)})

    final_maps = {}
    for solver in (solvers.ista, solvers.fista):
        name = solver.__name__.upper()
        lam, iters, val_map = tables.tune(solver, val, op, LAMBDAS, ITERATIONS, C, THRESHOLD)
        print(f"{name}: chose lambda = {lam}, iterations = {iters} (validation mAP {100 * val_map:.2f})")
        maps = solver(test_images, op, lam, iters)
        score = _maps(maps, test)
        fps = _frames_per_second(
            lambda solver=solver, lam=lam, iters=iters: solver(test_images, op, lam, iters), args.n_test
        )
        rows.append({"method": name, "lam": lam, "iters": iters, "fps": fps, **score})
        final_maps[name] = np.asarray(maps)

    net, variables = models.load_checkpoint(CHECKPOINT)
    apply = models.jit(net.apply, inference_of=net)
    net_maps = apply(variables, test_images)
    score = _maps(net_maps, test)
    fps = _frames_per_second(lambda: apply(variables, test_images), args.n_test)
    rows.append({"method": "ISTA-Net+ (shipped, CPU)", "fps": fps, **score})
    print(f"ISTA-Net+: loaded {CHECKPOINT} (a short CPU-scale run; see experiments/checkpoints/README.md)")

    for name, seed_maps in (("localize (image only)", None), ("localize + ISTA-Net+ seeds", net_maps)):
        points, point_count = refine.localize(test["image"], hr_maps=seed_maps, c=C)
        score = _points(points, point_count, test)
        fps = _frames_per_second(
            lambda seed_maps=seed_maps: refine.localize(test["image"], hr_maps=seed_maps, c=C), args.n_test
        )
        rows.append({"method": name, "fps": fps, **score})
        if seed_maps is None:
            fitted = (np.asarray(points), np.asarray(point_count))

    # the learned continuous localiser: points straight from a network, then one gated LM polish
    loc_net, loc_vars = models.load_checkpoint(LOCALIZER_CHECKPOINT)
    decode = models.jit(lambda v, x: localizer.points(loc_net.apply(v, x)), inference_of=loc_net)
    found = decode(loc_vars, test_images)
    score = _points(found["points"], found["count"], test)
    fps = _frames_per_second(lambda: decode(loc_vars, test_images), args.n_test)
    rows.append({"method": "learned localiser (shipped, CPU)", "fps": fps, **score})
    polished = refine.polish(test_images, found)
    score = _points(polished["points"], polished["count"], test)
    fps = _frames_per_second(
        lambda: refine.polish(test_images, decode(loc_vars, test_images))["points"], args.n_test
    )
    rows.append({"method": "learned localiser + polish", "fps": fps, **score})
    print(f"localiser: loaded {LOCALIZER_CHECKPOINT} (see experiments/checkpoints/README.md)")

    for key in PUBLISHED_ROWS:
        values = published.CSIST100K[key]
        rows.append(
            {"method": f"{published.label(key)} (published)", **{k: values[k] / 100 for k in AP_KEYS}}
        )

    print(f"\nCSO-mAP on {args.n_test} test images (x100; APs in %), c = {C}, threshold {THRESHOLD:g}:")
    print(format_table(rows))
    noise = noise_rows(args)
    print(
        f"\ncsist_jax.unmix on the same {args.n_test} test scenes with read noise "
        "(CSO-mAP x100, count accuracy %):"
    )
    print(format_noise_table(noise))
    fig_path = os.path.join(args.out, "quickstart.png")
    panels = [("FISTA estimate", final_maps["FISTA"]), ("ISTA-Net+ estimate", np.asarray(net_maps))]
    figure(fig_path, test["image"], panels, test["targets"], test["count"], *fitted)
    report.write_json(
        os.path.join(args.out, "results.json"), {"args": vars(args), "rows": rows, "noise": noise}
    )
    print(f"\nfigure: {fig_path}\nresults: {os.path.join(args.out, 'results.json')}")
    return {"rows": rows, "noise": noise}


#: the read-noise levels of the quickstart's noise table (grey levels)
NOISE_STDS = (0.0, 1.0, 2.0, 3.0, 5.0)


def noise_rows(args) -> list[dict]:
    """Per read-noise std: ``csist_jax.unmix`` (the std estimated from the frames) beside
    ``refine.localize`` told the true std, on the test scenes rendered with that noise."""
    out = []
    for std in NOISE_STDS:
        test = csist100k.generate(args.seed + 2, args.n_test, noise_std=std)
        points, count, info = csist_jax.unmix(test["image"], return_details=True)
        fitted, fitted_count = refine.localize(test["image"], noise_std=std)
        unmixed = evaluation.point_scores({"points": points, "count": count}, test)
        localized = evaluation.point_scores({"points": fitted, "count": fitted_count}, test)
        out.append(
            {
                "std": std,
                "estimated_std": info["noise_std"],
                "method": info["method"],
                "unmix_mAP": unmixed["mAP"],
                "unmix_count": unmixed["count_accuracy"],
                "localize_mAP": localized["mAP"],
                "localize_count": localized["count_accuracy"],
            }
        )
    return out


def format_noise_table(rows: list[dict]) -> str:
    header = ["read-noise std", "estimated", "unmix runs", "unmix mAP", "count %"]
    header += ["localize (told std) mAP", "count %"]
    body = [
        [f"{r['std']:g}", f"{r['estimated_std']:.2f}", r["method"], report.cell(r["unmix_mAP"], scale=100)]
        + [report.cell(r["unmix_count"], ".1f", scale=100), report.cell(r["localize_mAP"], scale=100)]
        + [report.cell(r["localize_count"], ".1f", scale=100)]
        for r in rows
    ]
    return report.markdown_table(header, body)


if __name__ == "__main__":
    from csist_jax._cli import run_main

    run_main(main)
