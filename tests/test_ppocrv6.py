"""PP-OCRv6 as a PyTorch network: the import is exact, a wrong file is refused, and a
line reads the same alone and beside a wider one."""

import numpy as np
import pytest
import torch

from distill.core.preprocess import pad_batch

from .helpers import ROOT, TEACHER_CHARS, export_tiny

pytest.importorskip("rapidocr", reason="PP-OCRv6's weights ship in the rapidocr wheel")

from distill.models.ppocrv6_import import ImportMismatch, default_path, import_ppocrv6  # noqa: E402


@pytest.fixture(scope="module")
def stock():
    import onnxruntime as ort

    net, chars, _ = import_ppocrv6()
    sess = ort.InferenceSession(str(default_path()), providers=["CPUExecutionProvider"])
    return net, chars, lambda x: sess.run(None, {"x": x})[0]


def sample_lines(n: int) -> list[np.ndarray]:
    """The repo's sample lines as PP-OCR reads them: height 48, BGR, (x/255 - 0.5) / 0.5."""
    import cv2

    from distill.core.labelfile import read_label_file

    pairs, _ = read_label_file(ROOT / "data" / "samples" / "gt.txt")
    out = []
    for path, _ in pairs[:n]:
        img = cv2.imread(str(path))  # BGR
        h, w = img.shape[:2]
        img = cv2.resize(img, (int(np.ceil(48 * w / h)), 48)).astype(np.float32) / 255.0
        out.append(((img - 0.5) / 0.5).transpose(2, 0, 1))
    return out


def probs(net, x, widths=None):
    with torch.no_grad():
        w = None if widths is None else torch.as_tensor(widths)
        return net(torch.from_numpy(x), w)[0].softmax(-1).numpy()


@pytest.mark.parametrize("batch", [1, 7])
def test_the_import_matches_onnxruntime(stock, batch):
    """The same input: the same best class everywhere, class probabilities within 1e-4 of
    onnxruntime's, or, where float32 rounding in two dozen layers moves a frame between
    two close classes, as close to a float64 evaluation as onnxruntime's float32 is: at
    most twice its distance (both are rounding; which of the two comes closer depends on
    the CPU's kernels: 2.05e-4 against onnxruntime's 1.94e-4 at batch 7 on an AVX-512
    EPYC, no farther than onnxruntime on an AVX2 one)."""
    import copy

    net, _, ort_run = stock
    net64 = copy.deepcopy(net).double()
    lines = sample_lines(8)
    shapes = set()
    for min_width in (48, 320):
        x, _ = pad_batch(lines[:batch], 8, min_width=min_width)
        if x.shape in shapes:  # the widest line is wider than 320 px
            continue
        shapes.add(x.shape)
        ref, ours = ort_run(x), probs(net, x)
        assert ours.shape == ref.shape == (batch, x.shape[-1] // 8, 18710)
        assert (ref.argmax(-1) == ours.argmax(-1)).all()
        if np.abs(ref - ours).max() > 1e-4:
            with torch.no_grad():
                exact = net64(torch.from_numpy(x).double())[0].softmax(-1).numpy()
            assert np.abs(ours - exact).max() <= max(1e-4, 2 * np.abs(ref - exact).max())


def test_a_line_reads_the_same_alone_and_beside_a_wider_one(stock):
    """Padding masked: convolutions, the squeeze-excite means and the attention see the
    valid columns only (the stock graph reads the padding as content)."""
    net, _, _ = stock
    lines = sample_lines(8)
    short, wide = lines[4], np.concatenate(lines[:2], axis=2)  # 90 px beside 518 px
    alone, w1 = pad_batch([short], 8)
    both, w2 = pad_batch([short, wide], 8)
    t = -(-short.shape[2] // 8)
    p_alone = probs(net, alone, w1)[0, :t]
    p_batch = probs(net, both, w2)[0, :t]
    assert np.abs(p_alone - p_batch).max() < 1e-5
    # unmasked, the padding changes what the short line's frames say
    unmasked = probs(net, both)[0, :t]
    assert np.abs(p_alone - unmasked).max() > 1e-3


def test_a_file_that_is_not_pp_ocrv6_is_refused_naming_its_tensor(tmp_path):
    path = export_tiny(tmp_path / "tiny.onnx", len(TEACHER_CHARS) + 2)
    with pytest.raises(ImportMismatch, match=r"conv at node .* does not fit layer backbone.stem1"):
        import_ppocrv6(path)
    with pytest.raises(FileNotFoundError, match="PP-OCRv6 model not found"):
        import_ppocrv6(tmp_path / "missing.onnx")


@pytest.mark.parametrize("name", ["ascii", "zh"])
def test_a_sliced_head_reads_what_the_full_one_reads_in_its_charset(stock, name):
    """Where the full model's best class is a character of the charset (or the blank), the
    sliced model's best class is that character: its rows are the full model's rows."""
    from distill.core.charset import Charset

    net, classes, ort_run = stock
    charset = Charset.resolve(name)
    sliced, _, report = import_ppocrv6(charset=charset)
    assert report.found and len(report.found) + len(report.missing) == len(charset)
    x, _ = pad_batch(sample_lines(8), 8, min_width=320)
    full = probs(net, x).argmax(-1)
    small = probs(sliced, x).argmax(-1)
    full_chars = np.array(["<blank>"] + classes)[full]
    small_chars = np.array(["<blank>"] + charset.chars)[small]
    inside = np.isin(full_chars, ["<blank>", *charset.chars])
    assert inside.mean() > 0.9  # the sample lines are English: most frames qualify
    assert (full_chars[inside] == small_chars[inside]).all()


def test_the_stock_checkpoint_is_the_sliced_import(tmp_path):
    """The stock model written as a checkpoint made here reads as the import does, with
    PP-OCR's preprocessing in its metadata, so export and eval treat it as any other."""
    from distill.core.charset import Charset
    from distill.models.checkpoint import load_network
    from distill.models.ppocrv6_import import main

    main([str(tmp_path / "stock.ckpt"), "--charset", "ascii", "--protocol", "caseless"])
    trained = load_network(tmp_path / "stock.ckpt")
    assert (trained.preprocess.height, trained.preprocess.channel_order) == (48, "bgr")
    assert (
        trained.protocol == "caseless" and trained.charset.chars == Charset.resolve("ascii").chars
    )
    sliced, _, _ = import_ppocrv6(charset=Charset.resolve("ascii"))
    x, _ = pad_batch(sample_lines(3), 8)
    assert np.array_equal(probs(trained.net, x), probs(sliced, x))


@pytest.fixture(scope="module")
def ascii_ckpt(tmp_path_factory):
    """model=ppocrv6_small with its head sliced to ascii, trained one step by train(), at a
    learning rate too small to change a reading: what is tested is the way from a
    training run to a served model (one Adam step at 1e-4 already moves every weight by
    about 1e-4, enough to flip a letter's case)."""
    from distill.lit.train import train

    from .helpers import compose_cfg

    out = tmp_path_factory.mktemp("ppocrv6")
    cfg = compose_cfg(
        "train",
        [
            "model=ppocrv6_small",
            "charset=ascii",
            "data=labelfile",
            "data.batch_size=4",
            "data.num_workers=0",
            "debug=limit",
            "trainer.limit_val_batches=1",
            "trainer.max_steps=1",
            "trainer.val_check_interval=1",
            "model.optimizer.lr=1e-7",
            "test=false",
            "logger=[]",
            "preprocess.max_width=800",
        ],
        out,
    )
    metrics = train(cfg)
    # it reads already: the one validation batch is NM, Tract 82:85 Sky'S:, and stock
    # PP-OCRv6 reads the last as sky'S:
    assert np.isfinite(metrics["train/loss"]) and metrics["val/acc"] == 0.75
    return out / "checkpoints" / "last.ckpt"


def test_a_fine_tuned_copy_exports_in_the_contract_and_the_predictor_reads_it(ascii_ckpt, tmp_path):
    from distill.export.onnx import export_onnx
    from distill.export.parity import check_parity
    from distill.models.checkpoint import load_network
    from distill.runtime.predict import Recognizer

    trained = load_network(ascii_ckpt)
    assert trained.preprocess.channel_order == "bgr" and trained.preprocess.height == 48
    path = export_onnx(trained, tmp_path / "pp6.onnx", "ppocrv6_ascii")
    report = check_parity(trained, path, widths=(100, 320), batches=(1, 3))
    assert report.ok, str(report)
    rec = Recognizer(path)
    assert rec.metadata["channel_order"] == "bgr" and rec.width_per_frame == 8
    from distill.core.labelfile import read_label_file

    pairs, _ = read_label_file(ROOT / "data" / "samples" / "gt.txt")
    texts = [r.text for r in rec.recognize([p for p, _ in pairs[:8]])]
    assert sum(t == label for t, (_, label) in zip(texts, pairs[:8])) >= 7, texts
    # the ONNX graph masks the padding too: a short line alone and beside a wide one
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lines = sample_lines(8)
    short, wide = lines[4], np.concatenate(lines[:2], axis=2)
    x1, w1 = pad_batch([short], 8)
    x2, w2 = pad_batch([short, wide], 8)
    t = -(-short.shape[2] // 8)
    alone = sess.run(None, {"image": x1, "widths": w1})[0][0, :t]
    beside = sess.run(None, {"image": x2, "widths": w2})[0][0, :t]
    assert np.abs(alone - beside).max() < 1e-4


def test_a_fine_tuned_copy_teaches_the_small_student(ascii_ckpt, tmp_path):
    """The copy (48-px BGR, a frame per 8 pixels) teaches the ShuffleNetV2 student (32-px
    grey, a frame per 4) from the raw images (teacher.view), online: its frames are
    resampled onto the student's and it reads the validation lines as the stock model
    does."""
    from distill.lit.train import train

    from .helpers import TINY_STUDENT, compose_cfg

    overrides = [
        "debug=fdr",
        *TINY_STUDENT,
        "charset=ascii",
        "data=labelfile",
        "data.batch_size=4",
        "preprocess.max_width=400",
        f"teacher.ckpt={ascii_ckpt}",
        "teacher.view=clean",
        "kd=pseudo_frame_kl",
        "test=false",
        "logger=[]",
    ]
    metrics = train(compose_cfg("train", overrides, tmp_path))
    assert np.isfinite(metrics["train/loss_kl"]) and metrics["train/loss_kl"] > 0
    assert metrics["val/teacher_acc"] == 0.75  # the batch ascii_ckpt's own validation read


def test_prune_py_cuts_the_imported_network_by_taylor_importance_and_it_exports(tmp_path):
    """prune.py on the stock network (ASCII head): Taylor importance from its own reading
    of lines that are not the scoring ones, one global threshold meeting a MACs target;
    the pruned checkpoint keeps PP-OCR's preprocessing, and exports within parity."""
    from distill.export.onnx import export_onnx
    from distill.export.parity import check_parity
    from distill.models.checkpoint import load_network
    from distill.models.ppocrv6_import import main
    from distill.pruning.run import run_prune

    from .helpers import compose_cfg

    main([str(tmp_path / "stock.ckpt"), "--charset", "ascii"])
    gt = ROOT / "data" / "samples" / "gt.txt"
    info = run_prune(
        compose_cfg(
            "prune",
            [
                f"ckpt={tmp_path / 'stock.ckpt'}",
                "mode=global",
                "importance=taylor",
                "target.metric=macs",
                "target.keep=0.9",
                "eval_samples=16",
                "importance_samples=8",
                "data=labelfile",
                f"data.val=[{gt}]",
            ],
            tmp_path / "prune",
        )
    )
    assert info["importance"] == "taylor" and info["skip"] == []
    assert info["after_no_finetune"]["macs"] <= 0.9 * info["before"]["macs"]
    assert info["before"]["acc"] >= 0.9  # the stock network reads the samples
    assert all(not name.startswith("neck") for name in info["plan"])
    pruned = load_network(tmp_path / "prune" / "pruned.ckpt")
    assert pruned.preprocess.channel_order == "bgr" and pruned.net.width_per_frame == 8
    path = export_onnx(pruned, tmp_path / "pruned.onnx", "ppocrv6_pruned")
    report = check_parity(pruned, path, widths=(100, 320), batches=(1, 3))
    assert report.ok, str(report)
