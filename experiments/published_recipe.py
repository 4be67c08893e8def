"""ISTA-Net, ISTA-Net+ and DISTA-Net trained with the published recipe, scored on the test split.

    python -m experiments.published_recipe --epochs 10 --runs runs/published --out outputs/published

Each network is trained with ``experiments.configs.common.published(model)`` (all 80,000 training
frames, batch 64, Adam 1e-4, validation CSO-mAP on 10,000 frames after every epoch, best network kept)
for ``--epochs`` epochs (1,250 steps each at the published sizes) by ``csist_jax.train.train_and_evaluate``
in ``<runs>/<model>``; a rerun resumes there (and stops at once when the run already holds the steps
asked for). Each network's best checkpoint (``<runs>/<model>/best``) is then scored on the 10,000-frame
test split: CSO-mAP and AP05..AP25 (x100) next to the published row, with the epochs and steps trained,
the wall time of this invocation's training, steps/s, the device, the jax version and the date. The
markdown table is printed and written to ``<out>/table.md``, every number to ``<out>/table.json``.

The full published run is 250 epochs (``--epochs 250``, the default): a multi-day GPU job. About 10 epochs
of the three networks are meant to fit a 15-minute lease on one H200 (projected from about 14 s per
batched DISTA-Net epoch measured there once; not yet run from this script on a GPU).
``--train-size``, ``--val-size``, ``--test-size``, ``--batch-size`` and
``--model-config stages=1,channels=4`` shrink a run for a smoke test; the table then says the recipe
was changed. ``--compute-dtype`` sets ``config.compute_dtype``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys

import jax
import ml_collections

from csist_jax import models
from csist_jax import train as train_lib
from csist_jax.train import config as train_config
from csist_jax.train import data as data_lib
from experiments import published as published_numbers
from experiments import report
from experiments.configs.common import published
from experiments.published import AP_KEYS as KEYS

MODELS = ("ista_net", "ista_net_plus", "dista_net")
COMPUTE_DTYPES = ("float32", "bfloat16")
PUBLISHED_EPOCHS = 250

#: published test scores (x100) per network, from the repository's one copy of SPEC sec. 9
PUBLISHED = {m: {k: published_numbers.CSIST100K[m][k] for k in KEYS} for m in MODELS}
NETWORKS = {m: published_numbers.label(m) for m in MODELS}

#: the config fields that define a run: a workdir trained with other values is not resumed
RUN_FIELDS = ("model", "data", "optim.batch_size", "optim.learning_rate", "seed", "loss.unfolding.sym_weight")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _model_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must name at least one of {list(MODELS)}, got {text!r}")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown network(s) {unknown}; choose from {list(MODELS)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"names a network twice: {text!r}")
    return names


def _model_config(text: str) -> dict:
    """``"stages=1,channels=4"`` -> ``{"stages": 1, "channels": 4}``, typed like the config's fields."""
    model = train_lib.default_config().model
    fields = {k: model.get_ref(k) for k in model if k not in train_config.MODEL_FIELDS}
    out = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expects key=value pairs separated by commas, got {item!r}")
        if key not in fields:
            raise argparse.ArgumentTypeError(f"unknown field {key!r}; known: {sorted(fields)}")
        kind = fields[key].get_type()
        try:
            out[key] = kind(value.strip())
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"{key} must be {kind.__name__}, got {value.strip()!r}"
            ) from None
        if kind is int and out[key] < 1:
            raise argparse.ArgumentTypeError(f"{key} must be >= 1, got {out[key]}")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--epochs", type=_positive_int, default=PUBLISHED_EPOCHS, help="epochs per network (published: 250)"
    )
    parser.add_argument("--models", type=_model_list, default=list(MODELS), help="comma list of networks")
    parser.add_argument("--runs", default=os.path.join("runs", "published"), help="one workdir per network")
    parser.add_argument("--out", default=os.path.join("outputs", "published"), help="table.md / table.json")
    parser.add_argument("--train-size", type=_positive_int, default=None, help="training frames (80,000)")
    parser.add_argument("--val-size", type=_positive_int, default=None, help="validation frames (10,000)")
    parser.add_argument("--test-size", type=_positive_int, default=data_lib.SPLIT_SIZE["test"])
    parser.add_argument("--batch-size", type=_positive_int, default=None, help="training batch (64)")
    parser.add_argument(
        "--model-config", type=_model_config, default={}, help="module overrides, e.g. stages=1,channels=4"
    )
    parser.add_argument(
        "--compute-dtype", choices=COMPUTE_DTYPES, default=None, help="config.compute_dtype (if it exists)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the per-network lines stay)")
    args = parser.parse_args(argv)
    for name in ("train", "val", "test"):
        size = getattr(args, f"{name}_size")
        if size is not None and size > data_lib.SPLIT_SIZE[name]:
            parser.error(
                f"argument --{name}-size: at most {data_lib.SPLIT_SIZE[name]:,} frames, got {size:,}"
            )
    train_size = args.train_size or data_lib.SPLIT_SIZE["train"]
    batch_size = args.batch_size or published(MODELS[0]).optim.batch_size
    if batch_size > train_size:
        parser.error(f"argument --batch-size: {batch_size} exceeds the {train_size} training frames")
    n_dev = jax.device_count()
    if batch_size % n_dev:
        parser.error(f"argument --batch-size: {batch_size} is not divisible by the {n_dev} devices")
    if args.compute_dtype is not None and "compute_dtype" not in train_lib.default_config():
        parser.error(
            "argument --compute-dtype: this csist_jax.train has no config.compute_dtype field "
            "(csist_jax.train.default_config()); leave the option out to train in float32"
        )
    return args


def make_config(model: str, args: argparse.Namespace) -> ml_collections.ConfigDict:
    """The published recipe for ``model`` with the command line's overrides."""
    cfg = published(model, c=3)
    cfg.optim.num_epochs = args.epochs
    cfg.optim.num_steps = 0
    if args.train_size is not None:
        cfg.data.train_size = args.train_size
    if args.val_size is not None:
        cfg.data.val_size = args.val_size
    if args.batch_size is not None:
        cfg.optim.batch_size = args.batch_size
    for key, value in args.model_config.items():
        cfg.model[key] = value
    if args.compute_dtype is not None:
        cfg.compute_dtype = args.compute_dtype
    # smaller splits: no padding of a small split up to the published 1,000-frame evaluation batch
    cfg.eval.batch_size = min(cfg.eval.batch_size, max(cfg.data.val_size, args.test_size))
    cfg.progress = not args.quiet
    return cfg


def changes_from_published(args: argparse.Namespace) -> list[str]:
    """What the command line changed from the published recipe (epochs aside)."""
    ref = published(MODELS[0])
    out = []
    for name, given, default in (
        ("train frames", args.train_size, ref.data.train_size),
        ("validation frames", args.val_size, ref.data.val_size),
        ("test frames", args.test_size, data_lib.SPLIT_SIZE["test"]),
        ("batch", args.batch_size, ref.optim.batch_size),
    ):
        if given is not None and given != default:
            out.append(f"{name} {given:,} (published {default:,})")
    if args.model_config:
        out.append("module " + ", ".join(f"{k}={v}" for k, v in sorted(args.model_config.items())))
    if args.compute_dtype not in (None, "float32"):
        out.append(f"compute dtype {args.compute_dtype}")
    return out


def _run_fields(config) -> dict:
    """The dotted fields of :data:`RUN_FIELDS` (and ``compute_dtype``) of a config, or of a saved
    ``config.json`` (one of before the config's groups read through ``train.config.upgrade``)."""
    d = train_config.flatten(train_config.upgrade(config))
    prefixes = RUN_FIELDS + ("compute_dtype",)
    return {k: v for k, v in d.items() if any(k == p or k.startswith(p + ".") for p in prefixes)}


def check_resumable(config, workdir: str) -> None:
    """Raise ``ValueError`` when ``workdir`` holds a run of another recipe (its ``config.json``)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        saved = _run_fields(json.load(f))
    wanted = json.loads(json.dumps(_run_fields(config)))
    # a field one side lacks (added to the training config since) is not a difference
    differ = sorted(k for k in wanted if k in saved and saved[k] != wanted[k])
    if differ:
        detail = "; ".join(f"{k}: {saved[k]!r} there, {wanted[k]!r} now" for k in differ)
        raise ValueError(
            f"{workdir} holds a run of another recipe ({detail}); pass another --runs directory "
            "or remove that one to start afresh"
        )


def latest_checkpoint_step(workdir: str) -> int:
    """The step of the newest Orbax checkpoint in ``<workdir>/checkpoints`` (0 when none)."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return 0
    return max((int(d) for d in os.listdir(directory) if d.isdigit()), default=0)


def logged_steps_per_s(workdir: str, after: int, batch_size: int) -> float | None:
    """Median training-loop rate (steps/s) of the ``metrics.jsonl`` train rows past step ``after``, from
    their ``images_per_s`` (None when the log has none): the update steps alone, without data
    generation, compilation or validation passes (the first logged interval still holds compilation)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        return None
    rates = []
    with open(path) as f:
        for line in f:
            row = json.loads(line) if line.strip() else {}
            if row.get("split") == "train" and row.get("step", 0) > after and "images_per_s" in row:
                rates.append(row["images_per_s"] / batch_size)
    return statistics.median(rates) if rates else None


def train_network(model: str, config, workdir: str) -> dict:
    """Train (or resume) one network; the row's training columns."""
    start = latest_checkpoint_step(workdir)
    result, wall = report.timed(lambda: train_lib.train_and_evaluate(config, workdir))
    steps_per_epoch = config.data.train_size // config.optim.batch_size
    done = result["step"] - min(start, result["step"])
    return {
        "model": model,
        "network": NETWORKS[model],
        "workdir": workdir,
        "steps_per_epoch": steps_per_epoch,
        "steps": result["step"],
        "epochs": result["step"] / steps_per_epoch,
        "start_step": start,
        "steps_this_run": done,
        "train_wall_s": wall,
        "steps_per_s": done / wall if done else None,
        "loop_steps_per_s": logged_steps_per_s(workdir, start, config.optim.batch_size) if done else None,
        "best_step": result["best_step"],
        "best_val_mAP": 100 * result["best_val_map"],
    }


def score_network(workdir: str, test: dict, config) -> dict:
    """Test scores (x100 for CSO-mAP and the APs) of the best checkpoint in ``workdir``."""
    best = os.path.join(workdir, "best")
    if not os.path.isdir(best):
        raise FileNotFoundError(f"{best} not found: training saved no best network in {workdir}")
    module, variables = models.load_checkpoint(best)
    scores = train_lib.evaluate(module, variables, test, config)
    row = {k: 100 * scores[k] for k in KEYS}
    row.update(psnr=scores["psnr"], ssim=scores["ssim"], params=models.param_count(variables))
    return row


def _num(value, fmt: str) -> str:
    return report.cell(value, fmt, empty="–")


def markdown(rows: list[dict], meta: dict) -> str:
    header = ["network", *KEYS, "epochs", "steps", "best step", "train wall s", "steps/s", "loop steps/s"]
    body = []
    for r in rows:
        body.append(
            [f"{r['network']} (this run)", *(_num(r[k], ".2f") for k in KEYS), _num(r["epochs"], "g")]
            + [f"{r['steps']:,}", f"{r['best_step']:,}", _num(r["train_wall_s"], ",.1f")]
            + [_num(r["steps_per_s"], ",.1f"), _num(r["loop_steps_per_s"], ",.1f")]
        )
        steps = PUBLISHED_EPOCHS * meta["published_steps_per_epoch"]
        pub = [f"{PUBLISHED[r['model']][k]:.2f}" for k in KEYS]
        body.append(
            [f"{r['network']} (published)", *pub, str(PUBLISHED_EPOCHS), f"{steps:,}", "", "", "", ""]
        )
    lines = [report.markdown_table(header, body)]
    recipe = "published recipe" if not meta["changes"] else "CHANGED recipe: " + "; ".join(meta["changes"])
    lines += [
        "",
        f"CSO-mAP and APs x100 on {meta['test_frames']:,} generated test frames (c = 3, threshold "
        f"{meta['brightness_threshold']:g}), best checkpoint by validation CSO-mAP on "
        f"{meta['val_frames']:,} frames. {recipe}: {meta['train_frames']:,} training frames, batch "
        f"{meta['batch_size']}, Adam {meta['learning_rate']:g}, {meta['steps_per_epoch']:,} steps per epoch, "
        f"compute dtype {meta['compute_dtype']}.",
        "Train wall s: this invocation's train_and_evaluate call (data generation, compilation and every "
        "validation pass included; a resumed run counts only the steps it added, a finished one 0); steps/s: "
        "the steps it added over that time; loop steps/s: median of the logged training-loop rates.",
        f"Device: {meta['device_count']} x {meta['device_kind']} ({meta['platform']}); jax {meta['jax']}; "
        f"{meta['date']}.",
    ]
    return "\n".join(lines)


def write_table(out: str, rows: list[dict], meta: dict, names: list[str]) -> None:
    """``<out>/table.md`` (the markdown table) and ``<out>/table.json`` (meta, rows, published rows)."""
    data = {"meta": meta, "rows": rows, "published": {m: PUBLISHED[m] for m in names}}
    report.write(os.path.join(out, "table"), markdown(rows, meta), data)


def main(argv=None) -> int:
    args = parse_args(argv)
    configs = {m: make_config(m, args) for m in args.models}
    first, ref = configs[args.models[0]], published(MODELS[0])
    device = jax.devices()[0]
    meta = {
        "command": "python -m experiments.published_recipe "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "epochs": args.epochs,
        "train_frames": first.data.train_size,
        "val_frames": first.data.val_size,
        "test_frames": args.test_size,
        "batch_size": first.optim.batch_size,
        "learning_rate": first.optim.learning_rate,
        "brightness_threshold": first.eval.brightness_threshold,
        "steps_per_epoch": first.data.train_size // first.optim.batch_size,
        "published_steps_per_epoch": ref.data.train_size // ref.optim.batch_size,
        "compute_dtype": first.get("compute_dtype", "float32"),
        "changes": changes_from_published(args),
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    # refuse a mismatched workdir, and an unwritable --out, before any training
    for model in args.models:
        check_resumable(configs[model], os.path.join(args.runs, model))
    os.makedirs(args.out, exist_ok=True)
    test_data = ml_collections.ConfigDict(first.data.to_dict())
    test_data.test_size = args.test_size
    test = data_lib.read_all(data_lib.load_split(test_data, "test"))
    rows = []
    for i, model in enumerate(args.models, 1):
        cfg, workdir = configs[model], os.path.join(args.runs, model)
        print(
            f"[published_recipe] {i}/{len(args.models)} {NETWORKS[model]}: {args.epochs} epochs x "
            f"{meta['steps_per_epoch']:,} steps in {workdir}",
            file=sys.stderr,
            flush=True,
        )
        row = train_network(model, cfg, workdir)
        row.update(score_network(workdir, test, cfg))
        rows.append(row)
        write_table(args.out, rows, meta, args.models)  # after each network: a cut-short lease keeps rows
        print(
            f"[published_recipe] {NETWORKS[model]}: step {row['steps']:,} "
            f"({row['steps_this_run']:,} this run, {row['train_wall_s']:.1f} s); "
            f"best val mAP {row['best_val_mAP']:.2f} at step {row['best_step']:,}; "
            f"test mAP {row['mAP']:.2f} (published {PUBLISHED[model]['mAP']:.2f})",
            file=sys.stderr,
            flush=True,
        )
    print(markdown(rows, meta))
    print(f"[published_recipe] wrote {os.path.join(args.out, 'table.md')} and table.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
