"""benchmarks/bench_int8_cpus.py: the child process that reads the lines on another CPU
(under qemu in use; here with no emulator in front) reads what this process reads."""

import argparse

import pytest

from benchmarks import bench_int8_cpus
from benchmarks.labelsets import load_labelled
from distill.export.onnx import export_onnx
from distill.models.checkpoint import load_network

from .helpers import NETS, make_ckpt, write_image


def test_the_child_reads_the_lines_as_this_process_does(tmp_path, monkeypatch):
    model = export_onnx(load_network(make_ckpt(tmp_path / "s.ckpt", NETS["student"])),
                        tmp_path / "s.onnx", "tiny")  # fmt: skip
    (tmp_path / "img").mkdir()
    for i in range(4):
        write_image(tmp_path / "img" / f"{i}.png", text_width=40 + 16 * i)
    labels = tmp_path / "labels.tsv"
    labels.write_text("".join(f"img/{i}.png\t{i}\n" for i in range(4)))
    args = argparse.Namespace(model=str(model), labels=f"{labels}:exact", limit=4, calibration=1)
    models = {"fp32": str(model)}
    monkeypatch.chdir(tmp_path / "img")  # the package is found from any folder
    _, images, _ = load_labelled(labels, 4)
    assert bench_int8_cpus.read_in_child([], args, models) == bench_int8_cpus.read_all(
        models, images[1:]
    )
    with pytest.raises(SystemExit, match="run failed"):
        bench_int8_cpus.read_in_child([], args, {"fp32": str(tmp_path / "missing.onnx")})
