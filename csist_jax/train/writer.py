"""Training logs: every row to ``metrics.jsonl``, one CSV per split, and a training-curve PNG.

A row is ``{"step": int, "split": "train" | "val", <name>: float, ...}``. A resumed run first drops the
rows logged after the checkpoint it resumes from (they are recomputed), so the logs read as one run.
"""

from __future__ import annotations

import csv
import json
import os


class MetricsWriter:
    """Append-only writer of ``metrics.jsonl``, ``{split}.csv`` and ``curves.png`` in ``workdir``."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.workdir = workdir
        self.enabled = enabled
        self.jsonl = os.path.join(workdir, "metrics.jsonl")

    def rows(self) -> list[dict]:
        """Every row logged so far."""
        if not os.path.exists(self.jsonl):
            return []
        with open(self.jsonl) as f:
            return [json.loads(line) for line in f if line.strip()]

    def write(self, step: int, split: str, values: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._append_csv(split, row)

    def _append_csv(self, split: str, row: dict) -> None:
        path = os.path.join(self.workdir, f"{split}.csv")
        fields = [k for k in row if k != "split"]
        new = not os.path.exists(path)
        if not new:
            with open(path) as f:
                header = next(csv.reader(f), [])
            if header != fields:  # a new column appeared: rewrite the file with the union of columns
                self._rewrite_csv(split, extra=row)
                return
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            if new:
                w.writeheader()
            w.writerow({k: row[k] for k in fields})

    def _rewrite_csv(self, split: str, extra: dict | None = None) -> None:
        rows = [r for r in self.rows() if r["split"] == split]
        if extra is not None and (not rows or rows[-1] != extra):
            rows.append(extra)
        path = os.path.join(self.workdir, f"{split}.csv")
        if not rows:
            if os.path.exists(path):
                os.remove(path)
            return
        fields = []
        for r in rows:
            fields += [k for k in r if k != "split" and k not in fields]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, restval="")
            w.writeheader()
            for r in rows:
                w.writerow({k: v for k, v in r.items() if k != "split"})

    def truncate_after(self, step: int) -> None:
        """Drop rows with ``step`` greater than ``step`` (a run resuming from that checkpoint)."""
        if not self.enabled or not os.path.exists(self.jsonl):
            return
        kept = [r for r in self.rows() if r["step"] <= step]
        with open(self.jsonl, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        for split in {r["split"] for r in kept} | {"train", "val"}:
            self._rewrite_csv(split)

    def plot(self) -> str | None:
        """Write ``curves.png``: training loss (log scale) and validation CSO-mAP against the step."""
        if not self.enabled:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        train = [r for r in rows if r["split"] == "train"]
        val = [r for r in rows if r["split"] == "val"]
        fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(10, 3.6))
        if train:
            ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="loss")
            # the regression term: "mse" (single-frame networks) or "regression" (DeRefNet)
            term = "mse" if "mse" in train[0] else "regression"
            positive = all(r[term] > 0 for r in train) and all(r["loss"] > 0 for r in train)
            ax_loss.plot([r["step"] for r in train], [r[term] for r in train], label="MSE term", alpha=0.7)
            # a likelihood loss (the learned localiser) can go negative: linear scale then
            ax_loss.set_yscale("log" if positive else "linear")
            ax_loss.legend()
        ax_loss.set_xlabel("step")
        ax_loss.set_title("training loss")
        if val:
            ax_map.plot([r["step"] for r in val], [100 * r["mAP"] for r in val], "o-")
        ax_map.set_xlabel("step")
        ax_map.set_ylabel("CSO-mAP x100")
        ax_map.set_title("validation CSO-mAP")
        fig.tight_layout()
        path = os.path.join(self.workdir, "curves.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path
