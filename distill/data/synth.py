"""Synthetic text lines rendered on the fly: the built-in training data.

Three parts: ``TextSource`` draws realistic strings (dictionary words mixed with
codes, dates, amounts, phone numbers, e-mails), ``FontLibrary`` finds fonts and
knows which characters each one really has, and ``LineRenderer`` draws a line with
varied size, ink, paper, spacing, padding and background clutter.
``SynthDataset`` ties them together; with ``deterministic=True`` sample ``i`` is a
pure function of (seed, i), which makes a reproducible validation set.
"""

from __future__ import annotations

import logging
import os
import re
import string
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from distill.charset import Charset
from distill.data.datasets import check_teacher_view, make_sample
from distill.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Fonts whose cmap claims letters but draws symbols or placeholders.
DEFAULT_FONT_EXCLUDE = (
    r"LastResort",
    r"^cm\w*10",
    r"STIXSiz",
    r"STIXNonUni",
    r"Display",
    r"Math",
    r"Symbol",
)


def default_font_dirs() -> list[str]:
    """matplotlib's bundled fonts (always there) plus the usual system font folders."""
    import matplotlib

    dirs = [os.path.join(matplotlib.get_data_path(), "fonts", "ttf")]
    dirs += ["/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts")]
    return [d for d in dirs if os.path.isdir(d)]


# ---------------------------------------------------------------- text


@lru_cache(maxsize=4)
def _english_words(n: int) -> tuple[str, ...]:
    from wordfreq import top_n_list

    return tuple(top_n_list("en", n))


@lru_cache(maxsize=2)
def _chinese_words() -> tuple[str, ...]:
    import jieba

    path = Path(jieba.__file__).parent / "dict.txt"
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            w = line.split(" ", 1)[0]
            if 1 <= len(w) <= 4:
                words.append(w)
    return tuple(words)


class TextSource:
    """Draws text lines in a language, restricted to the characters of a charset."""

    def __init__(
        self,
        charset: Charset,
        lang: str = "en",
        vocab_size: int = 30000,
        max_chars: int = 24,
        pattern_ratio: float = 0.35,
    ):
        if lang not in ("en", "zh"):
            raise ValueError(f"synthetic text language must be 'en' or 'zh', got {lang!r}")
        self.charset, self.lang = charset, lang
        self.max_chars, self.pattern_ratio = max_chars, pattern_ratio
        words = _english_words(vocab_size) if lang == "en" else _chinese_words()
        self.words = [w for w in words if not charset.unknown(w)]
        if lang == "en":
            # wordfreq is lower-case; keep the casing variants the charset allows
            self.words = [w for w in self.words if not charset.unknown(w.upper() + w.title())]
        if not self.words:
            raise ValueError(
                f"no {lang} dictionary word fits charset {charset.name!r}; "
                "use a charset with letters or a pattern-only source"
            )
        self.letters = "".join(c for c in string.ascii_letters if c in charset) or None

    # English-looking structured strings seen on invoices, receipts and IDs.
    def _pattern(self, rng: np.random.Generator) -> str:
        d = lambda k: "".join(str(x) for x in rng.integers(0, 10, k))  # noqa: E731
        up = lambda k: "".join(rng.choice(list(string.ascii_uppercase), k))  # noqa: E731
        word = lambda: self.words[rng.integers(len(self.words))]  # noqa: E731
        y, m, day = rng.integers(1970, 2036), rng.integers(1, 13), rng.integers(1, 29)
        amount = f"{rng.integers(0, 100000):,}.{d(2)}"
        choices = [
            lambda: f"{up(rng.integers(2, 4))}-{y}-{d(rng.integers(3, 6))}",
            lambda: f"{up(1)}{d(rng.integers(5, 9))}",
            lambda: f"{y}-{m:02d}-{day:02d}",
            lambda: f"{day:02d}/{m:02d}/{y}",
            lambda: f"{MONTHS[m - 1]} {day}, {y}",
            lambda: f"{d(2)}:{d(2)}" if rng.random() < 0.5 else f"{day:02d}.{m:02d}.{y % 100:02d}",
            lambda: str(rng.choice(["$", "USD ", "EUR ", "-$", "Total: $", "Amount "])) + amount,
            lambda: f"{rng.integers(1, 100)}.{d(1)}%",
            lambda: f"+{rng.integers(1, 99)} ({d(3)}) {d(3)}-{d(4)}",
            lambda: f"{d(3)}-{d(3)}-{d(4)}",
            lambda: f"{word()}.{word()}@{word()}.{rng.choice(['com', 'org', 'net', 'io'])}",
            lambda: f"{word().title()}: {d(rng.integers(1, 7))}",
            lambda: f"No. {d(rng.integers(3, 8))}",
            lambda: f"({word()}) {word()}; {word()}!",
            lambda: d(rng.integers(1, 12)),
        ]
        if self.lang == "zh":
            choices += [
                lambda: f"{y}年{m}月{day}日",
                lambda: f"金额：{amount}元",
                lambda: f"￥{amount}",
                lambda: f"电话：1{d(2)}-{d(4)}-{d(4)}",
                lambda: f"第{rng.integers(1, 100)}号",
            ]
        return choices[rng.integers(len(choices))]()

    def _pick_words(self, rng: np.random.Generator, n: int, sep: str) -> list[str]:
        """Up to ``n`` words whose joined length stays within max_chars (whole words only)."""
        words, length = [], 0
        for i in rng.integers(0, len(self.words), n):
            w = self.words[i]
            if words and length + len(sep) + len(w) > self.max_chars:
                break
            words.append(w)
            length += len(w) + (len(sep) if len(words) > 1 else 0)
        return words

    def _words_line(self, rng: np.random.Generator) -> str:
        if self.lang == "zh":
            text = "".join(self._pick_words(rng, int(rng.integers(1, 6)), ""))
            if rng.random() < 0.2:
                text += str(rng.choice(list("，。：；、！？")))
            return text
        words = self._pick_words(rng, int(rng.integers(1, 5)), " ")
        case = rng.random()
        if case < 0.25:
            words = [w.title() for w in words]
        elif case < 0.4:
            words = [w.upper() for w in words]
        elif case < 0.55:
            words[0] = words[0].title()
        text = " ".join(words)
        if rng.random() < 0.2:
            text += str(rng.choice(list(".,:;!?")))
        return text

    def sample(self, rng: np.random.Generator) -> str:
        for _ in range(20):
            text = (
                self._pattern(rng) if rng.random() < self.pattern_ratio else self._words_line(rng)
            )
            text = self.charset.strip(text).strip()
            text = re.sub(r"\s+", " ", text).strip()
            if 0 < len(text) <= self.max_chars:
                return text
        raise RuntimeError(f"could not draw a text line within charset {self.charset.name!r}")


# ---------------------------------------------------------------- fonts


def _font_codepoints(path: str) -> frozenset[int] | None:
    from fontTools.ttLib import TTFont

    try:
        font = TTFont(path, fontNumber=0, lazy=True)
        cmap = font.getBestCmap() or {}
        font.close()
    except Exception as e:  # a broken font file must not stop the scan
        log.debug("skipping font %s: %s", path, e)
        return None
    return frozenset(cmap)


class FontLibrary:
    """Fonts found in folders, each with the set of characters its cmap really covers."""

    def __init__(self, dirs: list[str] | None = None, exclude=DEFAULT_FONT_EXCLUDE):
        dirs = list(dirs) if dirs else default_font_dirs()
        patterns = [re.compile(p) for p in exclude]
        self.paths: list[str] = []
        self.coverage: list[frozenset[int]] = []
        files = sorted(
            str(p)
            for d in dirs
            if os.path.isdir(d)
            for p in Path(d).rglob("*")
            if p.suffix.lower() in FONT_SUFFIXES
        )
        seen_names = set()
        for path in files:
            name = Path(path).name
            if name in seen_names or any(p.search(Path(path).stem) for p in patterns):
                continue
            seen_names.add(name)
            cps = _font_codepoints(path)
            if cps:
                self.paths.append(path)
                self.coverage.append(cps)
        if not self.paths:
            raise FileNotFoundError(f"no usable .ttf/.otf/.ttc font found in {dirs}")

    def __len__(self) -> int:
        return len(self.paths)

    def fonts_for(self, text: str) -> list[int]:
        """Indices of the fonts that have a glyph for every character of ``text``."""
        need = {ord(c) for c in text if not c.isspace()}
        return [i for i, cov in enumerate(self.coverage) if need <= cov]


# ---------------------------------------------------------------- rendering


def _luma(rgb) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


class LineRenderer:
    """Draws one text line with random style; everything random comes from ``rng``."""

    SIZES = tuple(range(18, 44, 3))  # a few sizes, so the per-worker font cache stays small

    def __init__(self, fonts: FontLibrary, min_contrast: float = 70.0):
        self.fonts = fonts
        self.min_contrast = min_contrast
        self._cache: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}

    def _font(self, idx: int, size: int) -> ImageFont.FreeTypeFont:
        key = (idx, size)
        if key not in self._cache:
            self._cache[key] = ImageFont.truetype(self.fonts.paths[idx], size)
        return self._cache[key]

    def _colours(self, rng):
        while True:
            if rng.random() < 0.5:  # most documents are near-white paper
                paper = (int(rng.integers(215, 256)),) * 3
            else:
                paper = tuple(int(v) for v in rng.integers(150, 256, 3))
            ink = tuple(int(v) for v in rng.integers(0, 110, 3))
            if abs(_luma(paper) - _luma(ink)) >= self.min_contrast:
                break
        if rng.random() < 0.15:  # light text on a dark background
            paper, ink = ink, paper
        return paper, ink

    def render(
        self, text: str, rng: np.random.Generator, font_idx: int | None = None
    ) -> np.ndarray:
        """Return a uint8 RGB image of ``text``; raises ValueError if no font covers it."""
        if font_idx is None:
            candidates = self.fonts.fonts_for(text)
            if not candidates:
                raise ValueError(f"no font has glyphs for every character of {text!r}")
            font_idx = candidates[rng.integers(len(candidates))]
        size = int(self.SIZES[rng.integers(len(self.SIZES))])
        font = self._font(font_idx, size)
        paper, ink = self._colours(rng)
        spacing = int(rng.integers(1, max(2, size // 5))) if rng.random() < 0.2 else 0

        ascent, descent = font.getmetrics()
        if spacing:
            advances = [font.getlength(c) + spacing for c in text]
            text_w = int(sum(advances) - spacing)
        else:
            text_w = int(font.getlength(text))
        text_h = ascent + descent
        pad_l, pad_r = (int(v) for v in rng.integers(2, size // 2 + 3, 2))
        pad_t, pad_b = (int(v) for v in rng.integers(0, size // 4 + 1, 2))
        w, h = max(text_w + pad_l + pad_r, 4), text_h + pad_t + pad_b

        img = Image.new("RGB", (w, h), paper)
        draw = ImageDraw.Draw(img)
        self._background(draw, w, h, paper, ink, rng)
        if spacing:
            x = float(pad_l)
            for c, adv in zip(text, advances):
                draw.text((x, pad_t), c, font=font, fill=ink)
                x += adv
        else:
            draw.text((pad_l, pad_t), text, font=font, fill=ink)
        if rng.random() < 0.1:  # underline, as on forms
            y = pad_t + ascent + max(1, descent // 2)
            draw.line((pad_l, y, pad_l + text_w, y), fill=ink, width=max(1, size // 16))
        arr = np.asarray(img)
        if rng.random() < 0.3:  # sensor / scan noise
            noise = rng.normal(0, rng.uniform(3, 12), arr.shape)
            arr = np.clip(arr + noise, 0, 255).astype(np.uint8)
        return arr

    @staticmethod
    def _background(draw, w, h, paper, ink, rng) -> None:
        kind = rng.random()
        if kind < 0.15:  # table rules above/below the text
            faint = tuple(int((p * 2 + i) / 3) for p, i in zip(paper, ink))
            for y in (int(rng.integers(0, 3)), h - 1 - int(rng.integers(0, 3))):
                draw.line((0, y, w, y), fill=faint, width=1)
        elif kind < 0.25:  # faint speckles
            faint = tuple(int((p * 3 + i) / 4) for p, i in zip(paper, ink))
            n = int(w * h * rng.uniform(0.002, 0.01))
            xs, ys = rng.integers(0, w, n), rng.integers(0, h, n)
            for x, y in zip(xs.tolist(), ys.tolist()):
                draw.point((x, y), fill=faint)


# ---------------------------------------------------------------- dataset


class SynthDataset:
    """Map-style dataset of rendered lines; texts are drawn up front (known lengths)."""

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
        vocab_size: int = 30000,
        max_chars: int = 24,
        pattern_ratio: float = 0.35,
        augment=None,
        teacher_view=None,
    ):
        check_teacher_view(teacher_view)
        self.charset, self.preprocess_cfg = charset, preprocess_cfg
        self.seed, self.deterministic, self.augment = seed, deterministic, augment
        self.teacher_view = teacher_view
        self.fonts = FontLibrary(font_dirs, font_exclude)
        self.renderer = LineRenderer(self.fonts)
        source = TextSource(charset, lang, vocab_size, max_chars, pattern_ratio)
        rng = np.random.default_rng([seed, 0x7E47])
        self.texts: list[str] = []
        uncovered = 0
        while len(self.texts) < size:
            text = source.sample(rng)
            if self.fonts.fonts_for(text):
                self.texts.append(text)
            else:
                uncovered += 1
                if uncovered > 10 * size + 100:
                    raise RuntimeError(
                        f"the fonts found ({len(self.fonts)}) cannot render {lang} text in charset "
                        f"{charset.name!r} (e.g. {text!r}); install fonts or set font_dirs"
                    )
        if uncovered:
            log.info("synth: redrew %d lines that no font could render", uncovered)

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

    def render(self, i: int) -> np.ndarray:
        """The raw uint8 RGB image of sample ``i`` (before augmentation)."""
        return self.renderer.render(self.texts[i], self._rng(i))

    def __getitem__(self, i: int) -> dict:
        img = self.renderer.render(self.texts[i], self._rng(i))
        return make_sample(img, self.texts[i], self.preprocess_cfg, self.augment, self.teacher_view)
