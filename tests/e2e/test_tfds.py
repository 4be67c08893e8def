"""TFDS builders (ArrayRecord, no TensorFlow): builds read back identical to the generators, official
import through manual_dir, custom configs, the pipeline on a built split, and the CLI."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from csist_jax.data import csist100k, io, pipeline, seqcsist
from datasets import build, common


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    for name in ("csist100k", "seqcsist"):
        build.make_builder(name, config="tiny", data_dir=path).download_and_prepare(
            file_format="array_record"
        )
    return path


def _split(builder, split):
    return pipeline.TFDSSource(builder.as_data_source()[split])


def test_csist100k_tiny_reads_back_identical_to_the_generator(data_dir):
    builder = build.make_builder("csist100k", config="tiny", data_dir=data_dir)
    sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
    assert sizes == {"train": 64, "val": 16, "test": 16}
    for split, n in sizes.items():
        want = csist100k.generate(0, 64, start=common.SPLIT_START[split])  # one compiled shape
        got = _split(builder, split).read(np.arange(n))
        for key in ("image", "targets", "count"):
            np.testing.assert_array_equal(got[key], want[key][:n], err_msg=f"{split}/{key}")
    record = builder.as_data_source()["val"][5]
    assert record["id"] == 5 and record["sigma"] == np.float32(0.5)
    assert record["targets"].shape == (record["count"], 3)


def test_seqcsist_tiny_is_trajectory_major_and_identical_to_the_generator(data_dir):
    builder = build.make_builder("seqcsist", config="tiny", data_dir=data_dir)
    assert builder.info.splits["train"].num_examples == 80
    source = builder.as_data_source()["train"]
    want = seqcsist.generate(0, 4, start=common.SPLIT_START["train"])
    for k in (0, 19, 20, 47, 79):
        j, t = divmod(k, 20)
        record = source[k]
        assert (record["trajectory"], record["frame"], record["id"]) == (j, t, k)
        np.testing.assert_array_equal(record["image"], want["image"][j, t])
        np.testing.assert_array_equal(record["targets"], want["targets"][j, t, : want["count"][j]])
    memory = _split(builder, "val").to_arrays()
    want = seqcsist.generate(0, 4, start=common.SPLIT_START["val"])
    np.testing.assert_array_equal(memory.read(np.arange(40))["image"], want["image"][:2].reshape(40, 11, 11))


def test_pipeline_batches_from_tfds_equal_the_in_memory_ones(data_dir):
    builder = build.make_builder("seqcsist", config="tiny", data_dir=data_dir)
    disk = _split(builder, "train")
    memory = pipeline.ArraySource(seqcsist.generate(0, 4, start=common.SPLIT_START["train"]))
    kwargs = dict(batch_size=16, window=5, c=3, seed=3, num_epochs=2)
    for a, b in zip(pipeline.Pipeline(disk, **kwargs), pipeline.Pipeline(memory, **kwargs), strict=True):
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
    builder = build.make_builder("csist100k", config="tiny", data_dir=data_dir)
    batch = next(iter(pipeline.Pipeline(_split(builder, "train"), batch_size=32, c=5)))
    assert batch["image"].shape == (32, 11, 11) and batch["label"].shape == (32, 55, 55)


def test_official_download_imports_through_manual_dir(tmp_path, csist100k_64):
    data = csist100k_64
    splits = {
        "train": data,
        "val": {k: v[:16] for k, v in data.items()},
        "test": {k: v[16:24] for k, v in data.items()},
    }
    io.write_splits(tmp_path / "manual", splits)
    builder = build.make_builder("csist100k", config="official", data_dir=tmp_path / "tfds")
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")),
    )
    got = _split(builder, "test").read(np.arange(8))
    np.testing.assert_array_equal(got["image"], data["image"][16:24])
    np.testing.assert_array_equal(got["targets"], data["targets"][16:24])
    assert [builder.as_data_source()["test"][i]["id"] for i in (0, 7)] == [0, 7]  # the file ids

    (tmp_path / "manual" / "train" / "cso_img" / "image_9.png").write_bytes(b"broken")
    config = tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual"))
    strict = build.make_builder("csist100k", config="official", data_dir=tmp_path / "strict")
    with pytest.raises(io.DatasetFileError, match="image_9.png"):
        strict.download_and_prepare(file_format="array_record", download_config=config)
    lenient = build.make_builder("csist100k", config="official_skip", data_dir=tmp_path / "lenient")
    with pytest.warns(UserWarning, match="skipped 1"):
        lenient.download_and_prepare(file_format="array_record", download_config=config)
    ids = [record["id"] for record in lenient.as_data_source()["train"]]
    assert ids == [k for k in range(64) if k != 9]


def test_custom_config_is_named_after_its_sizes_and_seed(tmp_path):
    builder = build.make_builder("csist100k", data_dir=tmp_path, seed=7, split_sizes={"train": 64, "val": 0})
    assert builder.builder_config.name == "s7-train64-val0"
    builder.download_and_prepare(file_format="array_record")
    assert sorted(builder.info.splits) == ["train"]  # a size-0 split is left out, by name
    got = _split(builder, "train").read(np.arange(64))
    np.testing.assert_array_equal(got["targets"], csist100k.generate(7, 64)["targets"])
    with pytest.raises(ValueError, match="config"):
        build.make_builder("csist100k", data_dir=tmp_path, config="huge")
    with pytest.raises(ValueError, match="unknown split"):
        build.make_builder("csist100k", data_dir=tmp_path, split_sizes={"training": 5})


def test_cli_builds_and_previews(data_dir, tmp_path, capsys, csist100k_64):
    assert build.main(["build", "csist100k", "--config", "tiny", "--data-dir", str(data_dir)]) == 0
    assert "train" in capsys.readouterr().out
    out = tmp_path / "preview"
    args = ["preview", "--data-dir", str(data_dir), "--config", "tiny", "--out", str(out)]
    assert build.main(args) == 0
    for name in ("csist100k_preview.png", "seqcsist_preview.png"):
        assert (out / name).stat().st_size > 20_000
    export = tmp_path / "export"
    assert (
        build.main(
            ["export", "csist100k", "--train", "64", "--val", "0", "--test", "0", "--out", str(export)]
        )
        == 0
    )
    np.testing.assert_array_equal(io.read_dir(export / "train")["image"], csist100k_64["image"])
    with pytest.raises(SystemExit):
        build.main(["build", "csist100k", "--config", "tiny", "--train", "5", "--data-dir", str(data_dir)])
