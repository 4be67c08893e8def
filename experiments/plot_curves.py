"""Learning curves of several training workdirs on one figure: validation CSO-mAP and training loss.

    python -m experiments.plot_curves runs/seq_cpu_derefnet runs/seq_cpu_ista_net \\
        runs/seq_cpu_ista_net_plus runs/seq_cpu_dista_net --out=outputs/seqcsist_curves.png

Reads each workdir's ``metrics.jsonl`` (written by ``csist_jax.train.train_and_evaluate``) and prints the
validation CSO-mAP of every run at every validated step as a table.
"""

from __future__ import annotations

import argparse
import json
import os

from experiments import report


def read_rows(workdir: str) -> list[dict]:
    """The logged rows of a training workdir (``metrics.jsonl``)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: each argument must be a train_and_evaluate workdir")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workdirs", nargs="+", help="train_and_evaluate workdirs")
    parser.add_argument("--out", default="outputs/curves.png", help="figure to write")
    args = parser.parse_args(argv)
    runs = {os.path.basename(os.path.normpath(w)): read_rows(w) for w in args.workdirs}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_map, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.8))
    body = []
    for name, rows in runs.items():
        val = [r for r in rows if r["split"] == "val"]
        train = [r for r in rows if r["split"] == "train"]
        ax_map.plot([r["step"] for r in val], [100 * r["mAP"] for r in val], "o-", label=name)
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label=name)
        body.append([name, ", ".join(f"{r['step']}: {100 * r['mAP']:.2f}" for r in val)])
    print(report.markdown_table(["run", "validation CSO-mAP x100 (step: value)"], body))
    ax_map.set_xlabel("step")
    ax_map.set_ylabel("validation CSO-mAP x100")
    ax_map.legend()
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss (each network's own objective)")
    ax_loss.set_yscale("log")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
