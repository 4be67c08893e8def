"""Official png + xml layouts: exact round trips, numeric id order, toolkit files, and every bad input."""

import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from csist_jax.data import io


@pytest.fixture(scope="module")
def single(csist100k_64):
    return csist100k_64


@pytest.fixture(scope="module")
def sequence(seqcsist_4):
    return seqcsist_4


@pytest.fixture
def split(tmp_path, single):
    """A small CSIST-100K split directory (8 images) to break in the bad-input tests."""
    return io.write_dir(tmp_path / "train", {k: v[:8] for k, v in single.items()})


def test_csist100k_round_trip_is_bit_exact(tmp_path, single):
    io.write_dir(tmp_path / "train", single)
    assert sorted(p.name for p in tmp_path.joinpath("train").iterdir()) == ["Annotations", "cso_img"]
    back = io.read_dir(tmp_path, split="train")
    for key in ("image", "targets", "count"):
        np.testing.assert_array_equal(back[key], single[key], err_msg=key)
        assert back[key].dtype == single[key].dtype
    np.testing.assert_array_equal(back["id"], np.arange(64))
    np.testing.assert_array_equal(back["sigma"], 0.5)


def test_seqcsist_round_trip_is_bit_exact(tmp_path, sequence):
    io.write_dir(tmp_path / "test", sequence)
    assert (tmp_path / "test" / "image" / "image_79.png").is_file()
    assert (tmp_path / "test" / "annotation" / "COS79.xml").is_file()
    back = io.read_dir(tmp_path / "test")
    for key in ("image", "targets", "count", "trajectory"):
        np.testing.assert_array_equal(back[key], sequence[key], err_msg=key)
    assert back["sigma"].shape == (4, 20)


def test_split_roots_round_trip(tmp_path, single, sequence):
    io.write_splits(tmp_path / "c", {"train": single, "val": single, "test": single}, first_id=0)
    splits = io.read_splits(tmp_path / "c")
    assert sorted(splits) == ["test", "train", "val"]
    np.testing.assert_array_equal(splits["val"]["targets"], single["targets"])
    with pytest.raises(ValueError, match="split"):
        io.read_dir(tmp_path / "c")


def test_annotations_follow_the_official_schema(tmp_path, single):
    io.write_dir(tmp_path, {k: v[:3] for k, v in single.items()})
    root = ET.parse(tmp_path / "Annotations" / "CSO2.xml").getroot()
    assert root.tag == "annotation" and root.findtext("filename") == "CSO2"
    assert [root.findtext(f"size/{t}") for t in ("width", "height", "depth")] == ["11", "11", "1"]
    assert float(root.findtext("sigma")) == 0.5
    objects = root.findall("object")
    assert len(objects) == single["count"][2]
    assert all(o.findtext("name") == "Target" for o in objects)
    xy = [[float(o.findtext(f"coordinate/{t}")) for t in ("xc", "yc", "brightness")] for o in objects]
    np.testing.assert_array_equal(np.float32(xy), single["targets"][2, : len(objects)])
    with Image.open(tmp_path / "cso_img" / "image_2.png") as img:
        assert img.mode == "L" and img.size == (11, 11)


def test_ids_are_ordered_numerically_not_by_name(tmp_path, single):
    ids = np.array([0, 2, 9, 10, 100, 11])
    data = {k: v[:6] for k, v in single.items()}
    io.write_dir(tmp_path, {**data, "id": ids})
    back = io.read_dir(tmp_path)
    order = np.argsort(ids)
    np.testing.assert_array_equal(back["id"], ids[order])
    np.testing.assert_array_equal(back["image"], data["image"][order])
    np.testing.assert_array_equal(back["targets"], data["targets"][order])


def test_reads_files_written_by_the_toolkit(tmp_path):
    """minidom pretty printing, float64 reprs, integer brightness: the toolkit writer's format."""
    (tmp_path / "cso_img").mkdir()
    (tmp_path / "Annotations").mkdir()
    Image.fromarray(np.full((11, 11), 7, np.uint8)).save(tmp_path / "cso_img" / "image_5.png")
    (tmp_path / "Annotations" / "CSO5.xml").write_text(
        '<?xml version="1.0" ?>\n<annotation>\n\t<filename>COS5</filename>\n\t<size>\n\t\t<width>11</width>\n'
        "\t\t<height>11</height>\n\t\t<depth>1</depth>\n\t</size>\n\t<sigma>0.5</sigma>\n\t<object>\n"
        "\t\t<name>Target</name>\n\t\t<coordinate>\n\t\t\t<xc>4.712345678901234</xc>\n"
        "\t\t\t<yc>5.1</yc>\n\t\t\t<brightness>236</brightness>\n\t\t</coordinate>\n\t</object>\n</annotation>\n"
    )
    back = io.read_dir(tmp_path)
    np.testing.assert_array_equal(back["targets"][0, 0], np.float32([4.712345678901234, 5.1, 236]))
    assert back["count"][0] == 1 and back["id"][0] == 5 and np.all(back["image"] == 7)


def _corrupt(path):
    path.write_bytes(b"not a png at all")


def _truncate(path):
    path.write_bytes(path.read_bytes()[:40])


def _rgb(path):
    Image.fromarray(np.zeros((11, 11, 3), np.uint8)).save(path)


def _wrong_size(path):
    Image.fromarray(np.zeros((12, 11), np.uint8)).save(path)


def _sixteen_bit(path):
    Image.fromarray(np.zeros((11, 11), np.uint16)).save(path)


def _edit_xml(old, new, count=1):
    def edit(path):
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, count))

    return edit


@pytest.mark.parametrize(
    "sub, name, damage, match",
    [
        ("cso_img", "image_3.png", _corrupt, "corrupt or truncated png"),
        ("cso_img", "image_3.png", _truncate, "corrupt or truncated png"),
        ("cso_img", "image_3.png", _rgb, "8-bit greyscale"),
        ("cso_img", "image_3.png", _sixteen_bit, "8-bit greyscale"),
        ("cso_img", "image_3.png", _wrong_size, "11x11"),
        ("Annotations", "CSO3.xml", lambda p: p.unlink(), "image without annotation"),
        ("cso_img", "image_3.png", lambda p: p.unlink(), "annotation without image"),
        ("Annotations", "CSO3.xml", _edit_xml("</annotation>", ""), "malformed xml"),
        ("Annotations", "CSO3.xml", _edit_xml("<yc>", "<zc>"), "malformed"),
        ("Annotations", "CSO3.xml", _edit_xml("<sigma>0.5</sigma>", ""), "missing <sigma>"),
        ("Annotations", "CSO3.xml", _edit_xml("<xc>", "<xc>abc"), "not a number"),
        ("Annotations", "CSO3.xml", _edit_xml("<xc>", "<xc>1"), "outside"),
        ("Annotations", "CSO3.xml", _edit_xml("<yc>", "<yc>-"), "outside"),
        ("Annotations", "CSO3.xml", _edit_xml("<width>11", "<width>12"), "<size>"),
        ("Annotations", "CSO3.xml", _edit_xml("<brightness>", "<brightness>-"), "brightness"),
        ("Annotations", "CSO3.xml", _edit_xml("coordinate>", "other>", count=-1), "no <coordinate>"),
    ],
)
def test_bad_file_raises_naming_it_and_can_be_skipped(split, sub, name, damage, match):
    path = split / sub / name
    damage(path)
    with pytest.raises(io.DatasetFileError, match=match) as err:
        io.read_dir(split)
    assert err.value.path.name in (name, "image_3.png", "CSO3.xml")
    with pytest.warns(UserWarning, match="skipped 1"):
        data, report = io.read_dir(split, on_error="skip", return_report=True)
    np.testing.assert_array_equal(data["id"], [0, 1, 2, 4, 5, 6, 7])  # in order, only id 3 left out
    assert report.n_read == 7 and len(report.skipped) == 1 and match.split()[0] in report.skipped[0][1]


def test_more_targets_than_the_pad_needs_a_larger_pad(tmp_path):
    targets = np.zeros((1, 6, 3), np.float32)
    targets[0, :, 0] = np.arange(6) + 2.0
    targets[0, :, 1] = 5.0
    targets[0, :, 2] = 230.0
    io.write_dir(
        tmp_path, {"image": np.zeros((1, 11, 11), np.uint8), "targets": targets, "count": np.array([6])}
    )
    with pytest.raises(io.DatasetFileError, match="max_targets=5") as err:
        io.read_dir(tmp_path)
    assert err.value.path.name == "CSO0.xml"
    back = io.read_dir(tmp_path, max_targets=6)
    np.testing.assert_array_equal(back["targets"], targets)


def test_duplicate_ids_and_stray_files_are_reported(split):
    (split / "cso_img" / "image_03.png").write_bytes((split / "cso_img" / "image_3.png").read_bytes())
    with pytest.raises(io.DatasetFileError, match="duplicates"):
        io.read_dir(split)
    (split / "cso_img" / "image_03.png").unlink()
    (split / "Annotations" / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match="ignored 1"):
        data, report = io.read_dir(split, return_report=True)
    assert len(data["id"]) == 8 and report.ignored[0].endswith("notes.txt")


def test_incomplete_or_inconsistent_trajectory_is_an_error(tmp_path, sequence):
    root = io.write_dir(tmp_path / "a", sequence)
    (root / "image" / "image_25.png").unlink()
    (root / "annotation" / "COS25.xml").unlink()
    with pytest.raises(io.DatasetFileError, match="trajectory 1 is incomplete"):
        io.read_dir(root)
    with pytest.warns(UserWarning, match="skipped 1"):
        data = io.read_dir(root, on_error="skip")
    np.testing.assert_array_equal(data["trajectory"], [0, 2, 3])
    np.testing.assert_array_equal(data["image"], sequence["image"][[0, 2, 3]])

    root = io.write_dir(tmp_path / "b", sequence)
    xml = root / "annotation" / "COS47.xml"
    text = xml.read_text()
    first = text.index("\t<object>")
    xml.write_text(text[:first] + text[text.index("</object>") + len("</object>\n") :])
    with pytest.raises(io.DatasetFileError, match="count must stay fixed") as err:
        io.read_dir(root)
    assert err.value.path.name == "COS47.xml"


def test_writer_rejects_bad_arrays(tmp_path, single):
    with pytest.raises(TypeError, match="uint8"):
        io.write_dir(tmp_path / "a", {**single, "image": single["image"].astype(np.float32)})
    outside = single["targets"].copy()
    outside[0, 0, 0] = 11.0
    with pytest.raises(ValueError, match="outside the frame"):
        io.write_dir(tmp_path / "b", {**single, "targets": outside})
    with pytest.raises(ValueError, match="count"):
        io.write_dir(tmp_path / "c", {**single, "count": single["count"][:3]})
    io.write_dir(tmp_path / "d", single)
    with pytest.raises(FileExistsError, match="overwrite"):
        io.write_dir(tmp_path / "d", single)
    sub = {k: v[:5] for k, v in single.items()}
    io.write_dir(tmp_path / "d", sub, overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(io.read_dir(tmp_path / "d")["image"], sub["image"])


def test_unknown_layout_and_missing_directory_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        io.read_dir(tmp_path / "nowhere")
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="cannot tell the layout"):
        io.read_dir(tmp_path / "x")
    with pytest.raises(ValueError, match="on_error"):
        io.read_dir(tmp_path / "x", on_error="ignore")
