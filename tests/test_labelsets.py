"""benchmarks/labelsets.py: a benchmark's labelled lines, or an exit that names the file."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.labelsets import load_labelled


def write_set(tmp_path: Path, lines: list[str]) -> Path:
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.full((32, 64 + len(name), 3), 255, np.uint8))
    labels = tmp_path / "labels.tsv"
    labels.write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
    return labels


def test_loads_paths_images_and_labels_in_file_order(tmp_path):
    labels = write_set(tmp_path, ["b.png\tsecond", "a.png\tfirst line", "c.png\t3"])
    paths, images, texts = load_labelled(str(labels))
    assert [p.name for p in paths] == ["b.png", "a.png", "c.png"]
    assert texts == ["second", "first line", "3"]
    assert [im.shape[:2] for im in images] == [(32, 69)] * 3

    paths, images, texts = load_labelled(str(labels), limit=2)
    assert texts == ["second", "first line"] and len(images) == len(paths) == 2


def test_malformed_line_exits_naming_file_and_line(tmp_path):
    labels = write_set(tmp_path, ["a.png\tok"] * 6 + ["no tab here", "c.png\tok"])
    with pytest.raises(SystemExit) as e:
        load_labelled(str(labels))
    assert f"{labels}:7:" in str(e.value.code)


def test_no_tab_in_the_first_lines_is_not_a_label_file(tmp_path):
    labels = write_set(tmp_path, ["a.png ok", "c.png ok"])
    with pytest.raises(SystemExit) as e:
        load_labelled(str(labels))
    assert f"{labels}: not a label file" in str(e.value.code)


def test_an_image_is_not_a_label_file(tmp_path):
    write_set(tmp_path, ["a.png\tok"])
    with pytest.raises(SystemExit) as e:
        load_labelled(str(tmp_path / "a.png"))
    assert "not a label file" in str(e.value.code)


def test_missing_image_names_its_path(tmp_path):
    labels = write_set(tmp_path, ["a.png\tok", "gone.png\tx"])
    with pytest.raises(Exception, match="gone.png"):
        load_labelled(str(labels))
