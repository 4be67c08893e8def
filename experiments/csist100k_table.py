"""The CSIST-100K comparison table (c = 3): analytic ISTA / FISTA and the trained networks, from checkpoints.

    python -m experiments.csist100k_table --runs=runs --pattern="{runs}/cpu_{model}/best"
    python -m experiments.csist100k_table --checkpoint=experiments/checkpoints/ista_net_c3_cpu

Rows: ISTA and FISTA (``csist_jax.solvers``; lambda picked on the validation frames from ``--lams``),
then every network whose checkpoint exists (``--pattern`` for the four networks, plus any
``--checkpoint`` directories). Columns: CSO-mAP and AP05..AP25 (x100, on ``--test-size`` test frames of
the generator split, every frame scored), PSNR / SSIM of the HR maps against the HR labels, trained
parameters, FLOPs per image (XLA's cost analysis of one image), frames/s on this machine (best of two
passes over 500 test frames, batch ``--batch``). Writes the markdown table to stdout and, with
``--out``, to a file (plus JSON rows next to it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np

from csist_jax import metrics, models, physics, solvers
from csist_jax.train import data as data_lib
from csist_jax.train import predict

NETWORKS = {"lista": "LISTA", "ista_net": "ISTA-Net", "ista_net_plus": "ISTA-Net+", "dista_net": "DISTA-Net"}
FPS_FRAMES = 500  # frames per timed pass
#: published CSIST-100K CSO-mAP x100, c = 3 (SPEC sec. 10.1, DISTA-Net Table 1; USRNet, RPCANet and
#: FOCUS from the FOCUS paper's re-runs, sec. 10.3); keyed by method label or model name
PUBLISHED = {
    "ISTA": 7.46,
    "FISTA": None,
    "lista": 30.13,
    "ista_net": 45.16,
    "ista_net_plus": 46.06,
    "dista_net": 46.74,
    "actnet": 45.61,
    "ctnet": 45.11,
    "dctlsa": 44.51,
    "edsr": 45.32,
    "egasr": 45.51,
    "fenet": 45.77,
    "rcan": 45.87,
    "rdn": 45.81,
    "san": 45.95,
    "srcnn": 29.06,
    "srfbn": 46.05,
    "han": 45.70,
    "lamp": 14.22,
    "liht": 10.35,
    "fista_net": 44.66,
    "tilista": 14.95,
    "usrnet": 41.82,
    "rpcanet": 45.47,
    "focus": 45.50,
}


def split_arrays(split: str, size: int, seed: int = 0) -> dict:
    """``size`` frames of the generator split ``split`` (the layout of ``csist_jax.train.data``)."""
    cfg = ml_collections.ConfigDict({"source": "generate", "seed": seed, f"{split}_size": size})
    return data_lib.read_all(data_lib.load_split(cfg, split))


def flops_per_image(fn, size: int = 11) -> float:
    """FLOPs of ``fn`` on one image from XLA's cost analysis (0 when the backend does not report it)."""
    lowered = jax.jit(fn).lower(jax.ShapeDtypeStruct((1, size, size), np.float32))
    cost = lowered.compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def frames_per_second(run, images: np.ndarray) -> float:
    """Frames/s of ``run(images)`` (best of two timed passes after a warm-up pass)."""
    run(images)
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        jax.block_until_ready(run(images))
        best = min(best, time.perf_counter() - t0)
    return len(images) / best


def score(name: str, maps: np.ndarray, arrays: dict, c: int, threshold: float) -> dict:
    """The accuracy columns of one row."""
    labels = np.asarray(physics.hr_label(arrays["targets"], c))
    result = metrics.cso_map_from_maps(maps, arrays["targets"], arrays["count"], c, threshold)
    row = {"method": name, **{k: 100 * float(v) for k, v in result.items()}}
    row["PSNR"] = float(np.mean(np.asarray(metrics.psnr(maps, labels))))
    row["SSIM"] = float(np.mean(np.asarray(metrics.ssim(maps, labels))))
    return row


def analytic_rows(val: dict, test: dict, c: int, lams, iterations: int, threshold: float) -> list[dict]:
    """ISTA and FISTA rows, lambda chosen by validation CSO-mAP."""
    op = physics.sampling_operator(c)
    rows = []
    for label, solver in (("ISTA", solvers.ista), ("FISTA", solvers.fista)):
        val_maps = {
            lam: np.asarray(solver(val["image"].astype(np.float32), op, lam, iterations)) for lam in lams
        }
        val_map = {
            lam: metrics.cso_map_from_maps(m, val["targets"], val["count"], c, threshold)["mAP"]
            for lam, m in val_maps.items()
        }
        lam = max(val_map, key=val_map.get)

        def run(images, solver=solver, lam=lam):
            return solver(np.asarray(images, np.float32), op, lam, iterations)

        maps = np.asarray(run(test["image"]))
        row = score(label, maps, test, c, threshold)
        row.update(
            params=0,
            # XLA's cost analysis counts a loop body once: measure one iteration, scale by the count
            flops=iterations * flops_per_image(lambda x, solver=solver, lam=lam: solver(x, op, lam, 1)),
            fps=frames_per_second(run, test["image"][:FPS_FRAMES]),
            note=f"lambda={lam:g}, {iterations} iterations",
        )
        rows.append(row)
    return rows


def network_row(path: str, test: dict, threshold: float, batch: int) -> dict:
    """The row of the network saved at ``path``."""
    module, variables = models.load_checkpoint(path)
    meta = models.read_meta(path)
    label = NETWORKS.get(meta["model"], meta["model"])
    published = PUBLISHED.get(meta["model"])
    if "step_init" in meta["config"]:
        label += f" (step init {meta['config']['step_init']:g})"

    def run(images):
        return predict(module, variables, np.asarray(images), batch)

    maps = run(test["image"])
    row = score(label, maps, test, module.c, threshold)
    row["published"] = published
    info = meta.get("info", {})
    size = f"{module.stages} stages" if hasattr(module, "stages") else _fields(meta["config"])
    row.update(
        params=models.param_count(variables),
        flops=flops_per_image(lambda x: module.apply(variables, x)),
        fps=frames_per_second(run, test["image"][:FPS_FRAMES]),
        note=f"{size}; step {info.get('step', '?')}; {path}",
    )
    return row


def _fields(config: dict) -> str:
    """A model's non-default fields as a note ("published size" when none)."""
    shown = {k: v for k, v in config.items() if k not in ("q_init",)}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "published size"


def markdown(rows: list[dict], test_size: int) -> str:
    head = (
        "| method | mAP | AP05 | AP10 | AP15 | AP20 | AP25 | PSNR | SSIM | params | MFLOPs/img | frames/s "
        "| published mAP | notes |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        pub = r.get("published", PUBLISHED.get(r["method"]))
        lines.append(
            f"| {r['method']} | {r['mAP']:.2f} | {r['AP05']:.2f} | {r['AP10']:.2f} | {r['AP15']:.2f} "
            f"| {r['AP20']:.2f} | {r['AP25']:.2f} | {r['PSNR']:.2f} | {r['SSIM']:.4f} | {r['params']:,} "
            f"| {r['flops'] / 1e6:,.1f} | {r['fps']:,.0f} | {'' if pub is None else f'{pub:.2f}'} "
            f"| {r['note']} |"
        )
    lines.append(f"\nCSO-mAP and APs x100 on {test_size:,} generated test frames (c = 3, threshold 50).")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs", help="directory of training workdirs")
    parser.add_argument("--pattern", default="{runs}/cpu_{model}/best", help="checkpoint path per network")
    parser.add_argument(
        "--models",
        default="",
        help="comma-separated model names whose --pattern checkpoints to score (default: every name of "
        "models.MODEL_NAMES; a missing checkpoint skips its row)",
    )
    parser.add_argument("--checkpoint", action="append", default=[], help="extra saved network(s)")
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--val-size", type=int, default=500, help="validation frames for tuning lambda")
    parser.add_argument("--lams", default="3,10,30,100", help="ISTA/FISTA lambda grid (0..255 scale)")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--out", default="", help="write the markdown table here (and .json rows)")
    args = parser.parse_args(argv)
    c, threshold = 3, 50.0
    test = split_arrays("test", args.test_size)
    val = split_arrays("val", args.val_size)
    lams = [float(v) for v in args.lams.split(",") if v]
    rows = analytic_rows(val, test, c, lams, args.iterations, threshold)
    names = [m for m in args.models.split(",") if m] or list(models.MODEL_NAMES)
    unknown = sorted(set(names) - set(models.MODEL_NAMES))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {list(models.MODEL_NAMES)}")
    paths = [args.pattern.format(runs=args.runs, model=m) for m in names] + list(args.checkpoint)
    for path in paths:
        if not os.path.isdir(path):
            print(f"[table] no checkpoint at {path}, row skipped", file=sys.stderr)
            continue
        print(f"[table] {path} ...", file=sys.stderr, flush=True)
        rows.append(network_row(path, test, threshold, args.batch))
    table = markdown(rows, len(test["image"]))
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
