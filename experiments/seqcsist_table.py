"""The SeqCSIST comparison table (c = 3) and its read-noise table, published rows beside ours.

    python -m experiments.seqcsist_table --runs=runs --out=outputs/seqcsist_table.md
    python -m experiments.seqcsist_table --noise=0,2,5 --out=outputs/seqcsist_noise.md
    python -m experiments.seqcsist_table --trajectories=50 --iterations=20   # a quick look

Data (SPEC sec. 5): ``--trajectories`` test trajectories of the SeqCSIST generator (seed 0, from
``seqcsist.SPLIT_START["test"]``; 750 is the whole test split), 8-bit and clipped, with Gaussian read
noise of std ``sigma`` grey levels before the rounding (0: the data as released), cut into every window of
``L`` frames (``--window``, by default the DeRefNet checkpoint's, else the published 5: 16 windows per
20-frame trajectory). Every window predicts its centre frame, and every centre frame is scored (frames
2..17 of each trajectory at ``L = 5``: 12,000 frames for the full test split), as published: CSO-mAP and
AP05..AP25 (x100) at the SeqCSIST brightness threshold 70 (SPEC sec. 6).

Rows of the comparison table (at the first ``--noise`` value):

* exact HR label: the label map itself on the c = 3 grid, the ceiling of every map-based row;
* ISTA, FISTA: ``csist_jax.solvers`` on the centre frame, ``--iterations`` steps, lambda chosen from
  ``--lams`` by CSO-mAP on the centre frames of ``--val-trajectories`` validation trajectories (from
  ``seqcsist.SPLIT_START["val"]``, same noise);
* ISTA-Net, ISTA-Net+, DISTA-Net (the single-frame networks of ``--models``): the networks saved at
  ``{runs}/seq_cpu_{model}/best``, run on the centre frame alone;
* DeRefNet (the multi-frame networks of ``--models``): ``{runs}/seq_cpu_derefnet/best`` on the whole
  window and its centre frame's index (a missing checkpoint of ``--models`` is an error naming it);
* localize, centre frame: ``csist_jax.refine.localize``, the continuous point-source fit of the centre
  frame alone; localize_windows: ``csist_jax.refine.localize_windows``, one fit over the ``L`` frames
  with a common velocity. Both give points, not maps: scored by ``evaluation.point_scores`` (their
  detections are not snapped to the grid, so the label's ceiling does not bound them);
* "(published)": the SeqCSIST paper's Table 7 (SPEC sec. 9-10; frames/s on a GPU, as printed).

Columns: mAP and APs, frames/s on this machine (best of two passes over up to 500 test windows after a
warm-up pass, networks in batches of ``--batch`` frames) and the published mAP of the same method.

With several ``--noise`` values, the noise table follows: DeRefNet, ISTA-Net+ on the centre frame and
localize_windows, their mAP at every sigma (the test data regenerated with that read noise, same seed;
localize is told the noise std), beside the published DeRefNet figures (51.55 / 49.09 / 47.23 at
sigma 0 / 2 / 5). ``--out`` writes the markdown to that file and the rows, one JSON object a line, next
to it (``.json``). ``--rows`` restricts the rows computed (e.g. ``--rows=analytic,networks``).

The networks compared here are trained at CPU scale (a few hundred to a few thousand steps on part of
the training split), not the published 100-250 epochs on a GPU: their rows show that the pipeline runs
and scores end to end, not the published accuracy. The whole table (750 trajectories, every row) takes
tens of minutes on a 2-core CPU; ``--trajectories=50`` a few minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from csist_jax import models, physics
from csist_jax.data import seqcsist
from csist_jax.refine import localize, localize_windows
from csist_jax.train import config as config_lib
from csist_jax.train import evaluation
from experiments import published, report, tables

C = 3
THRESHOLD = 70.0  # SeqCSIST map brightness threshold (SPEC sec. 6)
SEED = 0
#: ``--models``' default: the networks of the CPU-scale SeqCSIST table (docs/results.md)
MODELS = ("ista_net", "ista_net_plus", "dista_net", "derefnet")
ROW_GROUPS = ("label", "analytic", "networks", "derefnet", "localize")
#: the rows of the noise table
NOISE_ROWS = ("derefnet", "ista_net_plus", "localize_windows")


@dataclasses.dataclass(frozen=True)
class Method:
    """One row: ``run(windows, noise_std)`` gives HR maps ``[n, hr, hr]`` (``kind="maps"``) or
    ``(points [n, M, 3], point_count [n])`` (``kind="points"``) for the centre frames of ``windows``;
    ``key`` is its name in the registry (or in ``csist_jax.refine``), ``name`` its label."""

    name: str
    key: str
    kind: str
    run: Callable
    note: str


def split_windows(trajectories: int, noise: float, window: int, split: str = "test") -> dict:
    """Every ``window``-frame window of the first ``trajectories`` trajectories of ``split``."""
    data = seqcsist.generate(SEED, trajectories, start=seqcsist.SPLIT_START[split], noise_std=noise)
    return seqcsist.windows(data, length=window)


def centre_frames(data: dict) -> dict:
    """The centre frames of windows ``data`` as single-frame arrays (``image`` ``[n, 11, 11]``)."""
    image = data["image"]
    return {"image": image[:, image.shape[1] // 2], "targets": data["targets"], "count": data["count"]}


def subset(data: dict, index: np.ndarray) -> dict:
    return {k: v[index] for k, v in data.items()}


def checkpoint_window(meta: dict) -> int:
    """Frames per window of a saved DeRefNet: ``meta["window"]``, else the training config's
    ``data.window`` in ``meta["info"]["config"]`` (grouped, or flat ``window`` from before the groups),
    else the published 5."""
    info_config = config_lib.upgrade(meta.get("info", {}).get("config", {}))
    return int(meta.get("window", info_config.get("data", {}).get("window", seqcsist.WINDOW)))


def network(path: str, batch: int, window: int) -> Method:
    """The network saved at ``path``: a single-frame one on each window's centre frame, a multi-frame one
    (DeRefNet, TDAN) on whole windows of ``window`` frames (``batch`` frames per call)."""
    module, variables = models.load_checkpoint(path)
    meta = models.read_meta(path)
    model, label = meta["model"], published.label(meta["model"])
    apply = evaluation.make_apply(module, evaluation.make_mesh())
    params = f"{models.param_count(variables):,} params; {path}"
    if model not in models.SEQUENCE_MODEL_NAMES:

        def run(data, noise_std):
            centre = centre_frames(data)["image"]
            return evaluation.predict(module, variables, centre, min(batch, len(centre)), apply=apply)

        note = f"centre frame only; {tables.size_note(module, meta['config'])}; {params}"
        return Method(label, model, "maps", run, note)

    def run_windows(data, noise_std):
        if data["image"].shape[1] != window:
            raise ValueError(f"{label} at {path} reads {window}-frame windows, got {data['image'].shape[1]}")
        size = min(max(1, batch // window), len(data["image"]))
        return evaluation.predict(module, variables, data["image"], size, apply=apply, frame=data["frame"])

    size = f"{module.stages} stages; " if hasattr(module, "stages") else ""
    return Method(label, model, "maps", run_windows, f"{window}-frame windows; {size}{params}")


def localize_methods(window: int) -> list[Method]:
    """The continuous fits of ``csist_jax.refine``: the centre frame alone, and the whole window."""

    def centre_only(data, noise_std):
        return localize(centre_frames(data)["image"], noise_std=noise_std)

    def whole_window(data, noise_std):
        points, point_count, _ = localize_windows(data["image"], noise_std=noise_std)
        return points, point_count

    note = f"{window} frames, common velocity; continuous points"
    return [
        Method(
            "localize", "localize", "points", centre_only, "centre frame only; continuous points, no grid"
        ),
        Method("localize_windows", "localize_windows", "points", whole_window, note),
    ]


def measure(method: Method, data: dict, noise: float, timed: bool = True) -> dict:
    """The row of ``method`` on windows ``data``: mAP and APs (x100), and frames/s when ``timed``."""
    out = method.run(data, noise)
    if method.kind == "maps":
        row = tables.map_table_row(method.name, np.asarray(out), data, C, THRESHOLD)
    else:
        row = tables.point_table_row(method.name, *(np.asarray(x) for x in out), data)
    if timed:
        index = np.arange(min(tables.FPS_FRAMES, len(data["count"])))
        row["fps"] = tables.frames_per_second(lambda i: method.run(subset(data, i), noise), index)
    return row


def label_row(data: dict) -> dict:
    labels = np.asarray(physics.hr_label(data["targets"], C))
    row = tables.map_table_row("exact HR label", labels, data, C, THRESHOLD)
    return {**row, "fps": None, "note": "the label map on its c = 3 grid: the ceiling of map-based rows"}


def published_map(key: str | None, noise: float) -> float | None:
    """The published mAP of method ``key`` at read noise ``noise`` (None when not published)."""
    return published.seqcsist_noise(key).get(noise) if key else None


def published_rows() -> list[dict]:
    head = {"source": "published", "noise": 0.0}
    return [
        {"method": f"{published.label(key)} (published)", **head, **values, "note": "Table 7"}
        for key, values in published.SEQCSIST.items()
    ]


def _fps(x, source: str) -> str:
    text = report.cell(x, ",.1f" if x is not None and x < 10 else ",.0f")
    return text + (" (GPU)" if text and source == "published" else "")


def markdown(rows: list[dict], frames: int, trajectories: int, window: int, noise: float) -> str:
    """The comparison table (columns as ``csist100k_table`` prints them, frames/s, published mAP)."""
    header = ["method", *published.AP_KEYS, "frames/s", "published mAP", "notes"]
    body = [
        [r["method"], *(report.cell(r[k]) for k in published.AP_KEYS), _fps(r.get("fps"), r["source"])]
        + [report.cell(r.get("published_mAP")), r.get("note", "")]
        for r in rows
    ]
    return report.markdown_table(header, body) + (
        f"\n\nCSO-mAP and APs x100 on the {frames:,} centre frames of {trajectories:,} generated SeqCSIST "
        f"test trajectories ({window}-frame windows; c = 3, brightness threshold 70; read noise std "
        f"{noise:g}). "
        "Published rows: the SeqCSIST paper, Table 7 (frames/s on a GPU). Networks trained at CPU scale."
    )


def noise_markdown(rows: list[dict], sigmas: list[float]) -> str:
    """mAP per method (rows) and read-noise std (columns); the published DeRefNet row always beside."""

    def sigmas_text(values: dict) -> str:
        return " / ".join(f"{v:.2f} ({s:g})" for s, v in values.items())

    header = ["method", *(f"mAP, sigma {s:g}" for s in sigmas), "published mAP (sigma)"]
    body = []
    for key in NOISE_ROWS:
        by_sigma = {r["noise"]: r["mAP"] for r in rows if r["method"] == published.label(key)}
        if by_sigma:
            name = "ISTA-Net+, centre frame" if key == "ista_net_plus" else published.label(key)
            cells = [report.cell(by_sigma.get(s)) for s in sigmas]
            body.append([name, *cells, sigmas_text(published.seqcsist_noise(key))])
    deref = published.seqcsist_noise("derefnet")
    body.append(["DeRefNet (published)", *(report.cell(deref.get(s)) for s in sigmas), sigmas_text(deref)])
    return report.markdown_table(header, body) + (
        "\n\nCSO-mAP x100; each sigma regenerates the test trajectories with Gaussian read noise of that std "
        "(grey levels, before the 8-bit rounding), same seed. Published: the SeqCSIST paper (sigma in "
        "brackets)."
    )


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs", help="directory of the training workdirs")
    parser.add_argument(
        "--pattern", default="{runs}/seq_cpu_{model}/best", help="checkpoint path of each network"
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help="comma list of the networks to score ('all': every registered name); the single-frame ones "
        "are the 'networks' row group, the multi-frame ones 'derefnet'; a missing checkpoint is an error",
    )
    parser.add_argument("--trajectories", type=int, default=seqcsist.SPLIT_SIZE["test"])
    parser.add_argument("--val-trajectories", type=int, default=50, help="for tuning ISTA/FISTA's lambda")
    parser.add_argument("--noise", default="0", help="comma list of read-noise stds (grey levels)")
    parser.add_argument("--window", type=int, default=None, help="frames per window (default: DeRefNet's)")
    parser.add_argument("--lams", default="3,10,30,100", help="ISTA/FISTA lambda grid (0..255 scale)")
    parser.add_argument("--iterations", type=int, default=100, help="ISTA/FISTA iterations")
    parser.add_argument("--batch", type=int, default=500, help="frames per network call")
    parser.add_argument("--rows", default=",".join(ROW_GROUPS), help=f"row groups, from {ROW_GROUPS}")
    parser.add_argument("--out", default="", help="write the markdown here (and .json rows next to it)")
    args = parser.parse_args(argv)
    for flag, count, split in (
        ("--trajectories", args.trajectories, "test"),
        ("--val-trajectories", args.val_trajectories, "val"),
    ):
        if not 1 <= count <= seqcsist.SPLIT_SIZE[split]:
            parser.error(
                f"{flag} must be in [1, {seqcsist.SPLIT_SIZE[split]}] (the {split} split), got {count}"
            )
    if min(args.iterations, args.batch) < 1:
        parser.error(f"--iterations and --batch must be >= 1, got {args.iterations} and {args.batch}")
    try:
        args.noise = [float(v) for v in args.noise.split(",") if v.strip()]
        args.lams = [float(v) for v in args.lams.split(",") if v.strip()]
    except ValueError as e:
        parser.error(f"--noise and --lams must be comma lists of numbers: {e}")
    if not args.noise or not all(math.isfinite(s) and s >= 0 for s in args.noise):
        parser.error(f"--noise must list finite stds >= 0, got {args.noise}")
    if not args.lams or not all(math.isfinite(v) and v > 0 for v in args.lams):
        parser.error(f"--lams must list finite values > 0, got {args.lams}")
    args.rows = [g.strip() for g in args.rows.split(",") if g.strip()]
    unknown = sorted(set(args.rows) - set(ROW_GROUPS))
    if unknown or not args.rows:
        parser.error(f"--rows must list groups from {ROW_GROUPS}, got {args.rows}")
    known = models.MODEL_NAMES + models.SEQUENCE_MODEL_NAMES
    args.models = list(known) if args.models == "all" else [m for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(known))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {list(known)}")
    derefnet_path = args.pattern.format(runs=args.runs, model="derefnet")
    if "derefnet" in args.rows and os.path.isdir(derefnet_path):
        saved = checkpoint_window(models.read_meta(derefnet_path))
        if args.window is not None and args.window != saved:
            parser.error(
                f"--window={args.window} differs from the window of the DeRefNet at {derefnet_path}: {saved}"
            )
        args.window = saved
    window = seqcsist.WINDOW if args.window is None else args.window
    if window < 1 or window % 2 == 0 or window > seqcsist.N_FRAMES:
        parser.error(f"--window must be odd and in [1, {seqcsist.N_FRAMES}], got {window}")
    args.window = window
    return args


def load_methods(args) -> list[Method]:
    """The checkpoint and ``refine`` rows of ``args.rows`` (a missing checkpoint is an error naming it)."""
    sequence = [m in models.SEQUENCE_MODEL_NAMES for m in args.models]
    chosen = [m for m, seq in zip(args.models, sequence) if ("derefnet" if seq else "networks") in args.rows]
    # the single-frame networks first, as the table lists them
    chosen = sorted(chosen, key=lambda m: m in models.SEQUENCE_MODEL_NAMES)
    paths = [args.pattern.format(runs=args.runs, model=m) for m in chosen]
    tables.require(paths, "or choose the networks with --models, their paths with --pattern")
    methods = []
    for path in paths:
        print(f"[seqcsist_table] loading {path}", file=sys.stderr, flush=True)
        methods.append(network(path, args.batch, args.window))
    if "localize" in args.rows:
        methods += localize_methods(args.window)
    return methods


def comparison_rows(args, methods: list[Method], test: dict, noise: float) -> list[dict]:
    """Every measured row of the comparison table at read noise ``noise``, then the published rows."""
    rows = []  # (row, the method's key for its published mAP)
    if "label" in args.rows:
        rows.append((label_row(test), None))
    if "analytic" in args.rows:
        print("[seqcsist_table] ISTA / FISTA", file=sys.stderr, flush=True)
        val = centre_frames(split_windows(args.val_trajectories, noise, args.window, split="val"))
        for row in tables.analytic_rows(val, centre_frames(test), C, args.lams, args.iterations, THRESHOLD):
            note = f"centre frame; {row['note']}; tuned on {len(val['count'])} val frames"
            rows.append(({**row, "note": note}, row["method"].lower()))  # the solver: ista, fista
    for method in tqdm(methods, desc=f"rows, noise {noise:g}", unit="row"):
        rows.append(({**measure(method, test, noise), "note": method.note}, method.key))
    for row, key in rows:
        row.update(source="measured", noise=noise, published_mAP=published_map(key, noise))
    return [{**r, "table": "comparison"} for r in [row for row, _ in rows] + published_rows()]


def noise_rows(args, methods: list[Method], first: list[dict]) -> list[dict]:
    """The noise table's rows: the first sigma's from the comparison table, every other sigma measured."""
    chosen = [m for m in methods if m.key in NOISE_ROWS]
    labels = {published.label(key) for key in NOISE_ROWS}
    rows = [dict(r, table="noise") for r in first if r["source"] == "measured" and r["method"] in labels]
    for noise in tqdm(args.noise[1:], desc="noise", unit="sigma"):
        test = split_windows(args.trajectories, noise, args.window)
        for method in chosen:
            row = measure(method, test, noise, timed=False)
            row.update(source="measured", noise=noise, published_mAP=published_map(method.key, noise))
            rows.append({**row, "table": "noise"})
    return rows


def main(argv=None) -> int:
    args = _parse_args(argv)
    methods = load_methods(args)
    noise = args.noise[0]
    test = split_windows(args.trajectories, noise, args.window)
    rows = comparison_rows(args, methods, test, noise)
    text = markdown(rows, len(test["count"]), args.trajectories, args.window, noise)
    if len(args.noise) > 1:
        extra = noise_rows(args, methods, rows)
        rows += extra
        text += "\n\n" + noise_markdown(extra, args.noise)
    print(text)
    if args.out:
        report.write_markdown(args.out, text)
        report.write_json(os.path.splitext(args.out)[0] + ".json", rows, lines=True)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
