"""Teachers from outside: ONNX recognizers with their own charset, input size and frame
rate; the vocabulary map; pseudo-label targets; the teacher-label cache."""

from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch

from distill.core.charset import Charset
from distill.kd.cache import CachedDataset, CachedTeacher, pack_topk, unpack_topk
from distill.kd.onnx import OnnxTeacher, VocabularyMap
from distill.kd.outputs import Outputs
from distill.kd.targets import ctc_texts
from distill.kd.teach import Item, teach
from distill.lit.train import train

from .helpers import TEACHER_CHARS, TINY, TINY_STUDENT, TINY_SYNTH, compose_cfg, export_tiny


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("teacher") / "rec.onnx", len(TEACHER_CHARS) + 2)


# ------------------------------------------------------------------ vocabulary


def test_vocabulary_map_on_a_toy_dictionary():
    student = Charset(list("0125,"), name="toy")
    teacher = ["1", "x", "，", "5", "中", "2", "5"]  # class k + 1; space not included
    vm = VocabularyMap(teacher, student)
    probs = np.array([[0.1, 0.2, 0.05, 0.1, 0.15, 0.3, 0.05, 0.05]])  # blank + 7 classes
    mapped, unmapped = vm.map_probs(probs)
    # kept: blank .1, '1' .2, '，'->',' .1, '5' .15 + .05 (duplicate), '2' .05
    kept = 0.1 + 0.2 + 0.1 + 0.15 + 0.05 + 0.05
    assert unmapped[0] == pytest.approx(1 - kept)  # 'x' .05 and '中' .3
    expected = np.array([0.1, 0.0, 0.2, 0.05, 0.2, 0.1]) / kept  # blank, 0, 1, 2, 5, ','
    np.testing.assert_allclose(mapped[0], expected, rtol=1e-6)
    assert vm.missing == ["0"]  # the teacher cannot write the student's '0'
    assert vm.map_text("1，5") == "1,5"  # full-width comma -> its ASCII form
    assert vm.map_text("1中") is None  # unwritable for the student: no target
    with pytest.raises(ValueError, match="shares no character"):
        VocabularyMap(["x", "中"], student)


def test_a_full_width_student_character_takes_its_compatibility_form():
    """The zh charset writes the yen sign full-width ('￥'); PP-OCRv6 emits '¥'
    (NFKC of '￥'): it must land on the student's '￥', not be dropped."""
    student = Charset(list("12￥（"), name="toy-zh")
    vm = VocabularyMap(["¥", "1", "(", "2"], student)
    assert vm.map_text("¥12") == "￥12" and vm.map_text("(1") == "（1"
    probs = np.array([[0.1, 0.4, 0.2, 0.2, 0.1]])  # blank, '¥', '1', '(', '2'
    mapped, unmapped = vm.map_probs(probs)
    assert unmapped[0] == pytest.approx(0.0)
    np.testing.assert_allclose(mapped[0], [0.1, 0.2, 0.1, 0.4, 0.2])  # blank 1 2 ￥ （
    assert vm.missing == []


def test_ctc_targets_from_labels_and_teacher():
    teacher = Outputs(
        torch.zeros(4, 1, 2),
        torch.ones(4, dtype=torch.long),
        texts=["Hello", "shop", None, "abc"],
        confidences=[0.99, 0.95, 0.9, 0.3],
    )
    labels = ["HELLO", "SHOP!", None, None]
    assert ctc_texts(labels, teacher, "label")[0] == labels
    assert ctc_texts(labels, teacher, "teacher", 0.5) == (["Hello", "shop", None, None], 2)
    # auto: the label, with the teacher's casing where it matches up to case; the
    # teacher's reading for unlabeled samples when confident and writable
    texts, n = ctc_texts(labels, teacher, "auto", 0.5)
    assert texts == ["Hello", "SHOP!", None, None] and n == 1
    assert ctc_texts(labels, teacher, "auto", 0.2)[0][3] == "abc"


# ------------------------------------------------------------------ the ONNX teacher


def test_onnx_teacher_reads_its_own_way(tiny_teacher):
    teacher = OnnxTeacher(str(tiny_teacher), min_width=48, name="tiny")
    assert teacher.height == 24 and teacher.teacher_width_per_frame == 6
    assert teacher.teacher_chars[-1] == " " and teacher.outputs_probs
    teacher.bind(Charset.resolve("digits"), 32)
    # 6 teacher pixels per frame at height 24 = 8 student pixels at height 32
    assert teacher.width_per_frame == pytest.approx(8.0)
    img = np.full((30, 150, 3), 255, np.uint8)
    out = teacher({"raw": [img, img[:, :40]]})
    # widths at height 24: 120 -> 20 frames; 32 -> 6 frames (padded to 48 px = 8 frames)
    assert out.frames.tolist() == [20, 6] and out.logits.shape == (2, 20, 11)
    assert torch.allclose(out.logits.exp().sum(-1), torch.ones(2, 20), atol=1e-4)
    assert 0 <= out.stats["teacher_unmapped_mass"] <= 1
    assert all(t is None or set(t) <= set("0123456789 ") for t in out.texts)
    stretched = OnnxTeacher(str(tiny_teacher), min_width=48, stretch=4 / 3)
    stretched.bind(Charset.resolve("digits"), 32)
    assert stretched.width_per_frame == pytest.approx(6.0)
    with pytest.raises(ValueError, match="raw images"):
        teacher({"images": torch.zeros(1, 1, 32, 64)})


def test_onnx_teacher_errors(tmp_path, tiny_teacher):
    with pytest.raises(FileNotFoundError, match="teacher model not found: .*nope.onnx"):
        OnnxTeacher(str(tmp_path / "nope.onnx"))
    with pytest.raises(FileNotFoundError, match="not installed: pip install"):
        OnnxTeacher("models/x.onnx", package="no_such_package_here")
    wrong = export_tiny(tmp_path / "wrong.onnx", len(TEACHER_CHARS) + 5)
    with pytest.raises(ValueError, match=r"outputs 23 classes but its dictionary gives 20"):
        OnnxTeacher(str(wrong), min_width=48)
    fixed = export_tiny(tmp_path / "fixed.onnx", len(TEACHER_CHARS) + 2, fixed_frames=10)
    with pytest.raises(ValueError, match="not a CTC recognizer: 10 frames .* but 10"):
        OnnxTeacher(str(fixed), min_width=48)
    with pytest.raises(FileNotFoundError, match="dictionary not found"):
        OnnxTeacher(str(tiny_teacher), dictionary=str(tmp_path / "dict.txt"))


def _onnx_cfg(tiny_teacher, out, *extra, synth=True):
    return compose_cfg(
        "train",
        [
            "debug=fdr",
            *TINY,
            *(TINY_SYNTH if synth else []),
            *TINY_STUDENT,
            "teacher=onnx",
            f"teacher.path={tiny_teacher}",
            "teacher.min_width=48",
            "test=false",
            *extra,
        ],
        out,
    )


@pytest.mark.parametrize(
    "kd",
    [
        ["kd=pseudo_labels", "kd.ctc_target=teacher"],  # its readings as CTC targets
        ["kd=frame_kl"],  # frame KL, resampled line by line (align: auto)
        ["kd=mean_kl"],  # time-averaged character distributions
    ],
    ids=["pseudo-labels", "frame-kl", "mean-kl"],
)
def test_fast_dev_run_with_an_onnx_teacher(tiny_teacher, tmp_path, kd):
    metrics = train(_onnx_cfg(tiny_teacher, tmp_path, *kd))
    assert np.isfinite(metrics["train/loss"]) and "val/teacher_acc" in metrics
    assert 0 <= metrics["train/teacher_unmapped_mass"] <= 1


def test_training_from_an_unlabeled_folder(tiny_teacher, tmp_path, label_dir):
    """Images without labels: the teacher's readings are the CTC targets."""
    (tmp_path / "unlabeled").mkdir()
    for f in (label_dir / "img").iterdir():
        (tmp_path / "unlabeled" / f.name).write_bytes(f.read_bytes())
    cfg = _onnx_cfg(
        tiny_teacher,
        tmp_path,
        "data=labelfile",
        f"data.train=[{tmp_path / 'unlabeled'}]",
        f"data.val=[{label_dir / 'gt.txt'}]",
        "kd.ctc_target=auto",
        synth=False,
    )
    metrics = train(cfg)
    assert np.isfinite(metrics["train/loss"]) and "train/teacher_targets" in metrics
    with pytest.raises(ValueError, match="has no labels: give a teacher"):
        train(
            compose_cfg(
                "train",
                ["debug=fdr", *TINY, "data=labelfile", f"data.train=[{tmp_path / 'unlabeled'}]"],
                tmp_path,
            )
        )


# ------------------------------------------------------------------ the cache


def test_topk_packing_round_trip():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(11), size=7).astype(np.float32)
    idx, p = unpack_topk(pack_topk(probs, 4))
    assert idx.shape == (7, 4) and (p[:, :-1] >= p[:, 1:]).all()
    np.testing.assert_allclose(p, np.take_along_axis(probs, idx, 1), atol=1e-3)


def _items(label_dir, unlabeled: bool = False):
    from distill.core.labelfile import read_label_file

    pairs, _ = read_label_file(label_dir / "gt.txt")
    items = [Item(str(p), p.read_bytes, None if unlabeled else lab) for p, lab in pairs]
    bad = Item("broken.png", lambda: b"not an image", "1")
    return items[:3] + [bad] + items[3:]


def test_cache_progress_reaches_a_log_file(tiny_teacher, tmp_path, label_dir, capsys):
    """Under nohup there is no terminal for a live bar: each window prints a line."""
    teacher = OnnxTeacher(str(tiny_teacher), min_width=48, name="tiny")
    teacher.bind(Charset.resolve("digits"), 32)
    teach(teacher, _items(label_dir), tmp_path / "c", topk=3, batch=2, window=3)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("teaching c:")]
    assert [ln.split()[2] for ln in lines] == ["3/7", "6/7", "7/7"]
    assert lines[-1].endswith("0 min left")


def test_cache_write_read_and_resume(tiny_teacher, tmp_path, label_dir, monkeypatch):
    teacher = OnnxTeacher(str(tiny_teacher), min_width=48, name="tiny")
    teacher.bind(Charset.resolve("digits"), 32)
    items = _items(label_dir)
    whole = teach(teacher, items, tmp_path / "whole", topk=3, batch=2, window=3, progress=False)
    assert whole == {"items": 7, "written": 6, "bad": 1}

    # interrupted after the first window: nothing written is lost, the rest resumes
    real_read, calls = teacher.read, {"n": 0}

    def failing(images):
        calls["n"] += 1
        if calls["n"] > 2:  # the second window
            raise KeyboardInterrupt
        return real_read(images)

    monkeypatch.setattr(teacher, "read", failing)
    with pytest.raises(KeyboardInterrupt):
        teach(teacher, items, tmp_path / "resumed", topk=3, batch=2, window=3, progress=False)
    env = lmdb.open(str(tmp_path / "resumed"), readonly=True, lock=False)
    with env.begin() as txn:
        assert int(txn.get(b"teach-progress")) == 3 and int(txn.get(b"num-samples")) == 3
    env.close()
    monkeypatch.setattr(teacher, "read", real_read)
    res = teach(teacher, items, tmp_path / "resumed", topk=3, batch=2, window=3, progress=False)
    assert res == whole

    def dump(path):
        env = lmdb.open(str(path), readonly=True, lock=False)
        with env.begin() as txn:
            rows = {bytes(k): bytes(v) for k, v in txn.cursor()}
        env.close()
        return rows

    assert dump(tmp_path / "resumed") == dump(tmp_path / "whole")
    rows = dump(tmp_path / "whole")
    assert b"broken.png" in rows[b"bad-000000001"]

    # read back as a dataset: images, real labels, and the teacher's stored outputs
    from distill.core.preprocess import PreprocessConfig
    from distill.data.datasets import LmdbDataset

    plain = LmdbDataset(tmp_path / "whole", Charset.resolve("digits"), PreprocessConfig())
    assert "teacher_cache" not in plain[0]  # a DTRB reader: the cache is attached beside it
    ds = CachedDataset.open(tmp_path / "whole", Charset.resolve("digits"), PreprocessConfig())
    sample = ds[0]
    assert sample["label"] is not None and set(sample["teacher_cache"]) >= {"index", "probs"}
    assert ds.labels == plain.labels and len(ds) == len(plain) == 6
    cached = CachedTeacher(str(tmp_path / "whole"))
    cached.bind(Charset.resolve("digits"), 32)
    out = cached({"teacher_cache": [ds[i]["teacher_cache"] for i in range(2)]})
    valid = torch.arange(out.logits.shape[1])[None] < out.frames[:, None]
    assert out.logits.shape[-1] == 11
    assert torch.allclose(out.logits.exp().sum(-1)[valid], torch.ones(int(valid.sum())), atol=1e-4)
    # a cache for another charset is refused
    with pytest.raises(ValueError, match="charset 'digits', not 'ascii'"):
        CachedDataset.open(tmp_path / "whole", Charset.resolve("ascii"), PreprocessConfig())


def test_training_from_the_cache_of_unlabeled_images(tiny_teacher, tmp_path, label_dir):
    teacher = OnnxTeacher(str(tiny_teacher), min_width=48, name="tiny")
    teacher.bind(Charset.resolve("digits"), 32)
    cache = tmp_path / "cache"
    teach(teacher, _items(label_dir, unlabeled=True), cache, topk=3, progress=False)
    cfg = compose_cfg(
        "train",
        [
            "debug=fdr",
            *TINY,
            *TINY_STUDENT,
            "teacher=cache",  # its path: the first training source
            "data=lmdb",
            f"data.train=[{cache}]",
            f"data.val=[{label_dir / 'gt.txt'}]",
            "kd.ctc_target=auto",
            "test=false",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert np.isfinite(metrics["train/loss"])


def test_teach_cli(tiny_teacher, tmp_path, label_dir, capsys):
    """The command: a teacher config composed as train.py composes it (teacher=onnx takes
    its defaults from ppocrv6), --set overrides, a source, shards, and clear errors."""
    import distill.kd.teach as cli

    teacher = ["--teacher", "onnx", "--set", f"path={tiny_teacher}", "--set", "min_width=48"]
    args = [*teacher, "--charset", "digits", "--source", str(label_dir / "gt.txt")]
    assert cli.main([*args, "--out", str(tmp_path / "c"), "--shard", "1/2"]) == 0
    assert "3 samples written" in capsys.readouterr().out
    assert (tmp_path / "c" / "shard-001-of-002" / "data.mdb").is_file()
    bad = [
        (["--source", str(tmp_path / "none")], "source not found"),
        (["--teacher", "onnx"], "needs path: give --set path=..."),
        (["--teacher", "nosuch"], "no teacher config 'nosuch'"),
        (["--teacher", "cache", "--set", "path=x"], "does not read raw images"),
        ([*teacher, "--set", "path"], "expected KEY=VALUE"),
    ]
    for extra, message in bad:
        argv = ["--charset", "digits", "--source", str(label_dir / "gt.txt"), "--out", "x"]
        assert cli.main([*argv, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], None),  # the checkpoint kind with ckpt null: no teacher
        (["teacher.ckpt=logs/t/last.ckpt"], "logs/t/last.ckpt"),
        (["teacher=ppocrv6"], "rapidocr:models/PP-OCRv6_rec_small.onnx"),
        (["teacher=onnx", "teacher.path=rec.onnx"], "rec.onnx"),
        (["teacher=cache", "teacher.path=data/generated/c"], "data/generated/c"),
    ],
)
def test_metrics_name_the_teacher_of_every_kind(overrides, expected, tmp_path):
    """metrics.json's distilled_from names what the run learned from, a cache or an
    ONNX file as much as a checkpoint."""
    from distill.kd.teachers import teacher_source

    cfg = compose_cfg("train", overrides, tmp_path)
    assert teacher_source(cfg.get("teacher")) == expected


def test_a_checkpoint_teacher_that_reads_images_its_own_way(tmp_path, label_dir):
    """A checkpoint made here that reads images differently from the student (3 channels
    here, as a fine-tuned PP-OCRv6 reads 48-px BGR) teaches from the raw images
    (teacher.view), online and through the label cache it writes."""
    import distill.kd.teach as cli
    from distill.kd.teachers import CheckpointTeacher

    from .helpers import NETS, make_ckpt

    ckpt = make_ckpt(tmp_path / "rgb.ckpt", NETS["teacher"], charset="digits", channels=3)
    gray = [*TINY, *TINY_SYNTH, *TINY_STUDENT, "preprocess.channels=1", f"teacher.ckpt={ckpt}"]
    with pytest.raises(ValueError, match="reads images differently"):  # without a view
        train(compose_cfg("train", ["debug=fdr", *gray], tmp_path))
    online = ["debug=fdr", *gray, "teacher.view=clean", "test=false"]
    metrics = train(compose_cfg("train", online, tmp_path / "on"))
    assert np.isfinite(metrics["train/loss_kl"]) and "val/teacher_acc" in metrics
    out = tmp_path / "cache"
    argv = ["--teacher", "checkpoint", "--set", f"ckpt={ckpt}", "--charset", "digits"]
    assert cli.main([*argv, "--source", str(label_dir / "gt.txt"), "--out", str(out)]) == 0
    cached = CachedTeacher(str(out))
    assert cached.fingerprint == CheckpointTeacher(str(ckpt)).fingerprint
    assert cached.width_per_frame == 4.0
    from_cache = [*TINY, *TINY_STUDENT, "teacher=cache", "data=lmdb", f"data.train=[{out}]"]
    over = [*from_cache, f"data.val=[{label_dir / 'gt.txt'}]", "test=false"]
    metrics = train(compose_cfg("train", ["debug=fdr", *over], tmp_path / "cached"))
    assert np.isfinite(metrics["train/loss_kl"])
