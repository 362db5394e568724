import logging

import numpy as np
import pytest

from distill.config import CONF_DIR
from distill.core.charset import Charset
from distill.core.preprocess import PreprocessConfig
from distill.data.augment import TRANSFORMS, Augmenter
from distill.data.collate import BucketBatchSampler, Collator
from distill.data.datasets import (
    EmptyDatasetError,
    LabelFileDataset,
    LmdbDataset,
    MixedDataset,
    open_dataset,
)
from distill.data.synth import FontLibrary, LineRenderer, SynthDataset, TextSource
from distill.data.tolmdb import label_file_to_lmdb

from .helpers import require_fonts, write_image

PRE = PreprocessConfig(max_width=256)
DIGITS = Charset.resolve("digits")


# ------------------------------------------------------------------ synthetic


def test_synth_is_deterministic_by_seed():
    a = SynthDataset(DIGITS, PRE, size=6, seed=5, deterministic=True)
    b = SynthDataset(DIGITS, PRE, size=6, seed=5, deterministic=True)
    c = SynthDataset(DIGITS, PRE, size=6, seed=6, deterministic=True)
    assert a.texts == b.texts and a.texts != c.texts
    for i in range(6):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
        assert a[i]["label"] == a.texts[i]


@pytest.mark.parametrize("lang, charset", [("en", "ascii"), ("zh", "zh")])
def test_synth_text_stays_in_charset_and_every_line_has_a_font(lang, charset):
    require_fonts(charset)
    cs = Charset.resolve(charset)
    ds = SynthDataset(cs, PRE, size=200, seed=1, lang=lang, max_chars=20)
    for text in ds.texts:
        assert 0 < len(text) <= 20 and not cs.unknown(text)
        fonts = ds.fonts.fonts_for(text)
        assert fonts, text
        for f in fonts:  # every chosen font really has every glyph
            assert {ord(c) for c in text if not c.isspace()} <= ds.fonts.faces[f].coverage
    if lang == "zh":
        assert sum(any("\u4e00" <= c <= "\u9fff" for c in t) for t in ds.texts) > 100


def test_renderer_refuses_text_without_glyphs():
    lib = FontLibrary()
    assert not any("LastResort" in f.path for f in lib.faces)  # placeholder glyphs only
    with pytest.raises(ValueError, match="no font has glyphs"):
        LineRenderer(lib).render("\U0001f9ff\U00013000", np.random.default_rng(0))


def test_text_source_patterns_and_words():
    src = TextSource(Charset.resolve("ascii"), "en", pattern_ratio=0.5)
    rng = np.random.default_rng(0)
    texts = [src.sample(rng) for _ in range(300)]
    assert any(any(c.isdigit() for c in t) for t in texts)
    assert any("@" in t for t in texts) or any("-" in t for t in texts)
    assert len(set(texts)) > 250


def test_synth_speed_is_reported_per_worker_not_asserted():
    # speed lives in benchmarks/bench_train.py; here only that rendering yields images
    ds = SynthDataset(Charset.resolve("ascii"), PRE, size=4, seed=0, augment=synth_augmenter())
    x = ds[0]["image"]
    assert x.dtype == np.float32 and x.shape[:2] == (1, 32) and x.shape[2] <= 256


# ------------------------------------------------------------------ augment


ALL_AUGS = list(TRANSFORMS)


def synth_augmenter() -> Augmenter:
    """The augmentation training on synthetic lines uses (conf/data/synth.yaml)."""
    import yaml

    return Augmenter(**yaml.safe_load((CONF_DIR / "data/synth.yaml").read_text())["augment"])


def test_augmenter_shapes_and_config():
    img = np.full((32, 100, 3), 200, np.uint8)
    assert Augmenter().probs == dict.fromkeys(ALL_AUGS, 0.0)  # nothing named: nothing on
    out = synth_augmenter()(img)
    # warps may grow the canvas (fit_output) but never shrink it much
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert 28 <= out.shape[0] <= 48 and 90 <= out.shape[1] <= 120
    off = Augmenter(**dict.fromkeys(ALL_AUGS, 0.0))
    np.testing.assert_array_equal(off(img), img)
    pixel_only = Augmenter(**{**dict.fromkeys(ALL_AUGS, 0.0), "salt_pepper": 1.0})
    changed = pixel_only(img)
    assert changed.shape == img.shape and not np.array_equal(changed, img)
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augmenter(gausian_blur=0.5)


def test_geometric_augmentation_keeps_text_inside_the_image():
    """Warps must not push ink over the border (the label would no longer match)."""
    import cv2

    img = np.full((32, 200, 3), 255, np.uint8)
    for x in (4, 48, 92, 136, 176):  # five "characters", the last 4 px from the edge
        img[8:24, x : x + 20] = 0
    warp = Augmenter(**{**dict.fromkeys(ALL_AUGS, 0.0), "perspective": 1.0, "rotate": 1.0})
    for _ in range(30):
        out = warp(img)
        dark = (out < 100).all(axis=2).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(dark)
        blobs = stats[1:]
        assert n - 1 == 5
        assert not any(b[0] == 0 or b[0] + b[2] >= out.shape[1] for b in blobs)


# ------------------------------------------------------------------ label files, LMDB


def make_label_file(tmp_path, lines):
    (tmp_path / "img").mkdir(exist_ok=True)
    for rel, _ in lines:
        if rel.startswith("img/ok"):
            write_image(tmp_path / rel)
    (tmp_path / "img/empty.png").write_bytes(b"")
    (tmp_path / "img/corrupt.png").write_bytes(b"\x89PNG garbage")
    text = "".join(f"{r}\t{t}\n" for r, t in lines) + "\n\nmalformed line without tab\n"
    (tmp_path / "gt.txt").write_text(text, encoding="utf-8")
    return tmp_path / "gt.txt"


def test_label_file_bad_images_are_skipped_and_counted(tmp_path):
    gt = make_label_file(
        tmp_path,
        [
            ("img/ok1.png", "12"),
            ("img/missing.png", "34"),
            ("img/empty.png", "5"),
            ("img/corrupt.png", "6"),
            ("img/ok2.png", "78"),
        ],
    )
    ds = LabelFileDataset(gt, DIGITS, PRE)
    assert len(ds) == 5
    with pytest.warns(UserWarning, match="missing.png"):
        samples = [ds[i] for i in range(len(ds))]
    assert sum(s is None for s in samples) == 3
    batch = Collator(DIGITS)(samples)
    assert batch["skipped"] == 3 and batch["labels"] == ["12", "78"]
    assert batch["images"].shape[0] == 2 and batch["images"].shape[-1] % 4 == 0
    assert batch["targets"].tolist() == [[2, 3], [8, 9]]
    assert batch["target_lengths"].tolist() == [2, 2]
    assert Collator(DIGITS)([None, None])["images"] is None


def test_unknown_character_policies(tmp_path, caplog):
    gt = make_label_file(
        tmp_path, [("img/ok1.png", "12"), ("img/ok2.png", "3x4"), ("img/ok3.png", "yy")]
    )
    with caplog.at_level(logging.WARNING):
        skip = LabelFileDataset(gt, DIGITS, PRE, unknown="skip")
    assert skip.labels == ["12"]
    assert "2 of 3 labels dropped" in caplog.text and "x" in caplog.text
    assert LabelFileDataset(gt, DIGITS, PRE, unknown="strip").labels == ["12", "34"]
    assert LabelFileDataset(gt, DIGITS, PRE, unknown="keep").labels == ["12", "3x4", "yy"]


def test_zero_samples_is_an_error_naming_file_and_characters(tmp_path):
    gt = make_label_file(tmp_path, [("img/ok1.png", "abc"), ("img/ok2.png", "dé")])
    with pytest.raises(EmptyDatasetError) as e:
        LabelFileDataset(gt, DIGITS, PRE)
    msg = str(e.value)
    assert str(gt) in msg and "2 with characters outside" in msg and "a" in msg and "é" in msg


def test_lmdb_roundtrip_and_bad_entries(tmp_path):
    gt = make_label_file(
        tmp_path, [("img/ok1.png", "12"), ("img/corrupt.png", "34"), ("img/ok2.png", "56")]
    )
    gt.write_text(gt.read_text().replace("malformed line without tab\n", ""))
    res = label_file_to_lmdb(gt, tmp_path / "db", check=True)
    assert res["written"] == 2 and res["skipped"] == 1
    ds = open_dataset(str(tmp_path / "db"), DIGITS, PRE)
    assert isinstance(ds, LmdbDataset) and ds.labels == ["12", "56"]
    assert ds[1]["label"] == "56" and ds[1]["image"].shape[1] == 32
    # unchecked conversion stores the corrupt bytes: reading skips it, no crash
    label_file_to_lmdb(gt, tmp_path / "raw", check=False)
    raw = LmdbDataset(tmp_path / "raw", DIGITS, PRE)
    with pytest.warns(UserWarning, match="image-000000002"):
        assert raw[1] is None
    import pickle

    assert pickle.loads(pickle.dumps(raw))[0]["label"] == "12"  # DataLoader workers


def test_lmdb_reads_in_forked_dataloader_workers(tmp_path):
    """LMDB refuses to open in a child a folder its parent holds open: opening the
    dataset (which reads every label) must not leave it open in the parent."""
    from torch.utils.data import DataLoader

    from distill.data.collate import Collator

    gt = make_label_file(tmp_path, [("img/ok_a.png", "12"), ("img/ok_b.png", "34")])
    gt.write_text(gt.read_text().replace("malformed line without tab\n", ""))
    label_file_to_lmdb(gt, tmp_path / "db")
    ds = LmdbDataset(tmp_path / "db", DIGITS, PRE)
    again = LmdbDataset(tmp_path / "db", DIGITS, PRE)  # train and val on the same folder
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=Collator(DIGITS))
    batch = next(iter(loader))
    assert sorted(batch["labels"]) == ["12", "34"] and again[0]["label"] == "12"


def test_open_dataset_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="label file, an LMDB folder or a folder of images"):
        open_dataset(str(tmp_path / "nope.txt"), DIGITS, PRE)


def test_mixed_ratios():
    a = SynthDataset(DIGITS, PRE, size=10, seed=1, deterministic=True)
    b = SynthDataset(Charset.resolve("ascii"), PRE, size=10, seed=2, deterministic=True)
    mix = MixedDataset([a, b], [0.8, 0.2], size=2000, seed=0)
    frac_a = (mix.which == 0).mean()
    assert 0.75 < frac_a < 0.85
    assert len(mix.label_lengths()) == 2000
    assert mix[0]["label"] in a.texts + b.texts


# ------------------------------------------------------------------ bucketing


def test_bucket_sampler_covers_everything_and_groups_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, 1000).tolist()
    s = BucketBatchSampler(lengths, 32, shuffle=True, seed=0)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(batches) == len(s)
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches])
    assert spread < 5  # random batches would spread ~28
    s.set_epoch(1)
    assert list(s) != batches  # a new order each epoch


def test_bucket_sampler_resumes_mid_epoch_once():
    s = BucketBatchSampler(list(range(100)), 8, shuffle=True, seed=0)
    s.set_epoch(1)
    epoch1 = list(s)
    s.set_epoch(0)
    s.resume_at(1, 5)
    assert s.epoch == 1 and list(s) == epoch1[5:]
    assert list(s) == epoch1  # the next pass is whole again
    s.resume_at(1, 5)
    s.set_epoch(2)  # the trainer moved on: no skip in another epoch
    assert len(list(s)) == len(s)


def test_bucket_sampler_shards_ranks_evenly(monkeypatch):
    lengths = list(range(100))
    s = BucketBatchSampler(lengths, 8, shuffle=True, seed=0)
    shards = []
    for rank in range(3):
        monkeypatch.setattr(BucketBatchSampler, "_world", staticmethod(lambda r=rank: (r, 3)))
        shards.append(list(s))
    assert len({len(x) for x in shards}) == 1 and len(shards[0]) == len(s)
    seen = {i for shard in shards for b in shard for i in b}
    assert seen == set(range(100))
