"""Errors for people (issue 23, item 5): every reader names the file of a failure and honours
``on_error="skip"`` (a png header claiming a huge image, an id beyond int64, an id given twice, a corrupt
ArrayRecord file); a checkpoint recovery that works prints no tracebacks; the command-line entry points
end a user's mistake with one line (the traceback behind ``--verbose`` / ``CSIST_JAX_TRACEBACK=1``)."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import struct
import sys
import types
import zlib

import numpy as np
import pytest

from csist_jax import _cli
from csist_jax.data import csist100k, io, pipeline
from tests import helpers

ROOT = helpers.ROOT


@pytest.fixture(scope="module")
def frames():
    return csist100k.generate(seed=0, n=8)


@pytest.fixture
def split(tmp_path, frames):
    """A CSIST-100K split directory of 8 images (ids 0..7) to break."""
    return io.write_dir(tmp_path / "train", frames)


def _read_both_ways(split):
    """``(error, (data, report))``: the error of a strict read, and a skipping read's result."""
    with pytest.raises(io.DatasetFileError) as err:
        io.read_dir(split)
    with pytest.warns(UserWarning, match="skipped"):
        skipped = io.read_dir(split, on_error="skip", return_report=True)
    return err.value, skipped


# the official png + xml layout ------------------------------------------------------------------------


def _forge_png_size(path, width: int, height: int) -> None:
    """Rewrite the IHDR width and height of a png (its CRC recomputed): a valid header, a lying size."""
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("side", [30_000, 10_000])  # PIL raises from 179 Mpixel, warns from 89 Mpixel
def test_a_png_header_claiming_a_huge_image_is_named_and_skipped(split, side):
    bad = split / "cso_img" / "image_3.png"
    _forge_png_size(bad, side, side)
    err, (data, report) = _read_both_ways(split)
    assert err.path == bad and "too large to decode" in err.reason
    np.testing.assert_array_equal(data["id"], [0, 1, 2, 4, 5, 6, 7])
    assert report.skipped == [(str(bad), err.reason)]


def test_an_id_beyond_int64_is_named_and_skipped(split):
    k = 2**63
    shutil.copy(split / "cso_img" / "image_3.png", split / "cso_img" / f"image_{k}.png")
    shutil.copy(split / "Annotations" / "CSO3.xml", split / "Annotations" / f"CSO{k}.xml")
    err, (data, report) = _read_both_ways(split)
    assert err.path.name == f"image_{k}.png" and "too large" in err.reason
    np.testing.assert_array_equal(data["id"], np.arange(8))
    assert [os.path.basename(f) for f, _ in report.skipped] == [f"image_{k}.png", f"CSO{k}.xml"]


def test_an_id_given_twice_is_named_and_its_sample_skipped(split):
    shutil.copy(split / "cso_img" / "image_1.png", split / "cso_img" / "image_01.png")
    err, (data, report) = _read_both_ways(split)
    assert err.path.name == "image_1.png" and err.reason == "id 1 duplicates image_01.png"
    np.testing.assert_array_equal(data["id"], [0, 2, 3, 4, 5, 6, 7])  # which file is id 1? neither
    assert report.skipped == [(str(err.path), err.reason)]


# ArrayRecord (a built TFDS split) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """CSIST-100K ``tiny`` built in two files per split: ``(dataset directory, train images)``."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from datasets import build

    builder = build.make_builder("csist100k", config="tiny", data_dir=tmp_path_factory.mktemp("tfds"))
    builder.download_and_prepare(
        file_format="array_record", download_config=tfds.download.DownloadConfig(num_shards=2)
    )
    path = os.fspath(builder.data_path)
    images = pipeline.TFDSSource.from_directory(path, "train").read(np.arange(64))["image"]
    return path, images


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _garble(path):
    data = bytearray(open(path, "rb").read())
    data[::5] = bytes(b ^ 0xA5 for b in data[::5])
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _garble])
def test_a_corrupt_array_record_file_is_named_and_its_records_skipped(built, tmp_path, damage):
    path, images = built
    copy = shutil.copytree(path, tmp_path / "dataset")
    files = sorted(glob.glob(os.path.join(copy, "*-train.array_record-*")))
    assert len(files) == 2
    damage(files[1])  # records 32..63
    source = pipeline.TFDSSource.from_directory(copy, "train")
    with pytest.raises(io.DatasetFileError) as err:
        source.read(np.arange(64))
    assert str(err.value.path) == files[1] and err.value.reason.startswith("record 0: unreadable")
    with pytest.warns(UserWarning, match="skipped 32"):
        kept = pipeline.TFDSSource.from_directory(copy, "train", on_error="skip")
    assert len(kept) == 32 and kept.report.n_read == 32
    assert {f for f, _ in kept.report.skipped} == {files[1]}
    np.testing.assert_array_equal(kept.read(np.arange(32))["image"], images[:32])


# a checkpoint recovery ---------------------------------------------------------------------------------


def _closed_loop_report():
    """What TensorStore hands ``sys.unraisablehook`` when a read completes into a closed event loop."""
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as err:
        # raised in a TensorStore thread, the traceback starts at call_soon_threadsafe
        return types.SimpleNamespace(
            exc_type=RuntimeError,
            exc_value=err,
            exc_traceback=err.__traceback__.tb_next,
            err_msg=None,
            object=None,
        )
    raise AssertionError("a closed loop accepted a call")


def test_only_the_reports_of_abandoned_reads_are_dropped_and_only_during_a_restore(monkeypatch):
    from csist_jax.train import checkpoints

    seen = []

    def record(unraisable):
        seen.append(unraisable)

    monkeypatch.setattr(sys, "unraisablehook", record)
    noise = _closed_loop_report()
    other = types.SimpleNamespace(exc_type=ValueError, exc_value=ValueError("x"), exc_traceback=None)
    with checkpoints._abandoned_reads_quiet(settle=0.01) as failed:
        failed()
        sys.unraisablehook(noise)
        sys.unraisablehook(other)
    assert seen == [other] and sys.unraisablehook is record
    sys.unraisablehook(noise)
    assert seen == [other, noise]


def test_a_recovery_from_unreadable_checkpoints_prints_no_tracebacks(tmp_path, monkeypatch, capfd):
    """Restoring a checkpoint whose files are cut short fails with TensorStore reads in flight (now and
    then: it depends on timing, so three tries); none of their reports into Orbax's closed event loop
    ("RuntimeError: Event loop is closed", 20-40 tracebacks in a training resume) is shown."""
    import jax

    from csist_jax.train.checkpoints import Checkpoints

    keys = jax.random.split(jax.random.PRNGKey(0), 25)
    state = {f"w{i}": jax.random.normal(keys[i], (3, 3, 4, 4) if i % 2 else ()) for i in range(24)}
    state["q"] = jax.random.normal(keys[24], (1089, 121))  # the shapes of a small ISTA-Net's state
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    shown = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: shown.append(repr(u.exc_value)))
    for attempt in range(3):
        checkpoints = Checkpoints(str(tmp_path / str(attempt) / "checkpoints"), keep=2)
        for step in (1, 2):
            checkpoints.save(step, state)
        checkpoints.wait()
        for path in glob.glob(
            str(tmp_path / str(attempt) / "checkpoints" / "2" / "**" / "d" / "*"), recursive=True
        ):
            _truncate(path)
        with pytest.warns(RuntimeWarning, match="cannot be read"):
            restored, step = checkpoints.restore_latest(abstract)
        checkpoints.close()
        assert step == 1
        np.testing.assert_array_equal(restored["q"], state["q"])
    assert shown == []
    assert "Traceback" not in capfd.readouterr().err


# the command line -------------------------------------------------------------------------------------


def _workdir_errors():
    from csist_jax.train import workdir

    return [
        workdir.WorkdirBusy("/w is in use by another run"),
        workdir.NotResumable("/w holds the results of an earlier run"),
        workdir.ConfigMismatch("/w: learning_rate 0.001 -> 0.1"),
    ]


@pytest.mark.parametrize(
    "error",
    [
        ValueError("config.optim.batch_size must be an integer >= 1, got 0"),
        TypeError("batch_size must be an integer, got 0.5"),
        FileNotFoundError("--manual-dir /nowhere: no such directory"),
        PermissionError(13, "Permission denied", "/data"),
        NotADirectoryError(20, "Not a directory", "/a/file/dd"),
        io.DatasetFileError("/d/cso_img/image_3.png", "corrupt or truncated png"),
        ValueError("a message\n  over two lines"),
        *_workdir_errors(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_user_error_is_one_line_unless_a_traceback_is_asked_for(error, capsys, monkeypatch):
    monkeypatch.delenv(_cli.TRACEBACK_ENV, raising=False)
    seen = []

    def main(argv):
        seen.append(argv)
        raise error

    with pytest.raises(SystemExit) as exit_:
        _cli.run_main(main, ["--x", "1"], prog="prog")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prog: error: ") and "Traceback" not in err
    assert err.strip() == f"prog: error: {' '.join(str(error).split())}" or isinstance(error, OSError)
    # the traceback on request: --verbose (taken out of argv) or the environment variable
    with pytest.raises(type(error)):
        _cli.run_main(main, ["--verbose", "--x", "1"], prog="prog")
    monkeypatch.setenv(_cli.TRACEBACK_ENV, "1")
    with pytest.raises(type(error)):
        _cli.run_main(main, ["--x", "1"], prog="prog")
    assert seen == [["--x", "1"]] * 3


def test_a_bug_keeps_its_traceback_and_a_good_run_its_result(monkeypatch):
    monkeypatch.delenv(_cli.TRACEBACK_ENV, raising=False)

    def buggy(argv):
        raise KeyError("x")

    with pytest.raises(KeyError):
        _cli.run_main(buggy, [])
    assert _cli.run_main(lambda argv: 0, []) == 0


def _run(args, extra_env=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != _cli.TRACEBACK_ENV}
    env.update(extra_env or {}, JAX_PLATFORMS="cpu")
    return helpers.run_module(args, env=env, cwd=ROOT, timeout=timeout)  # python -m, forked (no start-up)


def _assert_one_line(proc, prog: str, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"python -m {prog}: error: "), last
    assert all(w in last for w in words), last


def test_cli_missing_manual_dir_is_one_line_and_its_traceback_on_request(tmp_path):
    args = ["datasets.build", "build", "csist100k", "--config", "official"]
    args += ["--manual-dir", "/nonexistent", "--data-dir", str(tmp_path)]
    _assert_one_line(_run(args), "datasets.build", "--manual-dir /nonexistent", "no such directory")
    proc = _run(args, extra_env={_cli.TRACEBACK_ENV: "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("FileNotFoundError: --manual-dir /nonexistent")


@pytest.mark.parametrize(
    "override, words",
    [
        ("--config.optim.learning_rat=1", ("--config.optim.learning_rat", "learning_rate")),
        ("--config.optim.batch_size=0", ("config.optim.batch_size must be an integer >= 1, got 0",)),
        # a field of the flat config of before the groups: its new place
        ("--config.batch_size=0", ("--config.batch_size", "--config.optim.batch_size now")),
        ("--config.model=lista", ("--config.model is a group of fields", "--config.model.name=lista")),
        ("--config.loss.count_weight=1", ("Did you mean --config.loss.localizer.count_weight?",)),
    ],
)
def test_cli_config_mistakes_are_one_line(tmp_path, override, words):
    args = ["experiments.train", "--config=experiments/configs/cpu.py:localizer"]
    args += [f"--workdir={tmp_path / 'run'}", override]
    _assert_one_line(_run(args), "experiments.train", *words)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_verbose_shows_the_traceback(tmp_path):
    args = ["experiments.train", "--config=experiments/configs/cpu.py:localizer"]
    proc = _run(args + [f"--workdir={tmp_path}", "--config.optim.batch_size=0", "--verbose"])
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "ValueError: config.optim.batch_size must be an integer >= 1, got 0"
