"""Synthetic text lines rendered on the fly: the built-in training data.

Three parts, each in its module: ``distill.data.text`` draws realistic strings
(words, sentences, document lines, names, addresses, codes, dates, prices),
``distill.data.fonts`` finds font faces and knows which characters each one really
has, ``distill.data.render`` draws a line in a named profile (clean, document,
scene). ``SynthDataset`` ties them together with mixing ratios over profiles; with
``deterministic=True`` sample ``i`` is a pure function of (seed, i), which makes a
reproducible validation set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from distill.core.charset import Charset
from distill.core.preprocess import PreprocessConfig
from distill.data.datasets import check_teacher_view, make_sample
from distill.data.fonts import (
    DEFAULT_FONT_EXCLUDE,
    FontLibrary,
    MissingFontError,
    default_font_dirs,
    font_filters,
    missing_font_message,
)
from distill.data.render import PROFILES, CleanRenderer, LineRenderer, Renderer
from distill.data.text import TextSource

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FONT_EXCLUDE",
    "PROFILES",
    "CleanRenderer",
    "FontLibrary",
    "LineRenderer",
    "MissingFontError",
    "Renderer",
    "SynthDataset",
    "TextSource",
    "default_font_dirs",
    "parse_profiles",
]


def parse_profiles(profiles) -> dict[str, float]:
    """``"document"`` or ``{"document": 0.5, "scene": 0.3, "clean": 0.2}`` -> normalized
    ratios; unknown names and non-positive totals are errors that say what exists."""
    if isinstance(profiles, str):
        profiles = {profiles: 1.0}
    if not isinstance(profiles, Mapping) or not profiles:
        raise ValueError(f"profiles must be a name or a mapping name -> ratio, got {profiles!r}")
    unknown = set(profiles) - set(PROFILES)
    if unknown:
        raise ValueError(f"unknown render profile(s) {sorted(unknown)}; known: {list(PROFILES)}")
    ratios = {k: float(v) for k, v in profiles.items() if float(v) > 0}
    if any(float(v) < 0 for v in profiles.values()) or not ratios:
        raise ValueError(f"profile ratios must be >= 0 with a positive sum, got {dict(profiles)}")
    total = sum(ratios.values())
    return {k: v / total for k, v in ratios.items()}


class SynthDataset:
    """Map-style dataset of rendered lines; texts are drawn up front (known lengths).

    ``profiles`` mixes render profiles (``distill.data.render.PROFILES``) with ratios;
    each profile draws its own kind of text. ``max_chars`` and ``pattern_ratio`` shape
    the clean profile's short lines; document lines reach ~110 characters.
    ``fonts`` picks the font set: ``train`` (every face but the held-out families of
    ``distill.data.fonts.HELDOUT_FONTS``), ``heldout`` (only those: a test set of unseen
    type) or ``all``; ``font_exclude`` patterns drop more faces.
    """

    def __init__(
        self,
        charset: Charset,
        preprocess_cfg: PreprocessConfig,
        size: int = 20000,
        lang: str = "en",
        seed: int = 0,
        deterministic: bool = False,
        font_dirs: list[str] | None = None,
        font_exclude: list[str] | tuple[str, ...] = DEFAULT_FONT_EXCLUDE,
        fonts: str = "train",
        vocab_size: int = 30000,
        max_chars: int = 24,
        pattern_ratio: float = 0.35,
        profiles: str | Mapping[str, float] = "clean",
        augment=None,
        teacher_view=None,
    ):
        check_teacher_view(teacher_view)
        self.charset, self.preprocess_cfg = charset, preprocess_cfg
        self.seed, self.deterministic, self.augment = seed, deterministic, augment
        self.teacher_view = teacher_view
        self.ratios = parse_profiles(profiles)
        self.fonts = FontLibrary(font_dirs, **font_filters(fonts, font_exclude))
        self.renderers: list[Renderer] = [PROFILES[k](self.fonts) for k in self.ratios]
        source = TextSource(charset, lang, vocab_size, max_chars, pattern_ratio)
        self._check_fonts(source, lang)
        covering = self.fonts.coverage_of("".join(charset.chars), 0.99)
        log.info(
            "synth %s: %d faces in %d families (font set %r); %d faces in %d families cover "
            "99%% of charset %r; profiles %s",
            "val" if deterministic else "train", len(self.fonts), len(self.fonts.families),
            fonts, len(covering), len({self.fonts.faces[i].design for i in covering}),
            charset.name, self.ratios,
        )  # fmt: skip
        rng = np.random.default_rng([seed, 0x7E47])
        probs = np.array(list(self.ratios.values()))
        self.texts: list[str] = []
        self.profile_ids: list[int] = []
        uncovered = 0
        while len(self.texts) < size:
            p = int(rng.choice(len(probs), p=probs)) if len(probs) > 1 else 0
            text = source.sample(rng, self.renderers[p].text_kind)
            if self.fonts.fonts_for(text):
                self.texts.append(text)
                self.profile_ids.append(p)
            else:
                uncovered += 1
                if uncovered > 10 * size + 100:
                    raise MissingFontError(
                        f"the fonts found ({len(self.fonts)} faces) cannot render {lang} text "
                        f"in charset {charset.name!r} (e.g. {text!r}): "
                        + missing_font_message(charset.name, self.fonts.dirs)
                    )
        if uncovered:
            log.info("synth: redrew %d lines that no font could render", uncovered)

    def _check_fonts(self, source: TextSource, lang: str) -> None:
        """Stop early, naming what to install, when no face can draw the language."""
        probe = [w for w in source.words[:2000] if not w.isascii()][:200] or source.words[:200]
        if sum(bool(self.fonts.fonts_for(w)) for w in probe) < len(probe) / 2:
            raise MissingFontError(missing_font_message(self.charset.name, self.fonts.dirs))

    @property
    def name(self) -> str:
        return f"synth-{'val' if self.deterministic else 'train'}"

    def __len__(self) -> int:
        return len(self.texts)

    def label_lengths(self) -> list[int]:
        return [len(t) for t in self.texts]

    def _rng(self, i: int) -> np.random.Generator:
        if self.deterministic:
            return np.random.default_rng([self.seed, i])
        # numpy's global state is seeded per worker by seed_everything(workers=True)
        return np.random.default_rng([self.seed, i, int(np.random.randint(2**31))])

    def profile(self, i: int) -> str:
        return self.renderers[self.profile_ids[i]].name

    def render(self, i: int) -> np.ndarray:
        """The raw uint8 RGB image of sample ``i`` (before augmentation)."""
        return self.renderers[self.profile_ids[i]].render(self.texts[i], self._rng(i))

    def __getitem__(self, i: int) -> dict:
        img = self.render(i)
        return make_sample(img, self.texts[i], self.preprocess_cfg, self.augment, self.teacher_view)
