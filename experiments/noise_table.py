"""The noise table: CSO-mAP (x100) and count accuracy of every method against read noise, on CSIST-100K
and SeqCSIST test frames, with the published noise rows beside.

    python -m experiments.noise_table --out=outputs/noise_table
    python -m experiments.noise_table --frames=500 --trajectories=8 --out=outputs/noise_small   # minutes

Test data: the generators' test splits (seed 0) rendered with read noise ``std`` in {0, 1, 2, 3, 5}
grey levels by the library's sensor model (``physics.sensor.observe``: clean + N(0, std^2), rounded,
clipped to 0..255); the same scenes at every std. CSIST-100K: the first ``--frames`` test frames.
SeqCSIST: the 16 five-frame windows of each of the first ``--trajectories`` test trajectories, scored on
their centre frames.

Rows, CSIST-100K: the exact HR label on its c = 3 grid (a reference: the ceiling of grid methods); the
ML fit started from the truth with the true count (a reference: ``refine.polish`` of the true targets);
``refine.localize`` told the std and with the std estimated (``refine.estimate_noise``); the learned
localiser trained noise-free (``experiments/checkpoints/localizer_c3_cpu``) and noise-trained
(``csist_jax/checkpoints/localizer_noise_c3``), each alone and + polish (gated, full-search fallback);
``csist_jax.unmix`` (the std estimated); ISTA-Net+ trained noise-free and noise-trained, on its grid.
SeqCSIST: the exact HR label; the joint window fit started from the truth; ``localize_windows`` with its
old search (the centre frame's start) and its new one (a start from every frame), told the std; the
noise-trained window localiser alone and + window polish; ``csist_jax.unmix_windows``; DeRefNet trained
with noise at the CPU budget of ISTA-Net+'s noise run, on its grid (threshold 70); DeRefNet as published.

Writes ``OUT.md``, ``OUT.json`` and ``OUT.png`` (CSO-mAP against std, one line per method). A progress
bar counts (dataset, std, method) cells; every finished cell is kept in ``OUT.cells.json``, so a killed
run continues where it stopped (``--fresh`` recomputes). ``--methods=word,...`` computes only the rows
whose name contains one of the words. About 40 minutes at the defaults on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import csist_jax
from csist_jax import models, physics, refine
from csist_jax.data import csist100k, seqcsist
from csist_jax.train import evaluation
from csist_jax.unmixing import load_network, polish_gate
from experiments import report, tables
from experiments.published import seqcsist_noise

STDS = (0.0, 1.0, 2.0, 3.0, 5.0)
CHECKPOINTS = tables.SHIPPED
#: SeqCSIST paper: DeRefNet under noise 0 / 2 / 5 (SPEC sec. 9; how the noise was drawn is not stated)
PUBLISHED = {"DeRefNet, published (SeqCSIST paper)": seqcsist_noise("derefnet")}


def _network(path: str):
    """``run(images[, frame]) -> decoded dict`` of a saved network (``models.load_checkpoint``), loaded on
    its first call (a missing network is an error when its row is computed)."""
    loaded = {}

    def run(images, frame=None):
        if not loaded:
            if not os.path.isdir(path):
                raise FileNotFoundError(
                    f"no trained network at {path} (see experiments/checkpoints/README.md)"
                )
            module, variables = models.load_checkpoint(path)
            loaded.update(
                module=module,
                variables=variables,
                apply=evaluation.make_apply(module, evaluation.make_mesh()),
                decode=jax.jit(module.decode),
            )
        m = loaded
        out = evaluation.predict(m["module"], m["variables"], images, 500, apply=m["apply"], frame=frame)
        return jax.tree.map(np.asarray, m["decode"](jax.tree.map(jnp.asarray, out)))

    return run


def _shipped(name: str):
    module, variables = load_network(name)
    decode = jax.jit(lambda v, *x: module.decode(module.apply(v, *x)))

    def run(images, frame=None):
        inputs = (images,) if frame is None else (images, frame)
        parts = [
            decode(variables, *(jnp.asarray(x[i : i + 1000]) for x in inputs))
            for i in range(0, len(images), 1000)
        ]
        return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *parts)

    return run


def _truth(data: dict) -> dict:
    targets = np.asarray(data["targets"], np.float32)
    points = targets.copy()
    points[..., 2] = (targets[..., 2] > 0).astype(np.float32)
    return {"points": points, "count": np.asarray(data["count"]), "brightness": targets[..., 2]}


def _polish(images, found, std):
    return refine.polish(images, found, noise_std=std, max_cost=polish_gate(std), fallback=True)


def csist_methods(args) -> dict:
    """name -> (kind, fn(data, std) -> decoded): ``"points"`` or ``"maps"`` (scored at threshold 50)."""
    free = _network(os.path.join(CHECKPOINTS, "localizer_c3_cpu"))
    noisy = _shipped("localizer_noise_c3")
    grid_free = _network(os.path.join(CHECKPOINTS, "ista_net_plus_c3_cpu"))
    grid_noise = _network(os.path.join(CHECKPOINTS, "ista_net_plus_noise_c3_cpu"))
    img = lambda d: np.asarray(d["image"], np.float32)  # noqa: E731
    return {
        "exact HR label, on its grid (reference)": (
            "maps",
            lambda d, s: {"maps": physics.hr_label(d["targets"], 3)},
        ),
        "ML fit from the truth, true count (reference)": (
            "points",
            lambda d, s: refine.polish(img(d), _truth(d), noise_std=s, iterations=20, max_cost=1e30),
        ),
        "refine.localize, told the std": ("points", lambda d, s: refine.fit_sources(img(d), noise_std=s)),
        "refine.localize, std estimated": (
            "points",
            lambda d, s: refine.fit_sources(img(d), noise_std=refine.estimate_noise(img(d))["noise_std"]),
        ),
        "learned, trained noise-free": ("points", lambda d, s: free(img(d))),
        "learned, trained noise-free + polish": ("points", lambda d, s: _polish(img(d), free(img(d)), s)),
        "learned, noise-trained": ("points", lambda d, s: noisy(img(d))),
        "learned, noise-trained + polish": ("points", lambda d, s: _polish(img(d), noisy(img(d)), s)),
        "csist_jax.unmix (std estimated)": (
            "points",
            lambda d, s: dict(zip(("points", "count"), csist_jax.unmix(d["image"]))),
        ),
        "ISTA-Net+, trained noise-free, on its grid": ("maps", lambda d, s: grid_free(img(d))),
        "ISTA-Net+, noise-trained, on its grid": ("maps", lambda d, s: grid_noise(img(d))),
    }


def seq_methods(args) -> dict:
    """name -> (kind, fn(windows data, std) -> decoded) on SeqCSIST windows (maps at threshold 70)."""
    window_net = _shipped("window_localizer_noise_c3")
    derefnet = _network(os.path.join(CHECKPOINTS, "derefnet_noise_c3_cpu"))
    win = lambda d: np.asarray(d["image"], np.float32)  # noqa: E731
    frame = lambda d: np.asarray(d["frame"], np.int32)  # noqa: E731

    def windows_fit(d, s, starts):
        points, count, _ = refine.localize_windows(win(d), noise_std=s, starts=starts)
        return {"points": points, "count": count}

    def polished(d, s):
        found = window_net(win(d), frame(d))
        points, _ = refine.polish_windows(win(d), found, noise_std=s, max_cost=polish_gate(s, 5 * 121, 5))
        return {"points": points, "count": found["count"]}

    def truth_fit(d, s):
        points, _ = refine.polish_windows(win(d), _truth(d), noise_std=s, iterations=30)
        return {"points": points, "count": d["count"]}

    return {
        "exact HR label, on its grid (reference)": (
            "maps",
            lambda d, s: {"maps": physics.hr_label(d["targets"], 3)},
        ),
        "joint window fit from the truth, true count (reference)": ("points", truth_fit),
        "localize_windows, centre-frame start (old search)": (
            "points",
            lambda d, s: windows_fit(d, s, "centre"),
        ),
        "localize_windows, every frame's start (new search)": (
            "points",
            lambda d, s: windows_fit(d, s, "all"),
        ),
        "window localiser, noise-trained": ("points", lambda d, s: window_net(win(d), frame(d))),
        "window localiser, noise-trained + window polish": ("points", polished),
        "csist_jax.unmix_windows (std estimated)": (
            "points",
            lambda d, s: dict(zip(("points", "count"), csist_jax.unmix_windows(d["image"]))),
        ),
        "DeRefNet, noise-trained, on its grid": ("maps", lambda d, s: derefnet(win(d), frame(d))),
    }


def score(kind: str, decoded: dict, data: dict, threshold: float) -> dict:
    """CSO-mAP x100 (and count accuracy, %, for points), through ``train.evaluation``."""
    arrays = {"targets": np.asarray(data["targets"]), "count": np.asarray(data["count"])}
    if kind == "maps":
        out = evaluation.map_scores(decoded, arrays, c=3, size=11, brightness_threshold=threshold)
        return {"mAP": 100 * out["mAP"], "count_accuracy": None}
    out = evaluation.point_scores({k: np.asarray(decoded[k]) for k in ("points", "count")}, arrays)
    return {"mAP": 100 * out["mAP"], "count_accuracy": 100 * out["count_accuracy"]}


class Cells:
    """Finished cells ``(dataset, size, std, method) -> result`` in ``path`` (JSON, rewritten after every
    cell): a killed or partial run (``--methods``) continues where it stopped; ``--fresh`` starts over."""

    def __init__(self, path: str, fresh: bool):
        self.path = path
        self.cells = {}
        if os.path.exists(path) and not fresh:
            with open(path) as f:
                self.cells = json.load(f)

    @staticmethod
    def key(dataset, size, std, method) -> str:
        return f"{dataset}|{size}|{std:g}|{method}"

    def get(self, *key):
        return self.cells.get(self.key(*key))

    def put(self, result, *key) -> None:
        self.cells[self.key(*key)] = result
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        if os.path.exists(self.path):  # another run on the same OUT (other --datasets) may have added cells
            with open(self.path) as f:
                self.cells = {**json.load(f), **self.cells}
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.cells, f, indent=1)
        os.replace(self.path + ".tmp", self.path)


def run_dataset(name, size, methods, make_data, stds, threshold, bar, cells: Cells) -> list[dict]:
    rows = {
        m: {"method": m, "kind": kind, "mAP": {}, "count_accuracy": {}, "seconds": {}}
        for m, (kind, _) in methods.items()
    }
    for std in stds:
        data = None
        for method, (kind, fn) in methods.items():
            bar.set_postfix_str(f"{name} std {std:g}: {method}")
            result = cells.get(name, size, std, method)
            if result is None:
                data = make_data(std) if data is None else data
                decoded, seconds = report.timed(lambda fn=fn, data=data, std=std: fn(data, std))
                result = dict(score(kind, decoded, data, threshold), seconds=seconds)
                cells.put(result, name, size, std, method)
                bar.write(f"{name} std {std:g}: {method}: mAP {result['mAP']:.2f}")
            rows[method]["mAP"][std] = result["mAP"]
            rows[method]["count_accuracy"][std] = result["count_accuracy"]
            rows[method]["seconds"][std] = result["seconds"]
            bar.update(1)
    return list(rows.values())


def table(title: str, rows: list[dict], stds, published: dict | None = None) -> str:
    header = (
        ["method"]
        + [f"std {s:g}" for s in stds]
        + ["count acc. % (std " + " / ".join(f"{s:g}" for s in stds) + ")"]
    )
    body = []
    for r in rows:
        counts = r["count_accuracy"]
        acc = " / ".join(report.number(counts.get(s), 1) for s in stds) if r["kind"] == "points" else "–"
        body.append([r["method"]] + [r["mAP"].get(s) for s in stds] + [acc])
    for name, values in (published or {}).items():
        body.append([name] + [values.get(s) for s in stds] + ["–"])
    return f"### {title}\n\nCSO-mAP x100 per read-noise std (grey levels)\n\n" + report.markdown_table(
        header, body
    )


def figure(path: str, results: dict, stds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 5), squeeze=False)
    for ax, (name, (rows, published)) in zip(axes[0], results.items()):
        for r in rows:
            style = ":" if "reference" in r["method"] else ("-" if r["kind"] == "points" else "--")
            width = 3 if "unmix" in r["method"] else 1.3
            ax.plot(stds, [r["mAP"][s] for s in stds], style, marker="o", lw=width, label=r["method"])
        for label, values in (published or {}).items():
            xs = sorted(values)
            ax.plot(xs, [values[x] for x in xs], "k*", ms=10, label=label)
        ax.set(xlabel="read-noise std (grey levels)", ylabel="CSO-mAP x100", title=name, ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--frames", type=int, default=10_000, help="CSIST-100K test frames per std (default 10,000)"
    )
    parser.add_argument(
        "--trajectories", type=int, default=64, help="SeqCSIST test trajectories (16 windows each)"
    )
    parser.add_argument(
        "--stds", default=",".join(f"{s:g}" for s in STDS), help="read-noise stds, comma-separated"
    )
    parser.add_argument("--datasets", default="csist100k,seqcsist", help="which tables: csist100k, seqcsist")
    parser.add_argument("--out", default="outputs/noise_table", help="output stem: OUT.md, OUT.json, OUT.png")
    parser.add_argument(
        "--methods",
        default="",
        help="only the rows whose name contains one of these comma-separated words; '-word' leaves rows out",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="recompute every cell (default: reuse OUT.cells.json)"
    )
    args = parser.parse_args(argv)
    stds = tuple(float(s) for s in args.stds.split(","))
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(datasets) - {"csist100k", "seqcsist"})
    if unknown:
        parser.error(f"--datasets: unknown {unknown}; known: csist100k, seqcsist")
    for name, value in (("--frames", args.frames), ("--trajectories", args.trajectories)):
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    plan = {}
    if "csist100k" in datasets:
        start = csist100k.SPLIT_START["test"]
        plan["CSIST-100K"] = (
            csist_methods(args),
            lambda s, start=start: csist100k.generate(0, args.frames, start=start, noise_std=s),
            50.0,
            None,
        )
    if "seqcsist" in datasets:
        start = seqcsist.SPLIT_START["test"]
        plan["SeqCSIST"] = (
            seq_methods(args),
            lambda s, start=start: seqcsist.windows(
                seqcsist.generate(0, args.trajectories, start=start, noise_std=s)
            ),
            70.0,
            PUBLISHED,
        )
    words = [w.strip() for w in args.methods.split(",") if w.strip()]
    keep, drop = [w for w in words if not w.startswith("-")], [w[1:] for w in words if w.startswith("-")]

    def wanted(method: str) -> bool:
        return (not keep or any(w in method for w in keep)) and not any(w in method for w in drop)

    plan = {
        name: ({m: v for m, v in methods.items() if wanted(m)}, *rest)
        for name, (methods, *rest) in plan.items()
    }
    cells = Cells(args.out + ".cells.json", args.fresh)
    results, sections = {}, []
    with tqdm(
        total=sum(len(m) for m, *_ in plan.values()) * len(stds), unit="cell", desc="noise table"
    ) as bar:
        for name, (methods, make, threshold, published) in plan.items():
            size = args.frames if name == "CSIST-100K" else args.trajectories
            rows = run_dataset(name, size, methods, make, stds, threshold, bar, cells)
            results[name] = (rows, published)
            n = (
                f"{args.frames:,} test frames"
                if name == "CSIST-100K"
                else f"{16 * args.trajectories:,} test windows"
            )
            sections.append(table(f"{name}, {n} per std", rows, stds, published))
    command = "python -m experiments.noise_table " + " ".join(argv if argv is not None else sys.argv[1:])
    markdown = f"## Read noise\n\n`{command.strip()}`\n\n" + "\n\n".join(sections)
    md, js = report.write(args.out, markdown, {name: rows for name, (rows, _) in results.items()})
    figure(args.out + ".png", results, stds)
    print(markdown)
    print(f"wrote {md}, {js}, {args.out}.png")
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
