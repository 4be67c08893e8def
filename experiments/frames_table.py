"""The sensor-frame table: ``csist_jax.unmix_frames`` on whole 256 x 256 frames against the same groups
given to ``csist_jax.unmix`` as perfect 11 x 11 windows, at read-noise std 0 / 1 / 2 / 5 and two group
densities, with frames/s.

    python -m experiments.frames_table --out=outputs/frames_table          # about 15 minutes on 2 CPU cores
    python -m experiments.frames_table --frames=4 --stds=2 --out=/tmp/ft   # a minute

Frames: ``csist_jax.data.scenes.generate`` (seed ``--seed``, default 2026): a flat background of 20 grey
levels, read noise ``std``, CSIST-100K groups (1-5 targets) and isolated targets, their centre pixels at
least 5 px apart (closer than a window, so neighbouring groups share windows), 2 px inside the frame.
Densities per 100 x 100 px: "sparse" 1 group + 0.5 isolated (10 per frame), "dense" 4 + 2 (39 per frame).

Rows, per density and std:

* ``unmix_frames`` (std and background estimated): the whole pipeline;
* ``perfect windows``: :func:`csist_jax.frames.unmix_at` at the true group centres, with the background
  and the std the pipeline estimated: the same unmixing and merging without the detection and the
  windows' placement, so the difference is what finding the groups costs.

Columns: frame-level CSO-mAP x100 (``csist_jax.train.evaluation.point_scores`` on frame coordinates:
each detection matched to its nearest true target of the frame, thresholds 0.05 .. 0.25 px), group recall
(a group is found when a detection lies within 1 px of one of its targets), and frames/s of the pipeline
(after one untimed call on the same shapes; this machine's CPU). Writes ``OUT.md``, ``OUT.json``,
``OUT.png`` (CSO-mAP against std) and, with ``--picture PATH``, one dense frame at std 2 with its
detections. Every finished cell is kept in ``OUT.cells.json``: a killed run continues (``--fresh``
recomputes).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from tqdm.auto import tqdm

import csist_jax
from csist_jax import frames as frames_lib
from csist_jax.data import scenes
from csist_jax.train import evaluation
from experiments import report

STDS = (0.0, 1.0, 2.0, 5.0)
#: name -> (groups, isolated targets) per 100 x 100 px
DENSITIES = {"sparse": (1.0, 0.5), "dense": (4.0, 2.0)}
SIZE = 256
BACKGROUND = 20.0


def frames_for(density: str, std: float, n: int, seed: int) -> dict:
    groups, isolated = DENSITIES[density]
    return scenes.generate(
        seed,
        n,
        height=SIZE,
        width=SIZE,
        density=groups,
        isolated_density=isolated,
        noise_std=std,
        background=BACKGROUND,
    )


def cell(density: str, std: float, n: int, seed: int) -> dict:
    """The two rows of one (density, std): scores, the noise estimate and the pipeline's frames/s."""
    data = frames_for(density, std, n, seed)
    images = data["image"]
    csist_jax.unmix_frames(images[: min(len(images), 16)])  # compiles every shape the timed call uses
    (points, count, details), seconds = report.timed(
        lambda: csist_jax.unmix_frames(images, return_details=True)
    )
    live = data["group_size"] > 0
    p2, c2, _ = frames_lib.unmix_at(
        images, data["centres"], live, noise_std=details["noise_std"], plane=details["background"]
    )
    ours = evaluation.point_scores({"points": points, "count": count}, data)
    perfect = evaluation.point_scores({"points": p2, "count": c2}, data)
    return {
        "density": density,
        "std": std,
        "frames": int(n),
        "groups": int(live.sum()),
        "targets": int(data["count"].sum()),
        "noise_std_estimated": details["noise_std"],
        "method": details["method"],
        "frames_per_s": n / seconds,
        "unmix_frames": ours,
        "perfect_windows": perfect,
    }


def table(cells: list[dict], stds) -> str:
    header = ["density", "row"] + [f"std {s:g}" for s in stds]
    rows = []
    for density in DENSITIES:
        mine = {c["std"]: c for c in cells if c["density"] == density}
        if not mine:
            continue
        for label, key, field in (
            ("unmix_frames: CSO-mAP", "unmix_frames", "mAP"),
            ("perfect windows: CSO-mAP", "perfect_windows", "mAP"),
            ("unmix_frames: group recall %", "unmix_frames", "group_recall"),
            ("perfect windows: group recall %", "perfect_windows", "group_recall"),
        ):
            rows.append([density, label] + [100 * mine[s][key][field] if s in mine else None for s in stds])
        rows.append(
            [density, "unmix_frames: frames/s"]
            + [mine[s]["frames_per_s"] if s in mine else None for s in stds]
        )
        rows.append(
            [density, "noise std estimated"]
            + [mine[s]["noise_std_estimated"] if s in mine else None for s in stds]
        )
    return report.markdown_table(header, rows, widths=[7, 31] + [8] * len(stds))


def figure(cells: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for density, colour in zip(DENSITIES, ("C0", "C1")):
        mine = sorted((c for c in cells if c["density"] == density), key=lambda c: c["std"])
        if not mine:
            continue
        x = [c["std"] for c in mine]
        ax.plot(
            x,
            [100 * c["unmix_frames"]["mAP"] for c in mine],
            "o-",
            color=colour,
            label=f"unmix_frames, {density}",
        )
        ax.plot(
            x,
            [100 * c["perfect_windows"]["mAP"] for c in mine],
            "s--",
            color=colour,
            alpha=0.6,
            label=f"perfect windows, {density}",
        )
    ax.set_xlabel("read-noise std (grey levels)")
    ax.set_ylabel("frame-level CSO-mAP x100")
    ax.set_title(f"{SIZE} x {SIZE} sensor frames")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def picture(path: str, seed: int) -> None:
    """One dense 256 x 256 frame at std 2 with the true targets and ``unmix_frames``' detections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = frames_for("dense", 2.0, 1, seed)
    points, count = csist_jax.unmix_frames(data["image"])
    truth = data["targets"][0, : data["count"][0]]
    found = points[0, : count[0]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), gridspec_kw={"width_ratios": [1, 1]})
    axes[0].imshow(data["image"][0], cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(f"a 256 x 256 frame: {int(data['group_count'][0])} groups, read noise std 2")
    g = int(np.argmax(data["group_size"][0]))  # zoom on the largest group
    r, q = data["centres"][0, g]
    axes[0].add_patch(plt.Rectangle((q - 5.5, r - 5.5), 11, 11, fill=False, color="C1", lw=1.5))
    axes[1].imshow(data["image"][0], cmap="gray", vmin=0, vmax=255)
    axes[1].set_xlim(q - 5.5, q + 5.5)
    axes[1].set_ylim(r + 5.5, r - 5.5)
    axes[1].plot(truth[:, 1], truth[:, 0], "o", mfc="none", mec="C2", ms=12, mew=2, label="true targets")
    axes[1].plot(found[:, 1], found[:, 0], "x", color="C3", ms=10, mew=2, label="unmix_frames")
    axes[1].legend(loc="lower right", fontsize=9)
    axes[1].set_title("the orange window, magnified")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=64, help="256 x 256 frames per cell (default 64)")
    parser.add_argument(
        "--stds", default=",".join(f"{s:g}" for s in STDS), help="read-noise stds, comma-separated"
    )
    parser.add_argument("--densities", default=",".join(DENSITIES), help="which densities: sparse, dense")
    parser.add_argument("--seed", type=int, default=2026, help="the frames' seed (default 2026)")
    parser.add_argument(
        "--out", default="outputs/frames_table", help="output stem: OUT.md, OUT.json, OUT.png"
    )
    parser.add_argument("--picture", default="", help="also draw one frame with its detections to this PNG")
    parser.add_argument(
        "--fresh", action="store_true", help="recompute every cell (default: reuse OUT.cells.json)"
    )
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f"--frames must be >= 1, got {args.frames}")
    stds = tuple(float(s) for s in args.stds.split(","))
    if any(s < 0 for s in stds):
        parser.error(f"--stds must be >= 0, got {args.stds}")
    densities = [d.strip() for d in args.densities.split(",") if d.strip()]
    unknown = sorted(set(densities) - set(DENSITIES))
    if unknown:
        parser.error(f"--densities: unknown {unknown}; known: {', '.join(DENSITIES)}")
    store = args.out + ".cells.json"
    cells = {}
    if os.path.exists(store) and not args.fresh:
        with open(store) as f:
            cells = json.load(f)
    plan = [(d, s) for d in densities for s in stds]
    for density, std in tqdm(plan, desc="frames_table", unit="cell"):
        key = f"{density}/{std:g}/{args.frames}/{args.seed}"
        if key not in cells:
            cells[key] = cell(density, std, args.frames, args.seed)
            report.write_json(store, cells)
    done = [cells[f"{d}/{s:g}/{args.frames}/{args.seed}"] for d, s in plan]
    text = table(done, stds)
    print(text)
    report.write(args.out, f"# Sensor frames ({SIZE} x {SIZE}, {args.frames} per cell)\n\n{text}", done)
    figure(done, args.out + ".png")
    if args.picture:
        picture(args.picture, args.seed)
        print(f"picture: {args.picture}")
    print(f"wrote {args.out}.md, {args.out}.json, {args.out}.png")
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
