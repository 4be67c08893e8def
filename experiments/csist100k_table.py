"""The CSIST-100K comparison table (c = 3): analytic ISTA / FISTA and the trained networks, from checkpoints.

    python -m experiments.csist100k_table --runs=runs --pattern="{runs}/cpu_{model}/best"
    python -m experiments.csist100k_table --checkpoint=experiments/checkpoints/ista_net_plus_c3_cpu

Rows: ISTA and FISTA (``csist_jax.solvers``; lambda picked on the validation frames from ``--lams``),
then each network of ``--models`` (by default the four of the CPU-scale table, none when
``--checkpoint`` is given; ``all``: every registered name) at ``--pattern``, then every ``--checkpoint``
directory; a missing checkpoint is an error naming its path. Columns: CSO-mAP and AP05..AP25 (x100, on
``--test-size`` test frames of the generator split, every frame scored), PSNR / SSIM of the HR maps
against the HR labels, trained parameters, FLOPs per image (XLA's cost analysis of one image), frames/s
on this machine (best of two passes over 500 test frames, batch ``--batch``). Writes the markdown table
to stdout and, with ``--out``, to a file (plus JSON rows next to it).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from csist_jax import models
from csist_jax.train import predict
from experiments import published, report, tables

#: ``--models``' default: the four networks of the CPU-scale table (docs/results.md)
NETWORKS = ("lista", "ista_net", "ista_net_plus", "dista_net")


def network_row(path: str, test: dict, threshold: float, batch: int) -> dict:
    """The row of the network saved at ``path``."""
    module, variables = models.load_checkpoint(path)
    meta = models.read_meta(path)
    label = published.label(meta["model"])
    if "step_init" in meta["config"]:
        label += f" (step init {meta['config']['step_init']:g})"

    def run(images):
        return predict(module, variables, np.asarray(images), batch)

    row = tables.map_table_row(label, run(test["image"]), test, module.c, threshold)
    row["published"] = published.csist100k_map(meta["model"])
    info = meta.get("info", {})
    row.update(
        params=models.param_count(variables),
        flops=tables.flops_per_image(lambda x: module.apply(variables, x)),
        fps=tables.frames_per_second(run, test["image"][: tables.FPS_FRAMES]),
        note=f"{tables.size_note(module, meta['config'])}; step {info.get('step', '?')}; {path}",
    )
    return row


def markdown(rows: list[dict], test_size: int) -> str:
    cell = report.cell
    header = ["method", *published.AP_KEYS, "PSNR", "SSIM", "params", "MFLOPs/img", "frames/s"]
    body = [
        [r["method"], *(cell(r[k]) for k in published.AP_KEYS), cell(r["PSNR"]), cell(r["SSIM"], ".4f")]
        + [cell(r["params"], ","), cell(r["flops"] / 1e6, ",.1f"), cell(r["fps"], ",.0f")]
        + [cell(r["published"]), r["note"]]
        for r in rows
    ]
    table = report.markdown_table(header + ["published mAP", "notes"], body)
    return table + f"\n\nCSO-mAP and APs x100 on {test_size:,} generated test frames (c = 3, threshold 50)."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs", help="directory of training workdirs")
    parser.add_argument("--pattern", default="{runs}/cpu_{model}/best", help="checkpoint path per network")
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma-separated names whose --pattern checkpoints to score (default: {','.join(NETWORKS)}, "
        "none with --checkpoint; 'all': every name of models.MODEL_NAMES); a missing checkpoint is an error",
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
    if args.models is None:
        names = [] if args.checkpoint else list(NETWORKS)
    elif args.models == "all":
        names = list(models.MODEL_NAMES)
    else:
        names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(models.MODEL_NAMES))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {list(models.MODEL_NAMES)}")
    paths = [args.pattern.format(runs=args.runs, model=m) for m in names] + list(args.checkpoint)
    tables.require(paths, "or choose the networks with --models, their paths with --pattern")
    test = tables.split_arrays("test", args.test_size)
    val = tables.split_arrays("val", args.val_size)
    lams = [float(v) for v in args.lams.split(",") if v]
    rows = tables.analytic_rows(val, test, c, lams, args.iterations, threshold)
    for row in rows:
        row["published"] = published.csist100k_map(row["method"].lower())  # the solver: ista, fista
    for path in paths:
        print(f"[table] {path} ...", file=sys.stderr, flush=True)
        rows.append(network_row(path, test, threshold, args.batch))
    table = markdown(rows, len(test["image"]))
    print(table)
    if args.out:
        report.write_markdown(args.out, table)
        report.write_json(os.path.splitext(args.out)[0] + ".json", rows, lines=True)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
