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
* ISTA-Net, ISTA-Net+, DISTA-Net: the single-frame networks saved at ``{runs}/seq_cpu_{model}/best``
  (rows skipped, with a note, when a directory is missing), run on the centre frame alone;
* DeRefNet: ``{runs}/seq_cpu_derefnet/best`` on the whole window and its centre frame's index;
* localize, centre frame: ``csist_jax.refine.localize``, the continuous point-source fit of the centre
  frame alone; localize_windows: ``csist_jax.refine.localize_windows``, one fit over the ``L`` frames
  with a common velocity. Both give points, not maps: scored by ``metrics.cso_map_from_points`` (their
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
import json
import math
import os
import sys
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from csist_jax import metrics, models, physics
from csist_jax.data import seqcsist
from csist_jax.refine import localize, localize_windows
from experiments import csist100k_table

C = 3
THRESHOLD = 70.0  # SeqCSIST map brightness threshold (SPEC sec. 6)
SEED = 0
#: the single-frame methods scored on each window's centre frame (every registered one: a missing
#: checkpoint skips its row) and the multi-frame ones (DeRefNet, TDAN)
FRAME_NETWORKS = models.MODEL_NAMES
SEQUENCE_NETWORKS = models.SEQUENCE_MODEL_NAMES
SEQUENCE_LABELS = {"derefnet": "DeRefNet", "tdan": "TDAN"}
ROW_GROUPS = ("label", "analytic", "networks", "derefnet", "localize")
AP_KEYS = ("mAP", "AP05", "AP10", "AP15", "AP20", "AP25")
#: the SeqCSIST paper's Table 7 (SPEC sec. 9-10): CSO-mAP, APs (x100) and frames/s on a GPU
PUBLISHED = {
    "ISTA": dict(mAP=10.72, AP05=0.14, AP10=1.97, AP15=8.74, AP20=18.22, AP25=24.53, fps=0.1),
    "ISTA-Net": dict(mAP=48.95, AP05=0.70, AP10=11.20, AP15=49.70, AP20=87.70, AP25=95.40, fps=4052),
    "ISTA-Net+": dict(mAP=51.02, AP05=1.00, AP10=13.70, AP15=52.70, AP20=90.40, AP25=93.70, fps=5504),
    "DeRefNet": dict(mAP=51.55, AP05=1.00, AP10=14.40, AP15=54.90, AP20=90.40, AP25=97.10, fps=367),
    "srcnn": dict(mAP=49.64, AP05=1.40, AP10=16.30, AP15=51.20, AP20=85.00, AP25=94.30, fps=102961),
    "gmfn": dict(mAP=50.94, AP05=0.70, AP10=11.90, AP15=51.20, AP20=92.10, AP25=98.80, fps=855),
    "dbpn": dict(mAP=50.40, AP05=0.80, AP10=12.50, AP15=51.20, AP20=90.00, AP25=97.40, fps=7109),
    "srgan": dict(mAP=26.96, AP05=0.30, AP10=3.90, AP15=19.40, AP20=46.90, AP25=64.30, fps=12965),
    "bsrgan": dict(mAP=33.21, AP05=0.40, AP10=6.10, AP15=27.50, AP20=57.20, AP25=74.90, fps=1528),
    "esrgan": dict(mAP=36.86, AP05=0.40, AP10=6.00, AP15=30.30, AP20=66.80, AP25=80.70, fps=1024),
    "rdn": dict(mAP=49.61, AP05=0.70, AP10=10.60, AP15=48.20, AP20=90.40, AP25=98.20, fps=919),
    "edsr": dict(mAP=50.19, AP05=0.60, AP10=10.30, AP15=48.80, AP20=92.20, AP25=99.00, fps=11476),
    "espcn": dict(mAP=47.18, AP05=1.60, AP10=15.30, AP15=46.60, AP20=80.30, AP25=92.00, fps=144901),
    "TDAN": dict(mAP=47.96, AP05=0.50, AP10=8.60, AP15=43.80, AP20=89.30, AP25=97.50, fps=259),
    "liht": dict(mAP=6.36, AP05=0.10, AP10=1.00, AP15=4.30, AP20=10.40, AP25=16.00, fps=253),
    "lamp": dict(mAP=9.09, AP05=0.10, AP10=1.50, AP15=6.50, AP20=15.00, AP25=22.30, fps=7172),
    "fista_net": dict(mAP=50.61, AP05=1.00, AP10=12.60, AP15=51.40, AP20=90.70, AP25=97.30, fps=4052),
    "ista_net_pp": dict(mAP=50.50, AP05=0.70, AP10=10.40, AP15=49.20, AP20=92.8, AP25=99.40, fps=1751),
    "LISTA": dict(mAP=9.39, AP05=0.10, AP10=1.70, AP15=6.90, AP20=15.40, AP25=22.70, fps=490),
    "usrnet": dict(mAP=49.25, AP05=0.70, AP10=9.80, AP15=46.60, AP20=91.20, AP25=98.90, fps=622),
    "tilista": dict(mAP=13.52, AP05=0.20, AP10=2.10, AP15=9.50, AP20=22.60, AP25=33.30, fps=4716),
    "rpcanet": dict(mAP=47.17, AP05=0.70, AP10=10.20, AP15=44.50, AP20=84.60, AP25=95.90, fps=2601),
}
#: published mAP under read noise of std sigma (grey levels): the SeqCSIST paper (SPEC sec. 9)
PUBLISHED_NOISE = {"DeRefNet": {0.0: 51.55, 2.0: 49.09, 5.0: 47.23}, "ISTA-Net+": {0.0: 51.02}}
#: the rows of the noise table
NOISE_ROWS = ("DeRefNet", "ISTA-Net+", "localize_windows")


@dataclasses.dataclass(frozen=True)
class Method:
    """One row: ``run(windows, noise_std)`` gives HR maps ``[n, hr, hr]`` (``kind="maps"``) or
    ``(points [n, M, 3], point_count [n])`` (``kind="points"``) for the centre frames of ``windows``."""

    name: str
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


def batched(fn, arrays: list[np.ndarray], batch: int, desc: str) -> np.ndarray:
    """``fn(*chunks)`` over ``arrays`` (equal first axes) in batches of ``batch`` rows, concatenated.

    The last batch is zero-padded to the same size (one compiled shape for the whole run), then cut.
    """
    n = len(arrays[0])
    size = min(batch, n)
    out = []
    for lo in tqdm(range(0, n, size), desc=desc, unit="batch", leave=False, disable=n <= size):
        chunk = [a[lo : lo + size] for a in arrays]
        pad = size - len(chunk[0])
        if pad:
            chunk = [np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) for x in chunk]
        out.append(np.asarray(fn(*chunk)))
    return np.concatenate(out)[:n]


def checkpoint_window(meta: dict) -> int:
    """Frames per window of a saved DeRefNet: ``meta["window"]``, else ``meta["info"]["config"]["window"]``
    (the training script's record), else the published 5."""
    info_config = meta.get("info", {}).get("config", {})
    return int(meta.get("window", info_config.get("window", seqcsist.WINDOW)))


def frame_network(path: str, batch: int) -> Method:
    """The single-frame network saved at ``path``, run on each window's centre frame."""
    module, variables = models.load_checkpoint(path)
    model = models.read_meta(path)["model"]
    apply = models.jit(module.apply, inference_of=module)

    def run(data, noise_std):
        centre = centre_frames(data)["image"]
        return batched(lambda x: apply(variables, jnp.asarray(x, jnp.float32)), [centre], batch, model)

    name = csist100k_table.NETWORKS.get(model, model)
    size = (
        f"{module.stages} stages"
        if hasattr(module, "stages")
        else csist100k_table._fields(models.read_meta(path)["config"])
    )
    note = f"centre frame only; {size}; {models.param_count(variables):,} params; {path}"
    return Method(name, "maps", run, note)


def derefnet(path: str, batch: int, window: int) -> Method:
    """The multi-frame network (DeRefNet, TDAN) saved at ``path`` on whole windows of ``window`` frames
    (``batch`` frames per call)."""
    module, variables = models.load_checkpoint(path)
    model = models.read_meta(path)["model"]
    label = SEQUENCE_LABELS.get(model, model)
    apply = models.jit(module.apply, inference_of=module)

    def run(data, noise_std):
        if data["image"].shape[1] != window:
            raise ValueError(f"{label} at {path} reads {window}-frame windows, got {data['image'].shape[1]}")

        def call(windows, frame):
            return apply(variables, jnp.asarray(windows, jnp.float32), jnp.asarray(frame, jnp.int32))

        return batched(call, [data["image"], data["frame"]], max(1, batch // window), model)

    size = f"{module.stages} stages; " if hasattr(module, "stages") else ""
    note = f"{window}-frame windows; {size}{models.param_count(variables):,} params; {path}"
    return Method(label, "maps", run, note)


def localize_methods(window: int) -> list[Method]:
    """The continuous fits of ``csist_jax.refine``: the centre frame alone, and the whole window."""

    def centre_only(data, noise_std):
        return localize(centre_frames(data)["image"], noise_std=noise_std)

    def whole_window(data, noise_std):
        points, point_count, _ = localize_windows(data["image"], noise_std=noise_std)
        return points, point_count

    return [
        Method("localize", "points", centre_only, "centre frame only; continuous points, no grid"),
        Method(
            "localize_windows", "points", whole_window, f"{window} frames, common velocity; continuous points"
        ),
    ]


def measure(method: Method, data: dict, noise: float, timed: bool = True) -> dict:
    """The row of ``method`` on windows ``data``: mAP and APs (x100), and frames/s when ``timed``."""
    out = method.run(data, noise)
    if method.kind == "maps":
        row = csist100k_table.score(method.name, np.asarray(out), data, C, THRESHOLD)
    else:
        points, point_count = (np.asarray(x) for x in out)
        result = metrics.cso_map_from_points(points, point_count, data["targets"], data["count"])
        row = {"method": method.name, **{k: 100 * float(v) for k, v in result.items()}}
    if timed:
        index = np.arange(min(csist100k_table.FPS_FRAMES, len(data["count"])))
        row["fps"] = csist100k_table.frames_per_second(lambda i: method.run(subset(data, i), noise), index)
    return row


def label_row(data: dict) -> dict:
    labels = np.asarray(physics.hr_label(data["targets"], C))
    row = csist100k_table.score("exact HR label", labels, data, C, THRESHOLD)
    return {**row, "fps": None, "note": "the label map on its c = 3 grid: the ceiling of map-based rows"}


def published_map(name: str, noise: float) -> float | None:
    """The published mAP of method ``name`` at read noise ``noise`` (None when not published)."""
    if noise == 0.0 and name in PUBLISHED:
        return PUBLISHED[name]["mAP"]
    return PUBLISHED_NOISE.get(name, {}).get(noise)


def published_rows() -> list[dict]:
    return [
        {"method": f"{name} (published)", "source": "published", "noise": 0.0, **values, "note": "Table 7"}
        for name, values in PUBLISHED.items()
    ]


def _number(x, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _fps(x, source: str) -> str:
    if x is None:
        return ""
    text = f"{x:,.1f}" if x < 10 else f"{x:,.0f}"
    return text + (" (GPU)" if source == "published" else "")


def markdown(rows: list[dict], frames: int, trajectories: int, window: int, noise: float) -> str:
    """The comparison table (columns as ``csist100k_table`` prints them, frames/s, published mAP)."""
    lines = [
        "| method | mAP | AP05 | AP10 | AP15 | AP20 | AP25 | frames/s | published mAP | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["method"], *(_number(r[k]) for k in AP_KEYS), _fps(r.get("fps"), r["source"])]
        cells += [_number(r.get("published_mAP")), r.get("note", "")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"\nCSO-mAP and APs x100 on the {frames:,} centre frames of {trajectories:,} generated SeqCSIST test "
        f"trajectories ({window}-frame windows; c = 3, brightness threshold 70; read noise std {noise:g}). "
        "Published rows: the SeqCSIST paper, Table 7 (frames/s on a GPU). Networks trained at CPU scale."
    )
    return "\n".join(lines)


def noise_markdown(rows: list[dict], sigmas: list[float]) -> str:
    """mAP per method (rows) and read-noise std (columns); the published DeRefNet row always beside."""
    head = " | ".join(f"mAP, sigma {s:g}" for s in sigmas)
    lines = [f"| method | {head} | published mAP (sigma) |", "|---" * (len(sigmas) + 2) + "|"]
    for name in NOISE_ROWS:
        by_sigma = {r["noise"]: r["mAP"] for r in rows if r["method"] == name}
        if not by_sigma:
            continue
        label = "ISTA-Net+, centre frame" if name == "ISTA-Net+" else name
        published = " / ".join(f"{v:.2f} ({s:g})" for s, v in PUBLISHED_NOISE.get(name, {}).items())
        cells = [label, *(_number(by_sigma.get(s)) for s in sigmas), published]
        lines.append("| " + " | ".join(cells) + " |")
    deref = PUBLISHED_NOISE["DeRefNet"]
    cells = ["DeRefNet (published)", *(_number(deref.get(s)) for s in sigmas)]
    cells.append(" / ".join(f"{v:.2f} ({s:g})" for s, v in deref.items()))
    lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        "\nCSO-mAP x100; each sigma regenerates the test trajectories with Gaussian read noise of that std "
        "(grey levels, before the 8-bit rounding), same seed. Published: the SeqCSIST paper (sigma in "
        "brackets)."
    )
    return "\n".join(lines)


def _finite_or_none(row: dict) -> dict:
    """``row`` with non-finite floats (the label's infinite PSNR) as None: strict JSON."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs", help="directory of the training workdirs")
    parser.add_argument(
        "--pattern", default="{runs}/seq_cpu_{model}/best", help="checkpoint path of each network"
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
    """The checkpoint and ``refine`` rows of ``args.rows``; missing checkpoints are skipped with a note."""
    paths = []
    if "networks" in args.rows:
        paths += [(m, args.pattern.format(runs=args.runs, model=m)) for m in FRAME_NETWORKS]
    if "derefnet" in args.rows:
        paths += [(m, args.pattern.format(runs=args.runs, model=m)) for m in SEQUENCE_NETWORKS]
    methods = []
    for model, path in paths:
        if not os.path.isdir(path):
            print(f"[seqcsist_table] no checkpoint at {path}, row skipped", file=sys.stderr)
            continue
        print(f"[seqcsist_table] loading {path}", file=sys.stderr, flush=True)
        if model in SEQUENCE_NETWORKS:
            methods.append(derefnet(path, args.batch, args.window))
        else:
            methods.append(frame_network(path, args.batch))
    if "localize" in args.rows:
        methods += localize_methods(args.window)
    return methods


def comparison_rows(args, methods: list[Method], test: dict, noise: float) -> list[dict]:
    """Every measured row of the comparison table at read noise ``noise``, then the published rows."""
    rows = []
    if "label" in args.rows:
        rows.append(label_row(test))
    if "analytic" in args.rows:
        print("[seqcsist_table] ISTA / FISTA", file=sys.stderr, flush=True)
        val = centre_frames(split_windows(args.val_trajectories, noise, args.window, split="val"))
        for row in csist100k_table.analytic_rows(
            val, centre_frames(test), C, args.lams, args.iterations, THRESHOLD
        ):
            rows.append(
                {**row, "note": f"centre frame; {row['note']}; tuned on {len(val['count'])} val frames"}
            )
    for method in tqdm(methods, desc=f"rows, noise {noise:g}", unit="row"):
        rows.append({**measure(method, test, noise), "note": method.note})
    for row in rows:
        row.update(source="measured", noise=noise, published_mAP=published_map(row["method"], noise))
    return [{**r, "table": "comparison"} for r in rows + published_rows()]


def noise_rows(args, methods: list[Method], first: list[dict]) -> list[dict]:
    """The noise table's rows: the first sigma's from the comparison table, every other sigma measured."""
    chosen = [m for m in methods if m.name in NOISE_ROWS]
    rows = [dict(r, table="noise") for r in first if r["source"] == "measured" and r["method"] in NOISE_ROWS]
    for noise in tqdm(args.noise[1:], desc="noise", unit="sigma"):
        test = split_windows(args.trajectories, noise, args.window)
        for method in chosen:
            row = measure(method, test, noise, timed=False)
            row.update(source="measured", noise=noise, published_mAP=published_map(method.name, noise))
            rows.append({**row, "table": "noise"})
    return rows


def main(argv=None) -> int:
    args = _parse_args(argv)
    methods = load_methods(args)
    noise = args.noise[0]
    test = split_windows(args.trajectories, noise, args.window)
    rows = comparison_rows(args, methods, test, noise)
    report = markdown(rows, len(test["count"]), args.trajectories, args.window, noise)
    if len(args.noise) > 1:
        extra = noise_rows(args, methods, rows)
        rows += extra
        report += "\n\n" + noise_markdown(extra, args.noise)
    print(report)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(report + "\n")
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            f.writelines(json.dumps(_finite_or_none(r)) + "\n" for r in rows)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
