"""A look at the training data: one grid of samples per render profile, as the renderer
draws them and as the model sees them after preprocessing (and augmentation).

    python -m distill.data.preview --out benchmarks/results/preview --lang en
    python -m distill.data.preview --out /tmp/preview --lang zh --augment --rows 24
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from distill.core.charset import Charset
from distill.core.preprocess import PreprocessConfig, preprocess
from distill.data.augment import Augmenter
from distill.data.synth import PROFILES, SynthDataset

# the training augmentations of distill/conf/data/synth.yaml
SYNTH_AUGMENT = dict(
    gaussian_blur=0.15, motion_blur=0.1, salt_pepper=0.1, perspective=0.2,
    brightness_contrast=0.3, jpeg=0.2, rotate=0.2,
)  # fmt: skip


def grid(images: list[np.ndarray], row_height: int = 48, width: int = 1400) -> np.ndarray:
    """Stack images, each scaled to ``row_height`` (and cut at ``width``), on white."""
    rows = []
    for img in images:
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        h, w = img.shape[:2]
        scaled = cv2.resize(img, (max(1, round(w * row_height / h)), row_height))
        row = np.full((row_height + 6, width, 3), 255, np.uint8)
        row[3 : 3 + row_height, : min(width, scaled.shape[1])] = scaled[:, :width]
        rows.append(row)
    return np.vstack(rows)


def model_view(x: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """A preprocessed (C, H, W) float image back to uint8, as the network reads it."""
    img = np.clip((x * cfg.std + cfg.mean) * 255, 0, 255).astype(np.uint8)
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def write_previews(
    out: str | Path, lang: str = "en", rows: int = 16, seed: int = 0, augment: bool = False
) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    charset = Charset.resolve("ascii" if lang == "en" else "zh")
    cfg = PreprocessConfig(max_width=1600)
    aug = Augmenter(**SYNTH_AUGMENT) if augment else None
    written = []
    for profile in PROFILES:
        ds = SynthDataset(
            charset, cfg, size=rows, lang=lang, seed=seed, deterministic=True, profiles=profile
        )
        raw = [ds.render(i) for i in range(rows)]
        seen = [model_view(preprocess(aug(r) if aug else r, cfg), cfg) for r in raw]
        path = out / f"{profile}_{lang}.jpg"  # JPEG: noisy renders make large PNGs
        # left: as drawn; the model's view (height 32, grey) is what it trains on
        img = np.hstack([grid(raw, 40, 900), np.full((len(raw) * 46, 8, 3), 200, np.uint8),
                         grid(seen, 40, 900)])  # fmt: skip
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
        written.append(path)
        print(f"{path}: {rows} {profile} lines, e.g. {ds.texts[0]!r}")
    return written


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/preview")
    p.add_argument("--lang", default="en", choices=["en", "zh"])
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", action="store_true", help="apply the training augmentations")
    args = p.parse_args(argv)
    write_previews(args.out, args.lang, args.rows, args.seed, args.augment)


if __name__ == "__main__":
    main()
