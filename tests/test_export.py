"""ONNX export, parity, INT8, and the torch-free predictor."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

import distill.runtime.predict as predict
from distill.core.hardware import has_vnni
from distill.export.onnx import export_onnx, set_metadata
from distill.export.parity import check_parity
from distill.export.quantize import quantize_dynamic, quantize_static
from distill.export.run import run_export
from distill.models.checkpoint import load_network
from distill.runtime.onnx_masks import without_frame_masks
from distill.runtime.predict import Recognizer

from .helpers import NETS, ROOT, compose_cfg, make_ckpt, write_image


@pytest.fixture(scope="module")
def student_onnx(tmp_path_factory):
    d = tmp_path_factory.mktemp("student")
    module = load_network(make_ckpt(d / "s.ckpt", NETS["student"]))
    return export_onnx(module, d / "s.onnx", "tiny-student"), module


@pytest.mark.parametrize("kind, max_width", [("teacher", 256), ("student", 1600)])
def test_export_parity_at_several_widths_and_batches(kind, max_width, tmp_path):
    """The fixed widths plus the model's own max_width: a 1600 px document line too."""
    module = load_network(make_ckpt(tmp_path / "m.ckpt", NETS[kind], max_width=max_width))
    path = export_onnx(module, tmp_path / "m.onnx", kind)
    report = check_parity(module, path)
    assert report.ok, str(report)
    assert {(r["batch"], r["width"]) for r in report.rows} == {
        (b, w) for b in (1, 7) for w in (32, 100, 320, 800, max_width)
    }
    assert max(r["max_abs_diff"] for r in report.rows) < 1e-3
    graph = onnx.load(str(path)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert graph.input[0].name == "image" and dims[0].dim_param and dims[3].dim_param
    assert dims[1].dim_value == 1 and dims[2].dim_value == 32


def test_a_line_reads_the_same_alone_and_beside_a_wider_one_in_onnxruntime(tmp_path):
    import onnxruntime as ort

    from distill.export.parity import parity_inputs

    from .helpers import with_random_statistics

    module = load_network(make_ckpt(tmp_path / "m.ckpt", NETS["student"]))
    with_random_statistics(module.net)
    path = export_onnx(module, tmp_path / "m.onnx", "m")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, _ = parity_inputs(module.preprocess, 102, 1)
    wide, _ = parity_inputs(module.preprocess, 306, 1, seed=5)
    batch = np.zeros((2, 1, 32, 308), np.float32)
    batch[0, :, :, :102], batch[1, :, :, :306] = x[0], wide[0]
    alone = sess.run(None, {"image": x, "widths": np.array([102])})[0]
    beside = sess.run(None, {"image": batch, "widths": np.array([102, 306])})[0]
    assert alone.shape[1] == 26
    assert np.abs(alone[0] - beside[0, :26]).max() < 1e-4
    with torch.no_grad():
        ref = module.net(torch.from_numpy(batch), torch.tensor([102, 306]))[0].numpy()
    assert np.abs(ref[0, :26] - alone[0]).max() < 1e-4

    # the predictor: the same readings whatever the batch size
    rng = np.random.default_rng(0)
    images = []
    for w in rng.integers(20, 400, size=40):
        img = np.full((32, int(w), 3), 255, np.uint8)
        img[8:24, 4 : int(w) - 4] = rng.integers(0, 255, size=(16, int(w) - 8, 3))
        images.append(img)
    one = Recognizer(path, batch_size=1).recognize(images)
    many = Recognizer(path, batch_size=64).recognize(images)
    assert [r.text for r in one] == [r.text for r in many]
    assert np.allclose([r.confidence for r in one], [r.confidence for r in many], atol=1e-4)


@pytest.mark.parametrize("kind", ["student", "teacher"])
def test_lean_graph_is_exact_for_calls_of_equal_frames_only(kind, tmp_path):
    """The predictor's lean graph (distill/runtime/onnx_masks.py) drops the masks at the frame
    stride: exact for one line of any width and for lines of equal frame counts, and
    really different (so never used) when a line is padded by whole frames."""
    import onnxruntime as ort

    from distill.export.parity import parity_inputs
    from distill.models.padding import mixes_columns
    from distill.runtime.onnx_masks import mask_nodes, mask_stride, without_frame_masks

    from .helpers import with_random_statistics

    module = load_network(make_ckpt(tmp_path / "m.ckpt", NETS[kind]))
    with_random_statistics(module.net)
    path = export_onnx(module, tmp_path / "m.onnx", "m")
    model = onnx.load(str(path))
    layers = [m for m in module.net.backbone.modules() if mixes_columns(m)]
    strides = [mask_stride(n) for n in mask_nodes(model.graph)]
    assert len(strides) == len(layers) and set(strides) == {1, 2, 4}
    lean = without_frame_masks(model, 4)
    assert [mask_stride(n) for n in mask_nodes(lean.graph)] == [1, 2]
    full = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    thin = ort.InferenceSession(lean.SerializeToString(), providers=["CPUExecutionProvider"])

    def both(batch, widths):
        feed = {"image": batch, "widths": np.array(widths)}
        return full.run(None, feed)[0], thin.run(None, feed)[0]

    lines = {w: parity_inputs(module.preprocess, w, 1, seed=w)[0][0] for w in (101, 103, 306)}
    for w in (101, 103, 306):  # alone, padded to the next multiple of 4 px
        batch = np.zeros((1, 1, 32, -(-w // 4) * 4), np.float32)
        batch[0, :, :, :w] = lines[w]
        a, b = both(batch, [w])
        assert np.abs(a - b).max() < 1e-5, w
    batch = np.zeros((2, 1, 32, 104), np.float32)  # 26 frames each
    batch[0, :, :, :103], batch[1, :, :, :101] = lines[103], lines[101]
    a, b = both(batch, [103, 101])
    assert np.abs(a - b).max() < 1e-5
    batch = np.zeros((2, 1, 32, 308), np.float32)  # 26 and 77 frames: the masks matter
    batch[0, :, :, :306], batch[1, :, :, :101] = lines[306], lines[101]
    a, b = both(batch, [306, 101])
    assert np.abs(a[1, :26] - b[1, :26]).max() > 1e-4  # 100x the exact cases

    rec = Recognizer(path)
    one_line = rec._session_for(np.array([101]), 104)
    assert one_line is not rec.session
    assert rec._session_for(np.array([103, 101]), 104) is one_line
    assert rec._session_for(np.array([306, 101]), 308) is rec.session
    # a model exported before the masks were named: the full graph for every call
    for node in model.graph.node:
        node.name = node.name.replace("padding_mask", "mul")
    onnx.save(model, str(tmp_path / "old.onnx"))
    old = Recognizer(tmp_path / "old.onnx")
    assert old._session_for(np.array([101]), 104) is old.session


def test_parity_check_catches_a_wrong_model(student_onnx, tmp_path):
    path, module = student_onnx
    other = load_network(make_ckpt(tmp_path / "o.ckpt", NETS["student"]))
    with torch.no_grad():
        for p in other.net.head.parameters():
            p.add_(0.5)
    assert not check_parity(other, path, widths=(100,), batches=(2,)).ok


def test_metadata_round_trip(student_onnx):
    path, module = student_onnx
    rec = Recognizer(path)
    assert rec.charset.chars == module.charset.chars and " " in rec.charset
    assert rec.preprocess_cfg == module.preprocess
    assert rec.blank == 0 and rec.name == "tiny-student"
    assert json.loads(rec.metadata["train_config"])["net"]["backbone"] == "shufflenet_v2"


def test_a_stretched_model_reads_its_lines_stretched(tmp_path):
    """preprocess.stretch travels in the metadata: the predictor widens each line as
    training did (a model exported before it has none and reads unstretched)."""
    import dataclasses

    module = load_network(make_ckpt(tmp_path / "m.ckpt", NETS["student"]))
    module.preprocess = dataclasses.replace(module.preprocess, stretch=1.25)
    path = export_onnx(module, tmp_path / "m.onnx", "stretched")
    rec = Recognizer(path)
    assert rec.metadata["stretch"] == "1.25" and rec.preprocess_cfg == module.preprocess
    m = onnx.load(str(path))
    kept = [(p.key, p.value) for p in m.metadata_props if p.key != "stretch"]
    set_metadata(m, dict(kept))
    onnx.save(m, str(tmp_path / "old.onnx"))
    assert Recognizer(tmp_path / "old.onnx").preprocess_cfg.stretch == 1.0


def test_rgb_model_exports(tmp_path):
    module = load_network(make_ckpt(tmp_path / "m.ckpt", NETS["student"], channels=3))
    path = export_onnx(module, tmp_path / "m.onnx", "rgb")
    assert check_parity(module, path, widths=(64,), batches=(2,)).ok
    img = np.full((20, 60, 3), 200, np.uint8)
    assert len(Recognizer(path).recognize([img, img[:, :30]])) == 2


def test_int8_readings_agree_with_fp32(memorized_student, tmp_path):
    """INT8 must compute the FP32 function up to rounding: on the lines the model reads
    clearly (not the calibration lines) the readings are the same strings."""
    from distill.core.charset import Charset
    from distill.core.preprocess import pad_batch, preprocess
    from distill.data.synth import SynthDataset

    module = memorized_student["model"].trained_network()
    batch = memorized_student["batch"]
    path = export_onnx(module, tmp_path / "m.onnx", "m")
    n = len(batch["labels"])
    lines = [batch["images"][i, :, :, : batch["widths"][i]].numpy() for i in range(n)]
    other = SynthDataset(
        Charset.resolve("digits"),
        module.preprocess,
        size=16,
        seed=99,
        deterministic=True,
        max_chars=6,
    )
    calib_lines = [preprocess(other.render(i), module.preprocess) for i in range(16)]
    calib = [pad_batch(calib_lines[i : i + 8]) for i in (0, 8)]
    dyn = quantize_dynamic(path, tmp_path / "dyn.onnx")
    # chosen by this CPU, and the 7-bit weights a CPU without VNNI chooses (safe on all)
    sta = quantize_static(path, tmp_path / "sta.onnx", calib, keep_float=["head"])
    sta7 = quantize_static(path, tmp_path / "sta7.onnx", calib, ["head"], reduce_range=True)
    assert Recognizer(sta).metadata["int8_reduce_range"] == str(not has_vnni()).lower()
    assert Recognizer(sta7).metadata["int8_reduce_range"] == "true"
    ops = lambda p: {n.op_type for n in onnx.load(str(p)).graph.node}  # noqa: E731
    assert "DynamicQuantizeLSTM" in ops(dyn)
    assert "QuantizeLinear" in ops(sta) and "DynamicQuantizeLSTM" in ops(sta)
    fp32 = [r.text for r in Recognizer(path).recognize_arrays(lines)]
    assert len(set(fp32)) >= n - 1  # varied readings (the memorized labels)

    def agreement(model_path):
        texts = [r.text for r in Recognizer(model_path).recognize_arrays(lines)]
        return sum(a == b for a, b in zip(fp32, texts)) / n

    for q in (dyn, sta, sta7):
        assert Recognizer(q).metadata["quantization"].startswith(("dynamic", "static"))
        # the mask names survive quantization: INT8 gets the lean batch-1 graph too
        assert without_frame_masks(onnx.load(str(q)), 4) is not None, q.name
        assert agreement(q) >= 7 / 8, q.name
    # a broken quantization (here: the LSTM's int8 weights zeroed) is caught by the check
    broken = onnx.load(str(dyn))
    for init in broken.graph.initializer:
        if init.data_type == onnx.TensorProto.INT8:
            zero = np.zeros_like(onnx.numpy_helper.to_array(init))
            init.CopyFrom(onnx.numpy_helper.from_array(zero, init.name))
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    assert agreement(tmp_path / "broken.onnx") < 0.5


def test_predictor_warns_of_int8_that_saturates_on_this_cpu(
    student_onnx, tmp_path, monkeypatch, capsys
):
    """8-bit static INT8 weights on a CPU without VNNI: the user is told, not misread."""
    import distill.core.hardware as hardware

    model = onnx.load(str(student_onnx[0]))
    for reduce_range, warned in (("false", True), ("true", False)):
        props = {"quantization": "static QDQ int8 convs", "int8_reduce_range": reduce_range}
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(tmp_path / f"q_{reduce_range}.onnx"))
        del model.metadata_props[-2:]
        for vnni in (True, False):
            monkeypatch.setattr(hardware, "has_vnni", lambda v=vnni: v)
            Recognizer(tmp_path / f"q_{reduce_range}.onnx")
            err = capsys.readouterr().err
            assert ("saturate" in err) == (warned and not vnni), (reduce_range, vnni, err)


# ------------------------------------------------------------------ predictor CLI


def test_cli_metrics_match_hand_computed_values(student_onnx, tmp_path, capsys):
    path, _ = student_onnx
    (tmp_path / "img").mkdir()
    images = []
    for i, w in enumerate((40, 80, 120, 160)):
        write_image(tmp_path / f"img/{i}.png", w, value=40 * i)
        images.append(tmp_path / f"img/{i}.png")
    preds = [r.text for r in Recognizer(path).recognize(images)]
    # labels: two exact, one with a character appended, one unrelated 'xy'
    labels = [preds[0], preds[1], preds[2] + "Q", "xy"]
    lines = "".join(f"img/{i}.png\t{lab}\n" for i, lab in enumerate(labels))
    (tmp_path / "gt.txt").write_text(lines, encoding="utf-8")
    out_file = tmp_path / "out.tsv"
    code = predict.main([str(path), str(tmp_path / "gt.txt"), "--out", str(out_file)])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    from rapidfuzz.distance import Levenshtein

    d3 = 1
    d4 = Levenshtein.distance(preds[3], "xy")
    assert metrics["n"] == 4
    assert metrics["acc"] == pytest.approx(0.5 + 0.25 * (preds[3] == "xy"))
    assert metrics["cer"] == pytest.approx(
        (d3 + d4) / (len(preds[0]) + len(preds[1]) + len(labels[2]) + 2)
    )
    assert metrics["ms_per_line"] > 0 and metrics["lines_per_s"] > 0
    rows = [ln.split("\t") for ln in out_file.read_text(encoding="utf-8").splitlines()]
    assert [r[1] for r in rows] == preds and all(0 <= float(r[2]) <= 1 for r in rows)


def test_cli_bad_inputs_are_reported_and_the_rest_goes_on(
    student_onnx, tmp_path, capsys, monkeypatch
):
    path, _ = student_onnx
    write_image(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not an image")
    (tmp_path / "huge.png").write_bytes(b"\0" * 5000)
    monkeypatch.setattr(predict, "MAX_FILE_BYTES", 4096)
    inputs = ["good.png", "missing.png", "empty.png", "text.png", "huge.png"]
    code = predict.main([str(path), *[str(tmp_path / f) for f in inputs]])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.count("\n") == 1 and "good.png" in out
    for name, why in (
        ("missing.png", "No such file"),
        ("empty.png", "empty"),
        ("text.png", "not a decodable"),
        ("huge.png", "too large"),
    ):
        assert any(name in ln and why in ln for ln in err.splitlines()), (name, err)
    assert "4 input(s) failed, 1 recognized" in err


def test_cli_folder_input_and_bad_model(student_onnx, tmp_path, capsys):
    path, _ = student_onnx
    (tmp_path / "d").mkdir()
    for i in range(3):
        write_image(tmp_path / "d" / f"{i}.png")
    assert predict.main([str(path), str(tmp_path / "d"), "--json", "--batch", "2"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and {"path", "text", "confidence"} <= set(rows[0])
    (tmp_path / "bad.onnx").write_text("nope")
    assert predict.main([str(tmp_path / "bad.onnx"), str(tmp_path / "d")]) == 2
    assert predict.main([str(tmp_path / "none.onnx"), str(tmp_path / "d")]) == 2


def test_predict_does_not_import_torch(student_onnx):
    path, _ = student_onnx
    code = (
        "import sys, distill.runtime.predict as p; "
        f"r = p.Recognizer({str(path)!r}); "
        "import numpy as np; r.recognize([np.full((32, 64), 255, np.uint8)]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_export_job_with_dynamic_int8(tmp_path, capsys):
    ckpt = make_ckpt(tmp_path / "m.ckpt", NETS["student"], charset="digits")
    cfg = compose_cfg(
        "export",
        [
            f"ckpt={ckpt}",
            f"out={tmp_path}/m.onnx",
            "quantize=dynamic",
            "data=synth",
            "data.val.size=16",
            "eval_samples=16",
            "data.train.size=4",
        ],
        tmp_path,
    )
    summary = run_export(cfg)
    out = capsys.readouterr().out
    assert "parity onnxruntime vs PyTorch" in out and "int8-dynamic" in out
    assert set(summary["validation"]) == {"fp32", "int8-dynamic"}
    for row in summary["validation"].values():
        assert 0 <= row["acc"] <= 1 and row["ms_per_line_batch1"] > 0
    assert 0 <= summary["validation"]["int8-dynamic"]["agreement_with_fp32"] <= 1
    assert (tmp_path / "m_int8.onnx").is_file()


def test_export_job_static_int8_from_the_checkpoints_own_data(tmp_path, capsys):
    """A checkpoint made by train.py carries its data config: no data flags needed, and
    static INT8 is calibrated on validation lines kept apart from the scored ones."""
    from distill.lit.train import train

    from .helpers import TINY, TINY_STUDENT, TINY_SYNTH

    run = tmp_path / "run"
    over = ["debug=limit", *TINY, *TINY_SYNTH, *TINY_STUDENT, "data.val.size=24"]
    train(compose_cfg("train", [*over, "trainer.max_steps=1", "test=false"], run))
    ckpt = run / "checkpoints" / "last.ckpt"
    cfg = compose_cfg(
        "export",
        [
            f"ckpt={ckpt}",
            f"out={tmp_path}/m.onnx",
            "quantize=static",
            "eval_samples=16",
            "calibration_lines=8",
        ],
        tmp_path,
    )
    summary = run_export(cfg)
    assert summary["eval_lines"] == 16 and summary["calibration_lines"] == 8
    assert "calibrated on 8 other lines" in capsys.readouterr().out
    too_many = compose_cfg(
        "export",
        [f"ckpt={ckpt}", f"out={tmp_path}/m.onnx", "quantize=static", "calibration_lines=24"],
        tmp_path,
    )
    with pytest.raises(ValueError, match="calibration_lines=24 plus lines to evaluate"):
        run_export(too_many)
    bare = make_ckpt(tmp_path / "bare.ckpt", NETS["student"])
    with pytest.raises(ValueError, match="carries no data config"):
        run_export(
            compose_cfg(
                "export", [f"ckpt={bare}", f"out={tmp_path}/b.onnx", "quantize=dynamic"], tmp_path
            )
        )


def test_torchscript_export_reads_lines_in_any_order_with_parity(tmp_path):
    """format=torchscript: the traced module takes unsorted widths (parity batches mix
    them), matches PyTorch, and carries the metadata a libtorch user needs."""
    from distill.export.torchscript import read_torchscript_metadata

    ckpt = make_ckpt(tmp_path / "s.ckpt", NETS["student"])
    cfg = compose_cfg(
        "export", [f"ckpt={ckpt}", "format=torchscript", f"out={tmp_path}/s.pt"], tmp_path
    )
    summary = run_export(cfg)
    assert summary["parity"] and all(r["ok"] for r in summary["parity"])
    assert {r["batch"] for r in summary["parity"]} == {1, 7}
    meta = read_torchscript_metadata(tmp_path / "s.pt")
    module = load_network(str(ckpt))
    assert json.loads(meta["charset"]) == module.charset.chars
    assert meta["input_height"] == "32" and meta["width_per_frame"] == "4"
    # shortest line first: the traced LSTM packs them sorted, the wrapper puts them back
    scripted = torch.jit.load(str(tmp_path / "s.pt"))
    x = torch.rand(3, 1, 32, 96)
    widths = torch.tensor([40, 96, 64])
    with torch.no_grad():
        got = scripted(x, widths)
        for i in range(3):
            alone = module.net(x[i : i + 1, :, :, : int(widths[i])], widths[i : i + 1])[0]
            assert torch.allclose(got[i, : alone.shape[1]], alone[0], atol=1e-4)
    bad = compose_cfg(
        "export", [f"ckpt={ckpt}", "format=torchscript", "quantize=dynamic"], tmp_path
    )
    with pytest.raises(ValueError, match="INT8 is an ONNX export"):
        run_export(bad)


def test_batches_keep_padding_small():
    from distill.runtime.predict import plan_batches

    # short lines are not padded to the long one; equal lines fill max_batch
    assert plan_batches([100] * 5 + [1500], 32) == [(0, 5), (5, 6)]
    assert plan_batches([64] * 40, 16) == [(0, 16), (16, 32), (32, 40)]
    widths = sorted(np.random.default_rng(0).integers(40, 1600, 200).tolist())
    plan = plan_batches(widths, 32, 0.25)
    assert plan[0][0] == 0 and plan[-1][1] == 200
    assert all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
    for start, end in plan:
        part = widths[start:end]
        assert len(part) <= 32
        assert len(part) == 1 or len(part) * part[-1] <= 1.25 * sum(part)
    assert plan_batches([], 8) == []


def test_quantize_cli_makes_int8_from_an_exported_model_alone(student_onnx, tmp_path, capsys):
    """``python -m distill.export.quantize``: static INT8 calibrated on a label file's
    lines, preprocessed as the model's metadata says; portable 7-bit weights on request;
    a static run without calibration lines, or a missing file, is refused by name."""
    from distill.export.quantize import calibration_from_labelfiles
    from distill.export.quantize import main as quantize_main

    path, _ = student_onnx
    (tmp_path / "img").mkdir()
    for i in range(6):
        write_image(tmp_path / "img" / f"{i}.png", text_width=40 + 16 * i)
    labels = tmp_path / "labels.tsv"
    labels.write_text("".join(f"img/{i}.png\t{i}\n" for i in range(6)))
    (tmp_path / "more.tsv").write_text("img/5.png\t5\n")
    batches = calibration_from_labelfiles(path, [labels, tmp_path / "more.tsv"], lines=6)
    assert sum(len(ws) for _, ws in batches) == 4  # 3 + 3 asked, "more" has 1 line
    out = tmp_path / "s_int8.onnx"
    more = str(tmp_path / "more.tsv")
    quantize_main([str(path), str(out), "--mode", "static", "--calibration", str(labels),
                   "--calibration", more, "--reduce-range", "on"])  # fmt: skip
    assert "reduce_range true" in capsys.readouterr().out
    rec = Recognizer(out)
    assert rec.metadata["int8_reduce_range"] == "true"
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(out)).graph.node}
    assert len(rec.recognize([str(tmp_path / "img" / "0.png")])) == 1
    quantize_main([str(path), str(tmp_path / "d.onnx")])
    assert Recognizer(tmp_path / "d.onnx").metadata["quantization"].startswith("dynamic")
    with pytest.raises(SystemExit):
        quantize_main([str(path), str(tmp_path / "x.onnx"), "--mode", "static"])
    assert "needs --calibration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        quantize_main([str(tmp_path / "none.onnx"), str(tmp_path / "x.onnx")])
    assert "model not found" in capsys.readouterr().err


def test_static_int8_keeps_gelu_whole_between_quantized_convolutions(tmp_path):
    """Fused before quantizing, GELU's Div-Erf-Add-Mul chain between two convolutions
    is one Gelu node in the INT8 graph, with the same outputs as left in pieces."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(4, c, 3, 3)).astype(np.float32), n)
               for n, c in (("w1", 1), ("w2", 4))]  # fmt: skip
    consts = [numpy_helper.from_array(np.array(v, np.float32), n)
              for n, v in (("sqrt2", 2**0.5), ("one", 1.0), ("half", 0.5))]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("Div", ["y", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["y", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["g"]),
        helper.make_node("Conv", ["g", "w2"], ["logits"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "gelu",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, 8, "w"]),
         helper.make_tensor_value_info("widths", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4, 8, "w"])],
        initializer=weights + consts,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "fp32.onnx")
    batches = [(rng.normal(size=(2, 1, 8, 16)).astype(np.float32), np.array([16, 16]))]
    ops = {}
    for fuse in (True, False):
        out = quantize_static(tmp_path / "fp32.onnx", tmp_path / f"{fuse}.onnx", batches,
                              reduce_range=True, fuse=fuse)  # fmt: skip
        ops[fuse] = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "Gelu" in ops[True] and "Erf" not in ops[True] and "QuantizeLinear" in ops[True]
    assert "Erf" in ops[False] and "Gelu" not in ops[False]
    x = {"image": batches[0][0], "widths": batches[0][1]}
    fused, pieces = (
        ort.InferenceSession(str(tmp_path / f"{f}.onnx")).run(None, x)[0] for f in (True, False)
    )
    assert np.abs(fused - pieces).max() < 0.05 * np.abs(pieces).max()
