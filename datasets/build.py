"""Build, export and preview the datasets from the command line (no TensorFlow needed).

    # a TFDS dataset (ArrayRecord) from a named config: tiny | small | full | official
    python -m datasets.build build csist100k --config small --data-dir /abs/data_dir
    # any size: a custom config named after its sizes and seed
    python -m datasets.build build seqcsist --train 700 --val 150 --test 150 --seed 3 --data-dir /abs/data_dir
    # the official download, validated file by file (manual_dir holds train/ val/ test/);
    # --config official_skip leaves bad samples out and reports them instead of stopping
    python -m datasets.build build csist100k --config official --manual-dir /abs/CSIST-100K --data-dir ...
    # synthetic data written in the official png + xml layout
    python -m datasets.build export seqcsist --train 35 --val 8 --test 8 --out /abs/SeqCSIST-like
    # sample grids of both datasets (from a built config when --data-dir is given, else generated)
    python -m datasets.build preview --out docs/images

Every command shows progress and ends with a table of what it wrote. A mistake (a missing manual dir,
an unknown --set field, an unwritable data dir, a bad official file) ends with one line
``python -m datasets.build: error: ...`` and status 2; ``--verbose`` (or ``CSIST_JAX_TRACEBACK=1``)
shows the traceback.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import inspect
import os
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from datasets import common
from datasets.csist100k import Csist100k
from datasets.seqcsist import Seqcsist

BUILDERS = {"csist100k": Csist100k, "seqcsist": Seqcsist}
UNITS = {"csist100k": "images", "seqcsist": "trajectories"}


def make_builder(
    dataset: str,
    *,
    data_dir: os.PathLike | str,
    config: str | None = None,
    seed: int | None = None,
    split_sizes: dict[str, int] | None = None,
    protocol: dict | None = None,
) -> tfds.core.DatasetBuilder:
    """The builder of ``dataset`` for a named ``config``, or for custom ``split_sizes`` / ``seed`` /
    ``protocol`` (generator keyword arguments; missing sizes default to the ``small`` config's);
    ``data_dir`` is made absolute (TFDS needs that)."""
    if dataset not in BUILDERS:
        raise ValueError(f"dataset must be one of {sorted(BUILDERS)}, got {dataset!r}")
    cls = BUILDERS[dataset]
    data_dir = os.path.abspath(os.fspath(data_dir))
    if split_sizes is None and not protocol and seed is None:
        names = [c.name for c in cls.BUILDER_CONFIGS]
        config = config or "small"
        if config not in names:
            raise ValueError(f"config must be one of {names} (or give split sizes), got {config!r}")
        return cls(config=config, data_dir=data_dir)
    if config is not None:
        raise ValueError("give either a named config or split sizes / protocol, not both")
    if split_sizes is None:
        split_sizes = dict(next(c for c in cls.BUILDER_CONFIGS if c.name == "small").split_sizes)
    custom = common.custom_config(seed or 0, split_sizes, protocol, unit=UNITS[dataset])
    return cls(config=custom, data_dir=data_dir)


def _parse_protocol(pairs: list[str]) -> dict:
    protocol = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        try:
            protocol[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            protocol[key] = value
    return protocol


#: generator arguments that are not protocol fields (--set cannot give them)
_NOT_PROTOCOL = ("seed", "n", "n_trajectories", "start", "progress", "return_clean")


def _check_protocol(dataset: str, protocol: dict) -> None:
    """Every ``--set`` key must be a keyword of the dataset's generator (named with the closest one)."""
    from csist_jax.data import csist100k, seqcsist

    generate = csist100k.generate if dataset == "csist100k" else seqcsist.generate
    known = [k for k in inspect.signature(generate).parameters if k not in _NOT_PROTOCOL]
    for key in protocol:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"--set {key}: not a {dataset} protocol field{hint}; known: {', '.join(known)}")


def _check_manual_dir(args) -> None:
    """An official import needs the download unpacked in ``--manual-dir`` (checked before TFDS, whose own
    check is an assertion with a page of text)."""
    if args.config not in ("official", "official_skip"):
        return
    if args.manual_dir is None:
        path = Path(os.path.abspath(args.data_dir)) / "downloads" / "manual"  # where TFDS looks then
        if not path.is_dir() or not any(path.iterdir()):
            raise FileNotFoundError(
                f"--config {args.config} imports the official download: give --manual-dir, the directory "
                f"holding its train/ val/ test/ split directories (or unpack it in {path})"
            )
        return
    path = Path(args.manual_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"--manual-dir {path}: no such directory")
    if not any(path.iterdir()):
        raise FileNotFoundError(f"--manual-dir {path} is empty: unpack the official download there first")


def _sizes(args) -> dict[str, int] | None:
    given = {s: getattr(args, s) for s in common.SPLITS if getattr(args, s) is not None}
    return given or None


def _table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).rjust(w) for v, w in zip(header, widths))]
    lines += ["  ".join(str(v).rjust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def cmd_build(args) -> int:
    _check_protocol(args.dataset, _parse_protocol(args.set))
    _check_manual_dir(args)
    builder = make_builder(
        args.dataset,
        data_dir=args.data_dir,
        config=args.config,
        seed=args.seed,
        split_sizes=_sizes(args),
        protocol=_parse_protocol(args.set),
    )
    download_config = None
    if args.manual_dir:
        download_config = tfds.download.DownloadConfig(manual_dir=os.path.abspath(args.manual_dir))
    t0 = time.perf_counter()
    builder.download_and_prepare(file_format="array_record", download_config=download_config)
    elapsed = time.perf_counter() - t0
    rows = [
        (name, f"{split.num_examples:,}", f"{split.num_bytes / 2**20:.1f}")
        for name, split in builder.info.splits.items()
    ]
    print(f"\n{args.dataset}/{builder.builder_config.name} in {builder.data_path} ({elapsed:.1f} s)")
    print(_table(rows, ("split", "frames", "MiB")))
    return 0


def cmd_export(args) -> int:
    from csist_jax.data import csist100k, io, seqcsist

    generate = csist100k.generate if args.dataset == "csist100k" else seqcsist.generate
    sizes = _sizes(args) or dict(
        next(c for c in BUILDERS[args.dataset].BUILDER_CONFIGS if c.name == "tiny").split_sizes
    )
    protocol = _parse_protocol(args.set)
    _check_protocol(args.dataset, protocol)
    rows = []
    for split, n in sizes.items():
        data = generate(args.seed or 0, n, start=common.SPLIT_START[split], progress=True, **protocol)
        path = io.write_dir(
            Path(args.out) / split,
            data,
            overwrite=args.overwrite,
            progress=True,
            sigma=float(protocol.get("sigma", 0.5)),
        )
        rows.append((split, f"{n:,}", f"{data['image'].size // data['image'].shape[-1] ** 2:,}", str(path)))
    print(_table(rows, ("split", UNITS[args.dataset], "frames", "directory")))
    return 0


def _preview_data(dataset: str, args, n: int) -> dict[str, np.ndarray]:
    from csist_jax.data import csist100k, pipeline, seqcsist

    if args.data_dir:
        builder = make_builder(dataset, data_dir=args.data_dir, config=args.config)
        source = pipeline.TFDSSource(builder.as_data_source()[args.split])
        frames = n * (source.n_frames or 1)
        data = source.read(np.arange(min(frames, len(source))))
        if source.n_frames is None:
            return data
        t = source.n_frames
        return {
            "image": data["image"].reshape((-1, t) + data["image"].shape[1:]),
            "targets": data["targets"].reshape((-1, t) + data["targets"].shape[1:]),
            "count": data["count"][::t],
        }
    generate = csist100k.generate if dataset == "csist100k" else seqcsist.generate
    return generate(args.seed, n, start=common.SPLIT_START[args.split])


def cmd_preview(args) -> int:
    from datasets import preview

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = list(BUILDERS) if args.dataset == "both" else [args.dataset]
    rows = []
    for dataset in wanted:
        path = out / f"{dataset}_preview.png"
        if dataset == "csist100k":
            preview.csist100k_grid(_preview_data(dataset, args, 24), path)
        else:
            preview.seqcsist_grid(_preview_data(dataset, args, 4), path)
        rows.append((dataset, str(path)))
    print(_table(rows, ("dataset", "preview")))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datasets.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add_sizes(p):
        for split in common.SPLITS:
            p.add_argument(
                f"--{split}", type=int, default=None, help=f"{split} size (images or trajectories)"
            )
        p.add_argument("--seed", type=int, default=None, help="seed of a custom config (default 0)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="generator protocol override, e.g. --set noise_std=2.0 (repeatable)",
        )

    build = sub.add_parser("build", help="build a TFDS dataset (ArrayRecord)")
    build.add_argument("dataset", choices=sorted(BUILDERS))
    build.add_argument(
        "--config", default=None, help="tiny | small | full | official | official_skip (default small)"
    )
    build.add_argument("--data-dir", default="data_dir", help="TFDS data dir (made absolute)")
    build.add_argument("--manual-dir", default=None, help="official download root (train/ val/ test/)")
    add_sizes(build)
    build.set_defaults(run=cmd_build)

    export = sub.add_parser("export", help="write synthetic data in the official png + xml layout")
    export.add_argument("dataset", choices=sorted(BUILDERS))
    export.add_argument("--out", required=True)
    export.add_argument("--overwrite", action="store_true")
    add_sizes(export)
    export.set_defaults(run=cmd_export)

    prev = sub.add_parser("preview", help="render sample grids to PNG")
    prev.add_argument("--dataset", default="both", choices=["both", *sorted(BUILDERS)])
    prev.add_argument("--out", default="outputs/preview")
    prev.add_argument("--data-dir", default=None, help="read a built dataset instead of generating")
    prev.add_argument("--config", default="small")
    prev.add_argument("--split", default="train", choices=common.SPLITS)
    prev.add_argument("--seed", type=int, default=0)
    prev.set_defaults(run=cmd_preview)

    args = parser.parse_args(argv)
    if (
        args.command == "build"
        and args.config is not None
        and (_sizes(args) or args.set or args.seed is not None)
    ):
        parser.error("give either --config or split sizes / --seed / --set, not both")
    return args.run(args)


if __name__ == "__main__":
    from csist_jax._cli import run_main

    sys.exit(run_main(main))
