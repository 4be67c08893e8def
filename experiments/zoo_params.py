"""Parameters and multiply-accumulates of every method at its published size, beside the printed ones.

    python -m experiments.zoo_params                     # markdown to stdout
    python -m experiments.zoo_params --out=outputs/zoo_params.md

Rows: every name of ``csist_jax.models.MODEL_NAMES`` and ``SEQUENCE_MODEL_NAMES`` (c = 3, class
defaults), counted by ``csist_jax.models.complexity`` (trained parameters; MACs per image from XLA's
cost analysis of the forward pass, nothing is run), with the parameter counts the two published tables
print (SPEC sec. 10: DISTA-Net Table 1 for CSIST-100K, SeqCSIST Table 7) and our MACs scaled to the
DISTA-Net table's batch of 64. Why a count differs from a printed one is in each model's docstring and
docs/baselines.md.
"""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from csist_jax import models
from csist_jax.models import baselines

#: the library's own networks, as printed (SPEC sec. 10.1 / 10.2)
OWN_PUBLISHED = {
    "ista_net": ("0.171M", "0.17M"),
    "ista_net_plus": ("0.337M", "0.38M"),
    "dista_net": ("2.179M", None),
    "lista": ("21.10M", "21.10M"),
    "derefnet": (None, "0.89M"),
}


def rows(names) -> list[dict]:
    out = []
    for name in tqdm(names, desc="complexity", leave=False):
        module = models.create(name, c=3)
        cost = models.complexity(module, batch=2)
        printed = baselines.PUBLISHED_PARAMS.get(name) or OWN_PUBLISHED.get(name, (None, None))
        out.append({"name": name, **cost, "csist100k": printed[0], "seqcsist": printed[1]})
    return out


def markdown(table: list[dict]) -> str:
    lines = [
        "| method | parameters (ours) | printed, CSIST-100K | printed, SeqCSIST | MACs / image | "
        "x 64 (table batch) |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['name']} | {r['params']:,} | {r['csist100k'] or ''} | {r['seqcsist'] or ''} "
            f"| {r['macs'] / 1e6:,.1f}M | {r['macs'] * 64 / 1e9:,.2f}G |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    names = models.MODEL_NAMES + models.SEQUENCE_MODEL_NAMES
    text = markdown(rows(names))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
