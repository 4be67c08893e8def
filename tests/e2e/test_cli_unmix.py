"""``python -m csist_jax unmix`` (issue 24, item 4): every input format gives the library's detections in
the CSV, overlays are drawn, bad inputs are refused naming the file, a killed run resumes to the same
bytes as an uninterrupted one, and two ``jax.distributed`` processes share the chunks.

Small on purpose: 16 crops of 11 x 11 (read noise 2, so ``auto`` runs the learned network, whose compile
is short) and frames of 32 x 48."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import csist_jax
from csist_jax import refine
from csist_jax.__main__ import main as cli_main
from csist_jax.cli import chunks, inputs, overlay
from csist_jax.cli import unmix as command
from csist_jax.data import io
from csist_jax.physics import psf
from tests import helpers

ROOT = helpers.ROOT
N_CROPS = 16
FRAME_SHAPE = (32, 48)
#: the CSV's decimals, as tolerances: x, y, brightness, score, position_std
TOLERANCE = {"x": 6e-5, "y": 6e-5, "brightness": 6e-4, "score": 6e-7, "position_std": 6e-5}


def blobs(rng, n: int) -> np.ndarray:
    """``n`` noise-free 11 x 11 groups of 1-3 targets within 0.8 px of the centre, brightness 220-250
    (the CSIST-100K look, made here: the seeded generators compile for seconds)."""
    count = rng.integers(1, 4, n)
    targets = np.zeros((n, 3, 3), np.float32)
    targets[..., :2] = 5.0 + rng.uniform(-0.8, 0.8, (n, 3, 2))
    targets[..., 2] = rng.uniform(220.0, 250.0, (n, 3)) * (np.arange(3)[None, :] < count[:, None])
    return np.asarray(psf.render(jnp.asarray(targets), 11, 0.5))


def observe(rng, clean: np.ndarray) -> np.ndarray:
    """Read noise of std 2, rounded and clipped to uint8 (so ``auto`` runs the learned network)."""
    return np.clip(np.round(clean + rng.normal(0.0, 2.0, clean.shape)), 0, 255).astype(np.uint8)


def make_crops(seed: int, n: int = N_CROPS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return observe(rng, blobs(rng, n))


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return make_crops(0)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Three 32 x 48 frames, each with two groups, one of them at the frame's edge."""
    rng = np.random.default_rng(1)
    clean = np.zeros((3, *FRAME_SHAPE), np.float32)
    groups = blobs(rng, 6)
    for i in range(3):
        clean[i, 10:21, 5:16] += groups[2 * i]
        clean[i, 21:32, 30:41] += groups[2 * i + 1]
    return observe(rng, clean)


def run(*argv) -> int:
    return cli_main(["unmix", *map(str, argv), "--no-progress"])


def _save(path, array):
    np.save(path, array)
    return path


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [] or list(rows[0]) == list(command.CSV_COLUMNS)
    return rows


def library_rows(images, source, labels, *, scale=1.0, **options) -> list[dict]:
    """The rows the CSV should hold for ``images`` (one library call), as floats; ``source`` one for all
    frames or a list of one per frame."""
    images = np.asarray(images, np.float32)
    call = csist_jax.unmix if images.shape[-2:] == (11, 11) else csist_jax.unmix_frames
    points, count, details = call(images, return_details=True, **options)
    rows = []
    for i, label in enumerate(labels):
        for j in range(int(count[i])):
            rows.append(
                {
                    "source": source if isinstance(source, str) else source[i],
                    "frame": label,
                    "x": points[i, j, 0],
                    "y": points[i, j, 1],
                    "brightness": details["brightness"][i, j] / scale,
                    "score": points[i, j, 2],
                    "position_std": details["position_std"][i, j],
                }
            )
    return rows


def assert_rows(got: list[dict], want: list[dict]) -> None:
    assert [(r["source"], r["frame"]) for r in got] == [(r["source"], r["frame"]) for r in want]
    for g, w in zip(got, want):
        for name, tol in TOLERANCE.items():
            assert abs(float(g[name]) - float(w[name])) <= tol * max(1.0, abs(float(w[name]))), (name, g, w)


# ---------------------------------------------------------------------------------------------- formats


def test_npy_crops_give_the_library_rows(tmp_path, crops):
    np.save(tmp_path / "crops.npy", crops)
    out = tmp_path / "det.csv"
    assert run(tmp_path / "crops.npy", "--out", out) == 0
    want = library_rows(crops, str(tmp_path / "crops.npy"), [str(i) for i in range(N_CROPS)])
    assert len(want) >= N_CROPS
    assert_rows(read_csv(out), want)
    assert not os.path.exists(str(out) + ".parts")  # the parts are removed once OUT is written


def test_png_8_and_16_bit_frames_and_scale(tmp_path, frames):
    Image.fromarray(frames[0]).save(tmp_path / "a8.png")
    Image.fromarray(frames[0].astype(np.uint16) * 257).save(tmp_path / "a16.png")  # 257 * 255/65535 = 1
    assert Image.open(tmp_path / "a16.png").mode.startswith("I;16")
    out = tmp_path / "det.csv"
    assert run(tmp_path / "a8.png", tmp_path / "a16.png", "--out", out) == 0
    got = read_csv(out)
    want8 = library_rows(frames[:1], str(tmp_path / "a8.png"), ["0"])
    assert len(want8) >= 1
    want16 = [dict(r, source=str(tmp_path / "a16.png"), brightness=r["brightness"] * 257) for r in want8]
    assert_rows(got, want8 + want16)

    # 12-bit data in an NPY with --scale 255/4095: the same targets, brightness in the file's units
    np.save(tmp_path / "b12.npy", frames[:1].astype(np.float64) * (4095 / 255))
    out12 = tmp_path / "det12.csv"
    assert run(tmp_path / "b12.npy", "--scale", "255/4095", "--out", out12) == 0
    want12 = [
        dict(r, source=str(tmp_path / "b12.npy"), brightness=r["brightness"] * 4095 / 255) for r in want8
    ]
    assert_rows(read_csv(out12), want12)


def test_npy_2d_frame_and_npz_arrays_of_both_sizes(tmp_path, crops, frames):
    np.save(tmp_path / "one.npy", frames[1])
    np.savez(tmp_path / "many.npz", crops=crops, frame=frames[2])
    out = tmp_path / "det.csv"
    assert run(tmp_path / "one.npy", tmp_path / "many.npz", "--out", out) == 0
    npz = str(tmp_path / "many.npz")
    want = (
        library_rows(frames[1:2], str(tmp_path / "one.npy"), ["0"])
        + library_rows(crops, npz, [f"crops:{i}" for i in range(N_CROPS)])
        + library_rows(frames[2:3], npz, ["frame:0"])
    )
    assert_rows(read_csv(out), want)


def test_official_layouts_split_and_dataset_root(tmp_path):
    data = {"image": make_crops(0), "targets": np.zeros((N_CROPS, 5, 3), np.float32)}
    data["targets"][:, 0] = (5.0, 5.0, 230.0)  # write_dir needs annotations; the command reads none
    data["count"] = np.ones((N_CROPS,), np.int32)
    io.write_dir(tmp_path / "split", data)
    io.write_splits(tmp_path / "root", {"train": data, "test": data})

    def pngs(split):
        return [os.path.join(str(split), "cso_img", f"image_{k}.png") for k in range(N_CROPS)]

    out = tmp_path / "det.csv"
    assert run(tmp_path / "split", "--out", out) == 0
    assert_rows(read_csv(out), library_rows(data["image"], pngs(tmp_path / "split"), ["0"] * N_CROPS))

    out = tmp_path / "root.csv"
    assert run(tmp_path / "root", "--out", out) == 0
    want = [
        row
        for split in ("train", "test")
        for row in library_rows(data["image"], pngs(tmp_path / "root" / split), ["0"] * N_CROPS)
    ]
    assert_rows(read_csv(out), want)

    # SeqCSIST: one trajectory of 20 frames, unmixed frame by frame, sources in frame-id order
    seq = {"image": make_crops(4, 20)[None], "targets": np.zeros((1, 20, 4, 3), np.float32)}
    seq["targets"][..., 0, :] = (5.0, 5.0, 230.0)
    seq["count"] = np.ones((1,), np.int32)
    io.write_dir(tmp_path / "seq", seq, layout="seqcsist")
    out = tmp_path / "seq.csv"
    assert run(tmp_path / "seq", "--out", out, "--chunk", N_CROPS) == 0
    sources = list(dict.fromkeys(r["source"] for r in read_csv(out)))
    assert sources == [os.path.join(str(tmp_path / "seq"), "image", f"image_{k}.png") for k in range(20)]


def test_a_folder_in_natural_order_skipping_other_files(tmp_path, crops, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (10, 2, 1):
        Image.fromarray(crops[i]).save(folder / f"f{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    (folder / "sub").mkdir()
    out = tmp_path / "det.csv"
    assert run(folder, "--out", out) == 0
    sources = [r["source"] for r in read_csv(out)]
    names = [os.path.basename(s) for s in dict.fromkeys(sources)]
    assert names == ["f1.png", "f2.png", "f10.png"]
    err = capsys.readouterr().err
    assert "notes.txt" in err and "sub" in err and "3 file(s), 3 frames" in err


def test_overlays_one_png_per_frame_up_to_the_cap(tmp_path, crops, frames):
    np.save(tmp_path / "crops.npy", crops)
    np.save(tmp_path / "frame.npy", frames[0])
    out, pictures = tmp_path / "det.csv", tmp_path / "overlays"
    assert (
        run(
            tmp_path / "crops.npy",
            tmp_path / "frame.npy",
            "--out",
            out,
            "--overlay",
            pictures,
            "--overlay-max",
            3,
        )
        == 0
    )
    assert sorted(os.listdir(pictures)) == ["000000_crops_0.png", "000001_crops_1.png", "000002_crops_2.png"]
    with Image.open(pictures / "000000_crops_0.png") as img:
        assert img.mode == "RGB" and img.size[0] >= overlay.SIDE and img.size[0] % 11 == 0
        pixels = np.asarray(img)
    assert np.any((pixels[..., 0] == overlay.COLOUR[0]) & (pixels[..., 1] == overlay.COLOUR[1]))  # a marker


@pytest.mark.parametrize(
    "name, make, says",
    [
        ("text.png", lambda p: p.write_text("hello"), "not a readable PNG"),
        ("colour.png", lambda p: Image.new("RGB", (20, 20)).save(p), "colour PNG"),
        ("small.png", lambda p: Image.new("L", (9, 20)).save(p), "smaller than the 11x11"),
        ("small.npy", lambda p: np.save(p, np.zeros((2, 8, 8))), "smaller than the 11x11"),
        ("cube.npy", lambda p: np.save(p, np.zeros((2, 2, 11, 11))), "shape (2, 2, 11, 11)"),
        ("text.npy", lambda p: np.save(p, np.full((1, 11, 11), "a")), "dtype <U1"),
        ("broken.npz", lambda p: p.write_bytes(b"not a zip"), "not a readable .npz"),
        ("frames.tif", lambda p: p.write_bytes(b"II*"), "expected one of .png, .npy, .npz"),
        ("bright.npy", lambda p: np.save(p, np.full((1, 11, 11), 4095.0)), "--scale"),
        ("nan.npy", lambda p: np.save(p, np.full((1, 11, 11), np.nan)), "NaN"),
    ],
)
def test_bad_inputs_are_refused_naming_the_file(tmp_path, capsys, name, make, says):
    path = tmp_path / name
    make(path)
    with pytest.raises(SystemExit) as exit:
        run(path, "--out", tmp_path / "det.csv")
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f": error: {path}:" in err and says in err, err


def test_missing_input_and_empty_folder(tmp_path, capsys):
    for args, says in (([tmp_path / "nope.png"], "no such file or folder"), ([tmp_path], "no frames")):
        with pytest.raises(SystemExit):
            run(*args, "--out", tmp_path / "det.csv")
        assert says in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- resuming


def _subprocess(argv, env=None, timeout=240):
    """``python -m csist_jax unmix ARGV --no-progress`` in a process of its own (``helpers.run_module``)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    return helpers.run_module(
        ["csist_jax", "unmix", *argv, "--no-progress"], env=env, cwd=ROOT, timeout=timeout
    )


def test_a_killed_run_resumes_to_the_same_bytes(tmp_path):
    data = make_crops(2, 32)
    np.save(tmp_path / "crops.npy", data)
    argv = [tmp_path / "crops.npy", "--chunk", 8]

    clean = tmp_path / "clean.csv"
    assert run(*argv, "--out", clean) == 0

    out = tmp_path / "det.csv"
    killed = _subprocess(argv + ["--out", out], env={command.EXIT_AFTER_ENV: "2"})
    assert killed.returncode == 3, killed.stderr
    parts = chunks.Parts(str(out))
    assert not out.exists() and [parts.done(k) for k in range(4)] == [True, True, False, False]
    finished = {k: os.stat(parts.part(k)).st_mtime_ns for k in (0, 1)}

    resumed = _subprocess(argv + ["--out", out, "--keep-parts"])
    assert resumed.returncode == 0, resumed.stderr
    assert "4 chunk(s), 2 finished earlier" in resumed.stderr
    assert {k: os.stat(parts.part(k)).st_mtime_ns for k in (0, 1)} == finished  # nothing redone
    assert out.read_bytes() == clean.read_bytes()
    assert len(read_csv(out)) >= 32

    # the finished run again: every chunk is kept, OUT written again with the same bytes
    assert run(*argv, "--out", out) == 0
    assert out.read_bytes() == clean.read_bytes() and not os.path.exists(parts.path)


def test_other_options_refuse_the_parts_until_restart(tmp_path, crops, capsys):
    np.save(tmp_path / "crops.npy", crops)
    out = tmp_path / "det.csv"
    assert run(tmp_path / "crops.npy", "--out", out, "--keep-parts", "--chunk", 8) == 0
    with pytest.raises(SystemExit) as exit:
        run(tmp_path / "crops.npy", "--out", out, "--chunk", 8, "--min-score", 0.3)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "options.min_score 0.0 -> 0.3" in err and "--restart" in err
    np.save(tmp_path / "crops.npy", crops[::-1])  # the same file, other contents
    with pytest.raises(SystemExit):
        run(tmp_path / "crops.npy", "--out", out, "--chunk", 8)
    assert "files added, removed or changed" in capsys.readouterr().err
    assert run(tmp_path / "crops.npy", "--out", out, "--chunk", 8, "--min-score", 0.3, "--restart") == 0
    rows = read_csv(out)
    assert rows and min(float(r["score"]) for r in rows) >= 0.3


def test_the_plan_is_cut_by_size_and_shared_among_processes():
    sets = [
        inputs.FrameSet("a", "npy", (11, 11), 5, 1.0, "a"),
        inputs.FrameSet("b", "npy", (11, 11), 3, 1.0, "b"),
        inputs.FrameSet("c", "npy", (20, 30), 2, 1.0, "c"),
        inputs.FrameSet("d", "npy", (11, 11), 0, 1.0, "d"),
        inputs.FrameSet("e", "npy", (11, 11), 1, 1.0, "e"),
    ]
    plan = chunks.plan(sets, 3)
    assert [(c.shape, c.first, c.size, c.pieces, c.pad_to) for c in plan] == [
        ((11, 11), 0, 3, ((0, 0, 3),), 3),
        ((11, 11), 3, 3, ((0, 3, 5), (1, 0, 1)), 3),
        ((11, 11), 6, 2, ((1, 1, 3),), 3),  # padded to the group's chunk size
        ((20, 30), 8, 2, ((2, 0, 2),), 2),
        ((11, 11), 10, 1, ((4, 0, 1),), 1),
    ]
    assert chunks.default_chunk((11, 11)) == 256 and chunks.default_chunk((512, 512)) == 4
    shares = [chunks.assigned(5, i, 2) for i in range(2)]
    assert shares == [[0, 2, 4], [1, 3]]
    for p in (1, 2, 3, 7):
        every = sorted(k for i in range(p) for k in chunks.assigned(11, i, p))
        assert every == list(range(11))


def test_two_processes_share_the_chunks_and_write_one_csv(tmp_path):
    data = make_crops(3, 32)
    np.save(tmp_path / "crops.npy", data)
    argv = [tmp_path / "crops.npy", "--chunk", 8]
    clean = tmp_path / "clean.csv"
    assert run(*argv, "--out", clean) == 0

    out = tmp_path / "det.csv"
    port = helpers.free_port()
    commands = [
        [sys.executable, "-m", "csist_jax", "unmix", *argv, "--out", out, "--no-progress"]
        + ["--coordinator", f"localhost:{port}", "--num-processes", 2, "--process-id", i]
        for i in range(2)
    ]
    done = helpers.run_together(commands, env=helpers.subprocess_env(), timeout=240)
    for code, log in done:
        assert code == 0, log[-3000:]
    logs = [log for _, log in done]
    assert out.read_bytes() == clean.read_bytes()
    assert "[process 1/2]" in logs[1] and "wrote" in logs[0] and "wrote" not in logs[1]


# ---------------------------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("estimate, used", [(0.503, 0.5), (0.56, 0.56)])
def test_calibrate_keeps_the_networks_width_where_the_estimate_agrees(
    tmp_path, crops, monkeypatch, estimate, used
):
    seen = {}

    def fake_calibrate_psf(images, *, sigma0):
        seen.update(images=np.asarray(images), sigma0=sigma0)
        return {"sigma": estimate, "sigma_std": 0.002}

    monkeypatch.setattr(refine, "calibrate_psf", fake_calibrate_psf)
    sets, _ = inputs.scan([str(_save(tmp_path / "crops.npy", crops))])
    args = command.build_parser().parse_args([str(tmp_path / "crops.npy"), "--out", "x.csv", "--calibrate"])
    found = command.calibrate(sets, args)
    assert found == {"sigma": used, "estimate": estimate, "estimate_std": 0.002, "crops": N_CROPS}
    # every crop, less the background offset (0 here), clipped at 0
    assert seen["sigma0"] == 0.5 and seen["images"].shape == (N_CROPS, 11, 11)
    np.testing.assert_array_equal(seen["images"], crops.astype(np.float32))


@pytest.mark.slow
def test_calibrate_runs_end_to_end_on_crops(tmp_path, crops, capsys):
    out = tmp_path / "det.csv"
    assert run(_save(tmp_path / "crops.npy", crops), "--calibrate", "--out", out) == 0
    err = capsys.readouterr().err
    estimate = float(re.search(r"PSF width ([0-9.]+) \+-", err).group(1))
    used = float(re.search(r"using sigma = ([0-9.]+)", err).group(1))
    assert abs(estimate - 0.5) < 0.03 and (used == 0.5 or abs(used - estimate) < 1e-4)  # 16 crops: ~2 %
    want = library_rows(crops, str(tmp_path / "crops.npy"), [str(i) for i in range(N_CROPS)], sigma=used)
    assert_rows(read_csv(out), want)


def test_calibration_crops_from_large_frames_are_inside_and_apart():
    points = np.array([[20, 30, 0.9], [20.4, 30.6, 0.8], [2, 30, 0.7], [20, 40, 0.6], [35, 55, 0.5]])
    # (20, 31) joins (20, 30)'s crop; (2, 30) and (35, 55) are too near the edge; (20, 40) is 10 px away
    assert command._group_centres(points, len(points), (40, 60), limit=10) == [(20, 30), (20, 40)]
    assert command._group_centres(points, 1, (40, 60), limit=10) == [(20, 30)]
    # a crop less its background level, clipped at 0; saturated above a background: left out
    crop = np.full((11, 11), 21.0)
    crop[5, 5] = 200.0
    np.testing.assert_array_equal(command._levelled(crop, 20.0), np.clip(crop - 20.0, 0, 255))
    crop[5, 5] = 255.0
    assert command._levelled(crop, 20.0) is None and command._levelled(crop, 0.0) is not None


# ---------------------------------------------------------------------------------------------- entry points


def test_module_and_console_script_list_the_command():
    result = helpers.run_module(["csist_jax", "--help"], cwd=ROOT, timeout=60)
    assert result.returncode == 0 and "unmix" in result.stdout
    script = shutil.which("csist-jax")
    if script is None:
        pytest.skip("the console script is not installed (pip install -e .)")
    result = subprocess.run([script, "unmix", "--help"], capture_output=True, text=True, timeout=60)
    assert (
        result.returncode == 0
        and "--calibrate" in result.stdout
        and "usage: csist-jax unmix" in result.stdout
    )
