"""Render profiles: how a synthetic line looks.

- ``clean``: short lines on plain paper with light clutter (the original renderer);
- ``document``: long lines at body-text sizes with scanner effects: blur, noise,
  binarization, JPEG, slight skew, ink bleed, low resolution, and the neighbour lines
  above or below cut by the crop;
- ``scene``: words on photographic-looking backgrounds (gradients, textures, colour),
  outlines and shadows, perspective, low resolution, blur.

Each profile also names the kind of text it draws (``distill.data.text``). The
albumentations augmentations of the data config still apply on top, at training time.
Everything random comes from the ``rng`` passed in.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from distill.data.fonts import FontLibrary


def _luma(rgb) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


class Renderer:
    """Common to all profiles: fonts, their per-size cache, and picking a face."""

    name = "base"
    text_kind: str | None = None  # what TextSource draws for this profile (None: short mix)
    SIZES: tuple[int, ...] = tuple(range(18, 44, 3))

    def __init__(self, fonts: FontLibrary, min_contrast: float = 70.0):
        self.fonts = fonts
        self.min_contrast = min_contrast
        self._cache: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}

    def _font(self, idx: int, size: int) -> ImageFont.FreeTypeFont:
        key = (idx, size)
        if key not in self._cache:  # a few sizes per profile keep this cache small
            face = self.fonts.faces[idx]
            self._cache[key] = ImageFont.truetype(face.path, size, index=face.index)
        return self._cache[key]

    def _pick_font(self, text: str, rng, font_idx: int | None) -> int:
        if font_idx is not None:
            return font_idx
        candidates = self.fonts.fonts_for(text)
        if not candidates:
            raise ValueError(f"no font has glyphs for every character of {text!r}")
        return self.fonts.pick(candidates, rng)

    def render(self, text: str, rng: np.random.Generator, font_idx: int | None = None):
        raise NotImplementedError


# ---------------------------------------------------------------- clean


class CleanRenderer(Renderer):
    """Short lines, plain paper, varied ink, spacing, padding and light clutter."""

    name = "clean"

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

    def render(self, text: str, rng: np.random.Generator, font_idx: int | None = None):
        """Return a uint8 RGB image of ``text``; raises ValueError if no font covers it."""
        font_idx = self._pick_font(text, rng, font_idx)
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


# ---------------------------------------------------------------- shared effects


def blur(img: np.ndarray, rng, lo: float = 0.4, hi: float = 1.3) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(lo, hi)))


def noise(img: np.ndarray, rng, lo: float = 3, hi: float = 14) -> np.ndarray:
    n = rng.normal(0, rng.uniform(lo, hi), img.shape)
    return np.clip(img + n, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, rng, lo: int = 25, hi: int = 85) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(lo, hi))])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else img


def low_resolution(img: np.ndarray, rng, lo: float = 0.4, hi: float = 0.8) -> np.ndarray:
    """Down to a fraction of the size and back up: the look of a small, low-dpi crop."""
    h, w = img.shape[:2]
    f = float(rng.uniform(lo, hi))
    small = cv2.resize(
        img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def rotate(img: np.ndarray, degrees: float, border) -> np.ndarray:
    """Rotate keeping every pixel (the canvas grows), borders filled with ``border``."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos + 0.5), int(h * cos + w * sin + 0.5)
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=border)


# ---------------------------------------------------------------- document


class DocumentRenderer(Renderer):
    """A line cut from a scanned or photographed page."""

    name = "document"
    text_kind = "document"
    SIZES = (14, 16, 18, 20, 22, 24, 27, 30, 34)

    def render(self, text: str, rng: np.random.Generator, font_idx: int | None = None):
        font_idx = self._pick_font(text, rng, font_idx)
        size = int(self.SIZES[rng.integers(len(self.SIZES))])
        font = self._font(font_idx, size)
        paper = int(rng.integers(205, 256))
        tint = rng.integers(-8, 9, 3) if rng.random() < 0.4 else np.zeros(3, int)
        paper_rgb = tuple(int(np.clip(paper + t, 0, 255)) for t in tint)
        if rng.random() < 0.75:
            ink = (int(rng.integers(0, 70)),) * 3  # black or grey toner
        else:  # blue / red ballpoint and print colours
            ink = tuple(int(v) for v in rng.integers(0, 120, 3))

        ascent, descent = font.getmetrics()
        text_w, text_h = int(font.getlength(text)), ascent + descent
        # the lines above and below may show in the crop: only a sliver of their ink
        # (3-20% of the size), a gap of 5-25% of the size away from this line's ink
        above, below = rng.random() < 0.3, rng.random() < 0.3
        _, ink_top, _, ink_bottom = font.getbbox(text)  # from the origin
        sliver = lambda: int(rng.uniform(0.03, 0.2) * size) + 1  # noqa: E731
        gap = lambda: int(rng.uniform(0.05, 0.25) * size) + 2  # noqa: E731
        pad_t = int(rng.integers(0, size // 5 + 1))
        if above:
            vis_top, gap_top = sliver(), gap()
            pad_t = max(0, vis_top + gap_top - ink_top)
        pad_b = int(rng.integers(0, size // 5 + 1))
        if below:
            vis_bottom, gap_bottom = sliver(), gap()
            pad_b = max(0, pad_t + ink_bottom + gap_bottom + vis_bottom - (pad_t + text_h))
        pad_l, pad_r = (int(v) for v in rng.integers(1, size // 2 + 2, 2))
        w, h = max(text_w + pad_l + pad_r, 4), text_h + pad_t + pad_b

        img = Image.new("RGB", (w, h), paper_rgb)
        draw = ImageDraw.Draw(img)
        if above:  # its ink ends vis_top pixels below the crop's top edge
            other = self._neighbour_text(text, rng)
            y = pad_t + ink_top - gap_top - font.getbbox(other)[3]
            draw.text((pad_l + int(rng.integers(-size, size)), y), other, font=font, fill=ink)
        if below:  # its ink starts gap_bottom below this line's and runs off the crop
            other = self._neighbour_text(text, rng)
            y = pad_t + ink_bottom + gap_bottom - font.getbbox(other)[1]
            draw.text((pad_l + int(rng.integers(-size, size)), y), other, font=font, fill=ink)
        draw.text((pad_l, pad_t), text, font=font, fill=ink)
        arr = np.asarray(img)

        if rng.random() < 0.25:  # ink bleed (thicker strokes) or faded toner (thinner)
            k = np.ones((2, 2), np.uint8)
            arr = cv2.erode(arr, k) if rng.random() < 0.7 else cv2.dilate(arr, k)
        if rng.random() < 0.3:  # slight skew
            arr = rotate(arr, float(rng.uniform(-1.5, 1.5)), paper_rgb)
        if rng.random() < 0.25:
            arr = low_resolution(arr, rng, 0.5, 0.85)
        if rng.random() < 0.35:
            arr = blur(arr, rng, 0.3, 1.0)
        if rng.random() < 0.2:  # binarized scan (fax, photocopy)
            gray = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
            _, bw = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            arr = cv2.cvtColor(bw, cv2.COLOR_GRAY2RGB)
        if rng.random() < 0.4:
            arr = noise(arr, rng, 2, 12)
        if rng.random() < 0.3:
            arr = jpeg(arr, rng, 30, 90)
        return np.ascontiguousarray(arr)

    def _neighbour_text(self, text: str, rng) -> str:
        """Another line in the same font: the same characters shuffled (always drawable)."""
        chars = list(text * 2)
        rng.shuffle(chars)
        return "".join(chars)


# ---------------------------------------------------------------- scene


class SceneRenderer(Renderer):
    """Words on signs, packaging and screens, photographed."""

    name = "scene"
    text_kind = "scene"
    SIZES = (24, 30, 36, 44, 52, 64)

    def __init__(self, fonts: FontLibrary, min_contrast: float = 85.0):
        super().__init__(fonts, min_contrast)  # colour pairs that stay apart in grey

    def _background(self, w: int, h: int, rng) -> np.ndarray:
        kind = rng.random()
        c1 = rng.integers(0, 256, 3).astype(np.float32)
        if kind < 0.35:  # a gradient between two colours at a random angle
            c2 = rng.integers(0, 256, 3).astype(np.float32)
            a = rng.uniform(0, np.pi)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            t = xx * np.cos(a) + yy * np.sin(a)
            t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
            bg = c1 + (c2 - c1) * t[..., None]
        elif kind < 0.7:  # a cloudy texture: coarse noise upscaled, in a colour
            cells = rng.normal(0, 1, (max(2, h // 8), max(2, w // 8), 1)).astype(np.float32)
            tex = cv2.resize(cells, (w, h), interpolation=cv2.INTER_CUBIC)
            tex = tex[..., None] if tex.ndim == 2 else tex
            bg = c1 + tex * float(rng.uniform(10, 45))
        elif kind < 0.85:  # stripes / panels (awnings, shelves, screens)
            bg = np.empty((h, w, 3), np.float32)
            bg[:] = c1
            c2 = rng.integers(0, 256, 3).astype(np.float32)
            period = int(rng.integers(6, max(8, w // 3)))
            mask = (np.arange(w) // period) % 2 == 1
            bg[:, mask] = c1 * 0.8 + c2 * 0.2
        else:  # a plain painted surface
            bg = np.empty((h, w, 3), np.float32)
            bg[:] = c1
        bg = bg + rng.normal(0, rng.uniform(1, 8), (h, w, 3)).astype(np.float32)
        return np.clip(bg, 0, 255).astype(np.uint8)

    def _ink_for(self, bg: np.ndarray, rng) -> tuple[int, int, int]:
        """A colour that stands out from the background's mean brightness."""
        luma = float(cv2.cvtColor(bg, cv2.COLOR_RGB2GRAY).mean())
        for _ in range(20):
            ink = tuple(int(v) for v in rng.integers(0, 256, 3))
            if abs(_luma(ink) - luma) >= self.min_contrast:
                return ink
        return (0, 0, 0) if luma > 127 else (255, 255, 255)

    def render(self, text: str, rng: np.random.Generator, font_idx: int | None = None):
        font_idx = self._pick_font(text, rng, font_idx)
        size = int(self.SIZES[rng.integers(len(self.SIZES))])
        font = self._font(font_idx, size)
        ascent, descent = font.getmetrics()
        text_w, text_h = int(font.getlength(text)), ascent + descent
        stroke = int(rng.integers(1, max(2, size // 12))) if rng.random() < 0.3 else 0
        shadow = int(rng.integers(1, max(2, size // 10))) if rng.random() < 0.3 else 0
        pad_l, pad_r = (int(v) for v in rng.integers(2, size // 2 + 3, 2))
        pad_t, pad_b = (int(v) for v in rng.integers(1, size // 3 + 2, 2))
        pad_l, pad_t = pad_l + stroke, pad_t + stroke
        w = max(text_w + pad_l + pad_r + 2 * stroke + shadow, 4)
        h = text_h + pad_t + pad_b + stroke + shadow

        bg = self._background(w, h, rng)
        ink = self._ink_for(bg, rng)
        img = Image.fromarray(bg)
        if shadow:  # a soft dark shadow under the letters
            layer = Image.new("L", (w, h), 0)
            ImageDraw.Draw(layer).text(
                (pad_l + shadow, pad_t + shadow), text, font=font, fill=255, stroke_width=stroke
            )
            alpha = cv2.GaussianBlur(np.asarray(layer), (0, 0), max(0.5, shadow / 2)) / 255.0
            arr = np.asarray(img).astype(np.float32) * (1 - 0.7 * alpha[..., None])
            img = Image.fromarray(arr.astype(np.uint8))
        draw = ImageDraw.Draw(img)
        outline = tuple(255 - v for v in ink) if stroke else None
        draw.text(
            (pad_l, pad_t), text, font=font, fill=ink, stroke_width=stroke, stroke_fill=outline
        )
        arr = np.asarray(img)

        if rng.random() < 0.5:
            arr = self._perspective(arr, rng)
        if rng.random() < 0.35:
            arr = low_resolution(arr, rng, 0.3, 0.7)
        if rng.random() < 0.35:
            arr = blur(arr, rng, 0.4, 1.5)
        if rng.random() < 0.3:
            arr = noise(arr, rng, 3, 15)
        if rng.random() < 0.3:
            arr = jpeg(arr, rng, 25, 80)
        return np.ascontiguousarray(arr)

    @staticmethod
    def _perspective(arr: np.ndarray, rng) -> np.ndarray:
        """Moves each corner by up to ~8% of the height: the whole text stays inside."""
        h, w = arr.shape[:2]
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        jitter = rng.uniform(-0.08, 0.08, (4, 2)) * np.float32([h * 2, h])
        dst = (src + jitter).astype(np.float32)
        dst -= dst.min(axis=0)
        nw, nh = (int(np.ceil(v)) for v in dst.max(axis=0))
        m = cv2.getPerspectiveTransform(src, dst)
        return cv2.warpPerspective(
            arr,
            m,
            (max(nw, 4), max(nh, 4)),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )


PROFILES: dict[str, type[Renderer]] = {
    "clean": CleanRenderer,
    "document": DocumentRenderer,
    "scene": SceneRenderer,
}
LineRenderer = CleanRenderer  # the name the clean profile had before profiles existed
