"""Parameters and multiply-accumulates of every method at its published size, beside the printed ones.

    python -m experiments.zoo_params                     # markdown to stdout
    python -m experiments.zoo_params --out=outputs/zoo_params.md   # + outputs/zoo_params.json

Rows: every name of ``csist_jax.models.MODEL_NAMES`` and ``SEQUENCE_MODEL_NAMES`` (c = 3, class
defaults), counted by ``csist_jax.models.complexity`` (trained parameters; MACs per image from XLA's
cost analysis of the forward pass, nothing is run), with the parameter counts the two published tables
print (SPEC sec. 10: DISTA-Net Table 1 for CSIST-100K, SeqCSIST Table 7) and our MACs scaled to the
DISTA-Net table's batch of 64. Why a count differs from a printed one is in each model's docstring and
docs/baselines.md.
"""

from __future__ import annotations

import argparse
import os

from tqdm.auto import tqdm

from csist_jax import models
from csist_jax.models import baselines
from experiments import published, report


def rows(names) -> list[dict]:
    out = []
    for name in tqdm(names, desc="complexity", leave=False):
        module = models.create(name, c=3)
        cost = models.complexity(module, batch=2)
        printed = baselines.PUBLISHED_PARAMS.get(name) or published.PARAMS.get(name, (None, None))
        out.append({"name": name, **cost, "csist100k": printed[0], "seqcsist": printed[1]})
    return out


def markdown(table: list[dict]) -> str:
    header = ["method", "parameters (ours)", "printed, CSIST-100K", "printed, SeqCSIST", "MACs / image"]
    body = [
        [r["name"], f"{r['params']:,}", r["csist100k"] or "", r["seqcsist"] or ""]
        + [f"{r['macs'] / 1e6:,.1f}M", f"{r['macs'] * 64 / 1e9:,.2f}G"]
        for r in table
    ]
    return report.markdown_table(header + ["x 64 (table batch)"], body)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="", help="also write the markdown table here (and .json rows)")
    args = parser.parse_args(argv)
    names = models.MODEL_NAMES + models.SEQUENCE_MODEL_NAMES
    table = rows(names)
    text = markdown(table)
    print(text)
    if args.out:
        report.write_markdown(args.out, text)
        report.write_json(os.path.splitext(args.out)[0] + ".json", table)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
