r"""``unmix``: the point targets in a user's frame files, as one CSV (and overlay pictures).

    python -m csist_jax unmix INPUT... --out detections.csv      (or: csist-jax unmix ...)

Every frame of the inputs (files or folders: :mod:`csist_jax.cli.inputs`) is unmixed by the library:
11 x 11 crops by :func:`csist_jax.unmix`, larger frames by :func:`csist_jax.unmix_frames` (one call per
chunk of frames of one size). The work runs in chunks (:mod:`csist_jax.cli.chunks`): a killed run,
started again with the same command, continues from its finished chunks, and several ``jax.distributed``
processes share the chunks. docs/cli.md is the user's guide.

The CSV has one row per detection, in input order::

    source,frame,x,y,brightness,score,position_std

``source`` the file (as given on the command line, or joined to the folder given), ``frame`` the frame in
it (``i``; ``key:i`` in an NPZ), ``x`` the row and ``y`` the column in pixels (pixel centres at integers,
the frame's top-left pixel at (0, 0)), ``brightness`` the target's integrated intensity in the input's
units, ``score`` the detection score in (0, 1], ``position_std`` the predicted position error (px).
Fixed decimals (:data:`FLOAT_FORMATS`), so a run gives the same bytes every time.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
import time

import numpy as np

from csist_jax.cli import chunks as chunking
from csist_jax.cli import inputs as reading
from csist_jax.cli import overlay

CSV_COLUMNS = ("source", "frame", "x", "y", "brightness", "score", "position_std")
#: decimals of the CSV's numbers: 1e-4 px, 1e-3 brightness units, 1e-6 in score
FLOAT_FORMATS = {"x": ".4f", "y": ".4f", "brightness": ".3f", "score": ".6f", "position_std": ".4f"}
METHODS = ("auto", "learned", "polish", "fit")
#: the PSF width of the shipped networks
NETWORK_SIGMA = 0.5
#: --calibrate: crops fitted, larger frames read to find them, and the agreement with the networks'
#: width under which the networks are kept (3 standard errors, or 2 %)
CALIBRATION_CROPS = 128
CALIBRATION_FRAMES = 8
CALIBRATION_AGREEMENT = 0.01
CALIBRATION_FILE = "calibration.json"
#: test hook: the process ends at once (``os._exit``) after finishing this many chunks
EXIT_AFTER_ENV = "CSIST_JAX_UNMIX_EXIT_AFTER"

EPILOG = """\
inputs:
  files or folders (a folder: its .png/.npy/.npz files in natural name order, f2 before f10)
  PNG   8-bit grey (as is) or 16-bit grey (times 255/65535, to the 0..255 grey levels); colour PNG
        is refused
  NPY   one frame [H, W] or frames [n, H, W], already in grey levels 0..255 (else --scale)
  NPZ   every array, each [H, W] or [n, H, W]; frames labelled KEY:INDEX
  the official CSIST-100K / SeqCSIST layouts: a folder with cso_img/ + Annotations/ (or image/ +
        annotation/), or a dataset root holding train/ val/ test/ folders of them
  frames of 11x11 are crops (csist_jax.unmix); larger ones whole frames (csist_jax.unmix_frames);
  sizes may differ between files. Brightness is written back in the input's units.

output (--out):
  CSV: source,frame,x,y,brightness,score,position_std, one row per detection, x the row and y the
  column (pixel centres at integers), fixed decimals

resuming:
  finished chunks are kept in OUT.parts/; the same command again continues where a killed run
  stopped (other inputs or options: --restart, or another --out)

several processes (hosts):
  start the same command on every host with --coordinator HOST:PORT --num-processes P
  --process-id I (or --distributed where JAX detects the cluster: Slurm, Open MPI, TPU pods);
  process I runs chunks I, I+P, ...; OUT must be on a file system every process sees

guide: docs/cli.md
"""


def _positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _number(text: str) -> float:
    """A float, or a fraction ``A/B`` (``255/4095``)."""
    try:
        if "/" in text:
            top, bottom = text.split("/", 1)
            value = float(top) / float(bottom)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def build_parser(prog: str = "csist-jax unmix") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Point targets (x, y, brightness, score, position error) in infrared frames,\n"
        "11x11 crops or whole frames of any size, from PNG, NPY and NPZ files, folders, or the\n"
        "official CSIST-100K / SeqCSIST layouts, written to one CSV.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders of frames")
    parser.add_argument("--out", required=True, metavar="CSV", help="the detections' CSV file (required)")
    psf = parser.add_mutually_exclusive_group()
    psf.add_argument(
        "--sigma",
        type=_positive_float,
        default=NETWORK_SIGMA,
        help="PSF width in pixels (default 0.5, the shipped networks'; another width runs the fit)",
    )
    psf.add_argument(
        "--calibrate",
        action="store_true",
        help="estimate the PSF width from the frames first (csist_jax.refine.calibrate_psf on up to "
        f"{CALIBRATION_CROPS} 11x11 crops: the crops themselves, or cut around the detections of up "
        f"to {CALIBRATION_FRAMES} larger frames); a width within 3 standard errors or 2%% of 0.5 "
        "keeps the shipped networks",
    )
    parser.add_argument(
        "--noise-std",
        type=_nonnegative_float,
        default=None,
        metavar="STD",
        help="read-noise std in grey levels (0..255 scale, after --scale); default: estimated from "
        "the frames, once per chunk",
    )
    parser.add_argument(
        "--background",
        type=_nonnegative_float,
        default=None,
        metavar="LEVEL",
        help="background offset in grey levels; default: estimated with the noise",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="auto (the best for the noise level), learned, polish or fit (default auto)",
    )
    parser.add_argument(
        "--scale",
        type=_positive_float,
        default=None,
        metavar="FACTOR",
        help="multiply every input's values by FACTOR to get grey levels 0..255, e.g. 255/4095 for "
        "12-bit data (default: 1, and 255/65535 for 16-bit PNG); brightness is divided by it again",
    )
    parser.add_argument(
        "--min-score",
        type=_nonnegative_float,
        default=0.0,
        metavar="S",
        help="write only detections with score >= S (default 0: all)",
    )
    parser.add_argument(
        "--chunk",
        type=_count(1),
        default=None,
        metavar="N",
        help=f"frames per chunk (default: {chunking.CROP_CHUNK} crops, or about a megapixel of frames)",
    )
    parser.add_argument(
        "--overlay", metavar="DIR", default=None, help="also write a PNG per frame with its detections"
    )
    parser.add_argument(
        "--overlay-max",
        type=_count(0),
        default=100,
        metavar="N",
        help="overlays for the first N frames only (default 100)",
    )
    parser.add_argument(
        "--restart", action="store_true", help="discard the finished chunks of an earlier run of OUT"
    )
    parser.add_argument(
        "--keep-parts", action="store_true", help="keep OUT.parts/ (the finished chunks) after writing OUT"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    multi = parser.add_argument_group("several processes (jax.distributed)")
    multi.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordinator")
    multi.add_argument("--num-processes", type=_count(1), metavar="P", help="number of processes")
    multi.add_argument("--process-id", type=_count(0), metavar="I", help="this process, 0..P-1")
    multi.add_argument(
        "--distributed",
        action="store_true",
        help="jax.distributed.initialize() with the cluster detected by JAX (Slurm, Open MPI, TPU)",
    )
    return parser


# ---------------------------------------------------------------------------------------------- processes


class _Processes:
    """This process's place among the ``jax.distributed`` processes, and their barrier."""

    def __init__(self, args: argparse.Namespace, parser: argparse.ArgumentParser):
        import jax

        explicit = (args.coordinator, args.num_processes, args.process_id)
        self.initialized = False
        if any(v is not None for v in explicit):
            if any(v is None for v in explicit):
                parser.error("--coordinator, --num-processes and --process-id go together")
            if args.process_id >= args.num_processes:
                parser.error(f"--process-id must be in 0..{args.num_processes - 1}, got {args.process_id}")
            jax.distributed.initialize(
                coordinator_address=args.coordinator,
                num_processes=args.num_processes,
                process_id=args.process_id,
            )
            self.initialized = True
        elif args.distributed:
            jax.distributed.initialize()
            self.initialized = True
        self.index, self.count = jax.process_index(), jax.process_count()

    def barrier(self, name: str) -> None:
        if self.count > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"csist_jax unmix: {name}")

    def shutdown(self) -> None:
        if self.initialized:
            import jax

            jax.distributed.shutdown()


def _say(message: str, processes: _Processes | None = None) -> None:
    prefix = f"[process {processes.index}/{processes.count}] " if processes and processes.count > 1 else ""
    print(f"{prefix}{message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- frames


def _grey(sets: list[reading.FrameSet], chunk: chunking.Chunk) -> np.ndarray:
    return np.concatenate([sets[s].grey(lo, hi) for s, lo, hi in chunk.pieces])


def _frame_of(sets: list[reading.FrameSet], offsets: np.ndarray, index: int) -> tuple[int, int]:
    """``(set, frame)`` of the input's frame ``index`` (``offsets``: the sets' first frames)."""
    s = int(np.searchsorted(offsets, index, side="right") - 1)
    return s, index - int(offsets[s])


def unmix_chunk(
    frames: np.ndarray,
    *,
    sigma: float,
    noise_std: float | None,
    background: float | None,
    method: str,
    pad_to: int = 0,
):
    """``(points, count, details)`` of ``frames`` ``[n, H, W]`` (grey levels) by the library: 11 x 11
    crops by :func:`csist_jax.unmix`, larger frames by :func:`csist_jax.unmix_frames`.

    Crops: the noise and background the library would estimate from ``frames`` are estimated here, and
    the chunk padded (repeating its last frame) to ``pad_to`` frames, so every chunk of a run compiles one
    shape and the padding does not enter the estimate."""
    import csist_jax

    if frames.shape[-2:] != (11, 11):
        return csist_jax.unmix_frames(
            frames,
            noise_std=noise_std,
            sigma=sigma,
            method=method,
            background=background,
            return_details=True,
        )
    if noise_std is None or background is None:
        from csist_jax.refine import estimate_noise

        estimate = estimate_noise(frames)
        noise_std = float(estimate["noise_std"]) if noise_std is None else noise_std
        background = max(float(estimate["background"]), 0.0) if background is None else background
    n = len(frames)
    if pad_to > n:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad_to - n, axis=0)])
    points, count, details = csist_jax.unmix(
        frames,
        noise_std=noise_std,
        sigma=sigma,
        method=method,
        background=background,
        return_details=True,
    )
    details = {
        k: v[:n] if isinstance(v, np.ndarray) and v.ndim and len(v) == len(frames) else v
        for k, v in details.items()
    }
    return points[:n], count[:n], details


def csv_rows(
    sets: list[reading.FrameSet],
    chunk: chunking.Chunk,
    points: np.ndarray,
    count: np.ndarray,
    details: dict,
    min_score: float = 0.0,
) -> str:
    """The CSV rows (no header) of one chunk's detections, frames in order, each frame's detections
    as the library returns them; detections with a score below ``min_score`` left out."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    brightness, position_std = np.asarray(details["brightness"]), np.asarray(details["position_std"])
    i = 0
    for s, lo, hi in chunk.pieces:
        frames = sets[s]
        for f in range(lo, hi):
            source, label = frames.frame_source(f), frames.frame_label(f)
            for j in range(int(count[i])):
                x, y, score = (float(v) for v in points[i, j, :3])
                if score < min_score:
                    continue
                values = {
                    "x": x,
                    "y": y,
                    "brightness": float(brightness[i, j]) / frames.scale,
                    "score": score,
                    "position_std": float(position_std[i, j]),
                }
                writer.writerow(
                    [source, label]
                    + [format(values[name] + 0.0, FLOAT_FORMATS[name]) for name in CSV_COLUMNS[2:]]
                )
            i += 1
    return text.getvalue()


def _overlays(sets, chunk, frames, points, count, min_score, directory, limit) -> None:
    i = 0
    for s, lo, hi in chunk.pieces:
        for f in range(lo, hi):
            index = chunk.first + i
            if index < limit:
                keep = points[i, : int(count[i])]
                keep = keep[keep[:, 2] >= min_score]
                name = overlay.file_name(index, sets[s].frame_source(f), sets[s].frame_label(f))
                overlay.draw(frames[i], keep, os.path.join(directory, name))
            i += 1


# ---------------------------------------------------------------------------------------------- calibration


def _group_centres(
    points: np.ndarray, count: int, shape: tuple[int, int], limit: int
) -> list[tuple[int, int]]:
    """Centre pixels of 11 x 11 crops around a frame's detections (best score first): each crop inside
    the frame and at least 6 px (rows or columns) from the centre of another, so a crop holds one group."""
    h, w = shape
    centres: list[tuple[int, int]] = []
    found = np.asarray(points)[:count]
    for x, y, _ in found[np.argsort(-found[:, 2], kind="stable")]:
        r, c = int(round(float(x))), int(round(float(y)))
        if not (5 <= r < h - 5 and 5 <= c < w - 5):
            continue
        if any(max(abs(r - r2), abs(c - c2)) < 6 for r2, c2 in centres):
            continue
        centres.append((r, c))
        if len(centres) == limit:
            break
    return centres


def _levelled(crop: np.ndarray, level: float) -> np.ndarray | None:
    """``crop`` less its background ``level``, clipped at 0; None for a saturated crop (a pixel at 255)
    with a level: its clipped pixels no longer sit at the saturation the fit censors, and taking them as
    values makes the PSF look narrower (0.471 instead of 0.498 on 75 crops of 256 x 256 frames with a
    background of 20 and sigma 0.5)."""
    if level > 0 and crop.max() >= 255.0:
        return None
    return np.clip(crop - level, 0.0, 255.0)


def calibrate(sets: list[reading.FrameSet], args: argparse.Namespace) -> dict:
    """The PSF width of the inputs (``--calibrate``): :func:`csist_jax.refine.calibrate_psf` on up to
    :data:`CALIBRATION_CROPS` 11 x 11 crops, taken evenly over the inputs: the crops themselves, less the
    background level the library would remove (:func:`csist_jax.refine.estimate_noise`, or
    ``--background``), or crops cut around the detections (at ``sigma = 0.5``) of up to
    :data:`CALIBRATION_FRAMES` larger frames, each less its background plane's level at its centre
    (as :func:`csist_jax.unmix_frames` treats its windows); saturated crops with a background are left
    out (:func:`_levelled`). The width is kept at 0.5, so the shipped networks run, when the estimate is
    within 3 standard errors or :data:`CALIBRATION_AGREEMENT` of it.
    Returns ``{"sigma" (used), "estimate", "estimate_std", "crops"}``."""
    import csist_jax
    from csist_jax.refine import calibrate_psf, estimate_noise

    offsets = np.cumsum([0] + [f.count for f in sets])
    total = int(offsets[-1])
    small: list[np.ndarray] = []
    large: dict[tuple[int, int], list[np.ndarray]] = {}
    n_large = 0
    for index in np.unique(np.linspace(0, total - 1, min(total, CALIBRATION_CROPS)).round().astype(int)):
        s, f = _frame_of(sets, offsets, int(index))
        if sets[s].shape == (11, 11):
            small.append(sets[s].grey(f, f + 1)[0])
        elif n_large < CALIBRATION_FRAMES:
            large.setdefault(sets[s].shape, []).append(sets[s].grey(f, f + 1)[0])
            n_large += 1
    crops: list[np.ndarray] = []
    if small:
        small = np.stack(small)
        level = args.background if args.background is not None else estimate_noise(small)["background"]
        level = float(np.round(max(float(level), 0.0)))
        crops += [crop for crop in (_levelled(c, level) for c in small) if crop is not None]
    for shape, frames in large.items():
        from csist_jax.frames import background_map

        frames = np.stack(frames)
        points, count, details = csist_jax.unmix_frames(
            frames,
            noise_std=args.noise_std,
            background=args.background,
            sigma=NETWORK_SIGMA,
            return_details=True,
        )
        levels = background_map(details["background"], *shape)
        for i, frame in enumerate(frames):
            for r, c in _group_centres(points[i], int(count[i]), shape, CALIBRATION_CROPS):
                crop = _levelled(
                    frame[r - 5 : r + 6, c - 5 : c + 6], max(float(np.round(levels[i, r, c])), 0.0)
                )
                if crop is not None:
                    crops.append(crop)
    crops = crops[:CALIBRATION_CROPS]
    if not crops:
        raise ValueError(
            "--calibrate found no targets to calibrate on (none detected, or all saturated above a "
            "background); give the PSF width with --sigma"
        )
    found = calibrate_psf(np.stack(crops), sigma0=NETWORK_SIGMA)
    estimate, std = float(found["sigma"]), float(found["sigma_std"])
    agrees = abs(estimate - NETWORK_SIGMA) <= max(3.0 * std, CALIBRATION_AGREEMENT * NETWORK_SIGMA)
    return {
        "sigma": NETWORK_SIGMA if agrees else estimate,
        "estimate": estimate,
        "estimate_std": std,
        "crops": int(len(crops)),
    }


# ---------------------------------------------------------------------------------------------- main


def _describe(sets: list[reading.FrameSet]) -> str:
    by_shape: dict[tuple[int, int], int] = {}
    for f in sets:
        by_shape[f.shape] = by_shape.get(f.shape, 0) + f.count
    parts = [
        f"{n:,} of {h}x{w} ({'crops: csist_jax.unmix' if (h, w) == (11, 11) else 'csist_jax.unmix_frames'})"
        for (h, w), n in by_shape.items()
    ]
    return f"{reading.files(sets):,} file(s), {sum(by_shape.values()):,} frames: " + ", ".join(parts)


def main(argv: list[str] | None = None, prog: str = "csist-jax unmix") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.method in ("learned", "polish") and args.sigma != NETWORK_SIGMA:
        parser.error(f"--method {args.method} runs the shipped networks, trained at sigma 0.5")
    out = args.out
    if os.path.isdir(out):
        raise IsADirectoryError(f"--out {out}: is a folder; give the CSV file's path")
    parts = chunking.Parts(out)
    processes = _Processes(args, parser)
    start = time.perf_counter()

    exclude = (out, parts.path) + ((args.overlay,) if args.overlay else ())
    sets, notes = reading.scan(
        args.inputs, scale=args.scale, exclude=exclude, progress=not args.no_progress and processes.index == 0
    )
    for note in notes:
        _say(note, processes)
    total = sum(f.count for f in sets)
    if total == 0:
        raise ValueError(f"no frames in {' '.join(args.inputs)}")
    plan = chunking.plan(sets, args.chunk)
    options = {
        "sigma": "calibrate" if args.calibrate else args.sigma,
        "noise_std": args.noise_std,
        "background": args.background,
        "method": args.method,
        "scale": args.scale,
        "min_score": args.min_score,
        "chunk": args.chunk,
        "overlay": os.path.abspath(args.overlay) if args.overlay else None,
        "overlay_max": args.overlay_max if args.overlay else None,
    }
    wanted = chunking.manifest(args.inputs, sets, plan, options)
    finished = parts.check(wanted, restart=args.restart)
    if processes.index == 0:
        out_dir = os.path.dirname(os.path.abspath(out))
        os.makedirs(out_dir, exist_ok=True)
        parts.open(wanted, restart=args.restart)
        if args.overlay:
            os.makedirs(args.overlay, exist_ok=True)
    _say(f"{_describe(sets)}; {len(plan):,} chunk(s), {finished:,} finished earlier", processes)

    sigma = args.sigma
    if args.calibrate:
        stored = parts.load(CALIBRATION_FILE)
        if stored is None and processes.index == 0:
            _say("calibrating the PSF width ...")
            stored = calibrate(sets, args)
            parts.save(CALIBRATION_FILE, stored)
        processes.barrier("calibration")
        stored = stored or parts.load(CALIBRATION_FILE)
        sigma = stored["sigma"]
        _say(
            f"PSF width {stored['estimate']:.4f} +- {stored['estimate_std']:.4f} px from "
            f"{stored['crops']} crops; using sigma = {sigma}",
            processes,
        )
    else:
        processes.barrier("manifest")

    mine = [k for k in chunking.assigned(len(plan), processes.index, processes.count) if not parts.done(k)]
    exit_after = int(os.environ.get(EXIT_AFTER_ENV, "0") or 0)
    from tqdm import tqdm

    bar = tqdm(
        total=sum(plan[k].size for k in mine),
        unit="frame",
        desc="unmix" if processes.count == 1 else f"unmix [{processes.index}/{processes.count}]",
        file=sys.stderr,
        disable=args.no_progress,
        dynamic_ncols=True,
    )
    compiled: set[tuple] = set()
    try:
        with bar:
            for done, k in enumerate(mine, 1):
                chunk = plan[k]
                if (chunk.shape, chunk.pad_to) not in compiled:  # the first chunk of a shape compiles
                    bar.set_postfix_str(
                        f"compiling for {chunk.shape[0]}x{chunk.shape[1]} frames", refresh=True
                    )
                    compiled.add((chunk.shape, chunk.pad_to))
                frames = _grey(sets, chunk)
                points, count, details = unmix_chunk(
                    frames,
                    sigma=sigma,
                    noise_std=args.noise_std,
                    background=args.background,
                    method=args.method,
                    pad_to=chunk.pad_to,
                )
                points, count = np.asarray(points), np.asarray(count)
                if args.overlay and chunk.first < args.overlay_max:
                    _overlays(
                        sets, chunk, frames, points, count, args.min_score, args.overlay, args.overlay_max
                    )
                parts.write(k, csv_rows(sets, chunk, points, count, details, args.min_score))
                noise = details.get("noise_std")
                bar.set_postfix_str(
                    f"noise {float(np.mean(noise)):.2f}, {details.get('method')}" if noise is not None else ""
                )
                bar.update(chunk.size)
                if exit_after and done == exit_after:
                    os._exit(3)
    except KeyboardInterrupt:
        left = sum(not parts.done(k) for k in range(len(plan)))
        _say(
            f"interrupted: {len(plan) - left:,} of {len(plan):,} chunks finished (kept in {parts.path}); "
            "the same command continues from there",
            processes,
        )
        return 130

    processes.barrier("chunks")
    if processes.index == 0:
        rows, with_rows = parts.join(",".join(CSV_COLUMNS) + "\n", len(plan))
        if not args.keep_parts:
            parts.remove()
        seconds = time.perf_counter() - start
        _say(
            f"wrote {out}: {rows:,} detections in {total:,} frames ({total - with_rows:,} without any), "
            f"{seconds:.1f} s"
            + (f"; overlays in {args.overlay}" if args.overlay and args.overlay_max else "")
        )
    processes.barrier("written")
    processes.shutdown()
    return 0


__all__ = ["CSV_COLUMNS", "FLOAT_FORMATS", "build_parser", "calibrate", "csv_rows", "main", "unmix_chunk"]
