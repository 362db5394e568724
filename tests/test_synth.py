"""Synthetic data: fonts and their real coverage, render profiles, long lines, held-out
fonts, determinism, and the font installer."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFont

from distill.core.charset import Charset
from distill.core.preprocess import PreprocessConfig, check_frames, preprocess, valid_frames
from distill.data.fonts import (
    HELDOUT_FONTS,
    Face,
    FontLibrary,
    MissingFontError,
    default_font_dirs,
)
from distill.data.render import PROFILES
from distill.data.synth import SynthDataset, parse_profiles
from distill.data.text import TextSource

from .helpers import ROOT, require_fonts

LONG = PreprocessConfig(max_width=1600)


def _tofu(font: ImageFont.FreeTypeFont, c: str, notdef: bytes, notdef_size) -> bool:
    mask = font.getmask(c)
    ink = np.asarray(mask)
    return ink.sum() == 0 or (mask.size == notdef_size and bytes(ink.tobytes()) == notdef)


@pytest.mark.parametrize("charset", ["ascii", "zh"])
def test_every_face_draws_every_character_its_cmap_claims(charset):
    """No tofu: a face that claims a character draws ink that is not its .notdef box.
    Every character of the charset, for one face per design (and 200 sampled characters
    for every other face: a design's weights share their cmap)."""
    lib = require_fonts(charset)
    chars = [c for c in Charset.resolve(charset).chars if not c.isspace()]
    rng = np.random.default_rng(0)
    checked_designs, tofu = set(), []
    for i in lib.coverage_of("".join(chars), 0.99):
        face = lib.faces[i]
        font = ImageFont.truetype(face.path, 20, index=face.index)
        nd = font.getmask("\U0010fffd")
        notdef = bytes(np.asarray(nd).tobytes())
        claimed = [c for c in chars if ord(c) in face.coverage]
        if face.design in checked_designs:
            claimed = [claimed[j] for j in rng.choice(len(claimed), min(200, len(claimed)))]
        checked_designs.add(face.design)
        tofu += [(face.name, c) for c in claimed if _tofu(font, c, notdef, nd.size)]
    assert checked_designs
    assert not tofu, f"{len(tofu)} claimed glyphs draw nothing or .notdef, e.g. {tofu[:5]}"


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("lang, charset", [("en", "ascii"), ("zh", "zh")])
def test_each_profile_renders_its_text_in_charset_and_deterministically(profile, lang, charset):
    require_fonts(charset)
    cs = Charset.resolve(charset)
    kw = dict(size=12, lang=lang, seed=4, deterministic=True, profiles=profile)
    a, b = SynthDataset(cs, LONG, **kw), SynthDataset(cs, LONG, **kw)
    assert a.texts == b.texts
    for i in range(len(a)):
        assert a.texts[i] and not cs.unknown(a.texts[i])
        img = a.render(i)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert img.std() > 5, f"{profile}: blank image for {a.texts[i]!r}"
        np.testing.assert_array_equal(img, b.render(i))  # a validation set never changes
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])


def test_document_lines_reach_100_characters_and_survive_preprocessing():
    cs = Charset.resolve("ascii")
    src = TextSource(cs, "en")
    rng = np.random.default_rng(1)
    texts = [src.sample(rng, "document") for _ in range(400)]
    lengths = np.array([len(t) for t in texts])
    assert lengths.max() >= 100 and 25 <= np.median(lengths) <= 70
    long_texts = [t for t in texts if len(t) >= 100][:5]
    renderer = PROFILES["document"](FontLibrary())
    for t in long_texts:
        img = renderer.render(t, rng)
        x = preprocess(img, LONG)
        assert x.shape[1] == LONG.height and x.shape[2] <= LONG.max_width
        frames = int(valid_frames(np.array([x.shape[2]]))[0])
        repeats = sum(a == b for a, b in zip(t, t[1:]))  # a blank must separate these
        assert frames >= len(t) + repeats, (len(t), x.shape)  # CTC can align the label
        check_frames(frames, x.shape[2], 4)


def test_text_kinds_are_realistic_and_varied():
    src = TextSource(Charset.resolve("ascii"), "en")
    rng = np.random.default_rng(2)
    entities = [src.sample(rng, "entity") for _ in range(100)]
    sentences = [src.sample(rng, "sentence") for _ in range(100)]
    assert len(set(entities)) > 90 and any("@" in e or "http" in e for e in entities)
    assert sum(s[-1] in ".!?:;" for s in sentences) > 90
    assert sum(s[0].isupper() for s in sentences) > 90
    zh = TextSource(Charset.resolve("zh"), "zh")
    lines = [zh.sample(rng, "document") for _ in range(100)]
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in t) for t in lines) > 80
    with pytest.raises(ValueError, match="unknown text kind"):
        src.draw("poem", rng)


def test_families_are_sampled_evenly_not_by_file_count():
    cov = frozenset(range(32, 127))
    faces = [Face(f"big{i}.ttf", 0, "Big", f"W{i}", cov) for i in range(18)]
    faces += [Face("small.ttf", 0, "Small", "Regular", cov)]
    faces += [
        Face("cjk.ttc", i, f"Noto Sans CJK {r}", "Regular", cov)
        for i, r in enumerate(["SC", "TC", "JP"])
    ]
    lib = FontLibrary.from_faces(faces)
    rng = np.random.default_rng(0)
    picks = Counter(lib.faces[lib.pick(list(range(len(faces))), rng)].design for _ in range(3000))
    assert set(picks) == {"Big", "Small", "Noto Sans CJK"}  # region variants: one design
    for n in picks.values():
        assert 850 < n < 1150, picks


def test_heldout_fonts_are_out_of_training_and_alone_in_the_test_set():
    lib_train = FontLibrary(exclude=list(HELDOUT_FONTS))
    try:
        lib_held = FontLibrary(include=list(HELDOUT_FONTS))
    except FileNotFoundError:
        pytest.skip("no held-out font family installed: make fonts (scripts/install_fonts.sh)")
    train = {f.design for f in lib_train.faces}
    held = {f.design for f in lib_held.faces}
    assert held and not train & held
    ds = SynthDataset(Charset.resolve("ascii"), LONG, size=4, fonts="heldout", profiles="document")
    assert {f.design for f in ds.fonts.faces} == held


def test_a_test_needing_a_missing_font_is_skipped_naming_the_package(monkeypatch):
    import distill.data.fonts as fonts

    only_dejavu = [d for d in default_font_dirs() if "matplotlib" in d]
    monkeypatch.setattr(fonts, "default_font_dirs", lambda: only_dejavu)
    assert require_fonts("ascii")  # DejaVu covers ASCII
    with pytest.raises(pytest.skip.Exception, match="install fonts-noto-cjk or fonts-wqy"):
        require_fonts("zh")


def test_zh_without_a_cjk_font_is_a_clear_error_naming_the_package():
    only_dejavu = [d for d in default_font_dirs() if "matplotlib" in d]
    with pytest.raises(MissingFontError, match="fonts-noto-cjk or fonts-wqy-microhei"):
        SynthDataset(Charset.resolve("zh"), LONG, size=4, lang="zh", font_dirs=only_dejavu)


def test_profile_ratios_are_checked():
    assert parse_profiles("scene") == {"scene": 1.0}
    assert parse_profiles({"document": 3, "clean": 1, "scene": 0}) == {
        "document": 0.75,
        "clean": 0.25,
    }
    with pytest.raises(ValueError, match="unknown render profile.*known"):
        parse_profiles({"handwriting": 1})
    with pytest.raises(ValueError, match="positive sum"):
        parse_profiles({"scene": 0})


def test_mixed_profiles_follow_their_ratios():
    ds = SynthDataset(
        Charset.resolve("ascii"), LONG, size=400, seed=3,
        profiles={"document": 0.5, "scene": 0.3, "clean": 0.2},
    )  # fmt: skip
    counts = Counter(ds.profile(i) for i in range(len(ds)))
    assert 160 < counts["document"] < 240 and 80 < counts["scene"] < 160 and counts["clean"] > 40
    doc = [len(t) for i, t in enumerate(ds.texts) if ds.profile(i) == "document"]
    scene = [len(t) for i, t in enumerate(ds.texts) if ds.profile(i) == "scene"]
    assert np.median(doc) > 2 * np.median(scene)


# ------------------------------------------------------------------ the font installer


def _fake_tools(tmp_path: Path) -> dict:
    """dpkg-query and apt-get stand-ins: installed packages live in a state file, and
    every apt-get call is logged."""
    state, log = tmp_path / "installed", tmp_path / "apt.log"
    state.write_text("fonts-dejavu-core\n")
    (tmp_path / "dpkg-query").write_text(
        "#!/usr/bin/env bash\npkg=${@: -1}\n"
        f'grep -qx "$pkg" {state} && printf "install ok installed" || exit 1\n'
    )
    (tmp_path / "apt-get").write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {log}\n'
        'if [ "$1" = install ]; then for a in "$@"; do case $a in fonts-*) '
        f"echo $a >> {state};; esac; done; fi\n"
    )
    for f in ("dpkg-query", "apt-get"):
        os.chmod(tmp_path / f, 0o755)
    env = dict(
        os.environ, APT_GET=str(tmp_path / "apt-get"), DPKG_QUERY=str(tmp_path / "dpkg-query")
    )
    return {"env": env, "log": log, "state": state}


@pytest.mark.skipif(os.geteuid() != 0, reason="the installer installs only as root")
def test_font_installer_is_idempotent(tmp_path):
    fake = _fake_tools(tmp_path)
    script = ROOT / "scripts" / "install_fonts.sh"
    check = subprocess.run(
        ["bash", script, "--check"], env=fake["env"], capture_output=True, text=True
    )
    assert check.returncode == 1 and "fonts-noto-cjk" in check.stdout
    assert "fonts-dejavu-core" not in check.stdout  # already there: not asked for
    first = subprocess.run(["bash", script], env=fake["env"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    calls = fake["log"].read_text().splitlines()
    assert (
        len(calls) == 2 and calls[1].startswith("install") and "fonts-dejavu-core" not in calls[1]
    )
    second = subprocess.run(["bash", script], env=fake["env"], capture_output=True, text=True)
    assert second.returncode == 0 and "already installed" in second.stdout
    assert fake["log"].read_text().splitlines() == calls  # nothing ran the second time
    check = subprocess.run(
        ["bash", script, "--check"], env=fake["env"], capture_output=True, text=True
    )
    assert check.returncode == 0


def test_teacher_cache_renders_synthetic_lines_of_a_profile():
    from distill.kd.teach import source_items

    cs = Charset.resolve("ascii")
    docs = source_items("synth:12:en:document", cs)
    short = source_items("synth:12", cs)  # the clean profile, as before profiles existed
    assert len(docs) == 12 and all(item.label for item in docs)
    assert np.median([len(i.label) for i in docs]) > np.median([len(i.label) for i in short])
    with pytest.raises(ValueError, match="unknown render profile"):
        source_items("synth:2:en:handwriting", cs)


@pytest.mark.parametrize("view", ["clean", "augmented"])
def test_teacher_view_is_the_image_it_names(view):
    """``augmented``: the teacher reads exactly the image the student was given (before
    the student's preprocessing); ``clean``: the image before augmentation."""
    from distill.data.augment import Augmenter

    aug = Augmenter(gaussian_blur=1.0, salt_pepper=1.0)  # always changes the image
    ds = SynthDataset(
        Charset.resolve("ascii"), PreprocessConfig(), size=3, seed=2, deterministic=True,
        augment=aug, teacher_view=view,
    )  # fmt: skip
    for i in range(len(ds)):
        sample = ds[i]
        clean = ds.render(i)
        same_as_clean = sample["raw"].shape == clean.shape and np.array_equal(sample["raw"], clean)
        if view == "clean":
            assert same_as_clean
        else:  # what the student got is this image, preprocessed
            assert not same_as_clean
            np.testing.assert_array_equal(
                preprocess(sample["raw"], ds.preprocess_cfg), sample["image"]
            )
