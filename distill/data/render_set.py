"""Write a synthetic test set to disk: images plus a label file any tool can read.

A set rendered with fonts held out of training (``--fonts heldout``) and a seed no
training run uses measures what a model does on type it never saw:

    python -m distill.data.render_set --profile document --lang en --fonts heldout \\
        --size 1000 --out data/generated/heldout/document_en

Deterministic: the same arguments write the same images. Writing is resumable (an
image already on disk is kept) and the label file is written last, atomically.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
from rich.progress import track

from distill.core.charset import Charset
from distill.core.preprocess import PreprocessConfig
from distill.data.fonts import FONT_SETS
from distill.data.synth import PROFILES, SynthDataset

DEFAULT_SEED = 90210  # not a training seed: the texts differ from any training run's


def write_set(
    out: str | Path,
    profile: str,
    lang: str = "en",
    charset: str | None = None,
    size: int = 1000,
    seed: int = DEFAULT_SEED,
    fonts: str = "heldout",
    font_dirs: list[str] | None = None,
) -> Path:
    """Render ``size`` lines into ``out/images`` and write ``out/labels.tsv``."""
    charset = charset or ("ascii" if lang == "en" else "zh")
    ds = SynthDataset(
        Charset.resolve(charset),
        PreprocessConfig(),
        size=size,
        lang=lang,
        seed=seed,
        deterministic=True,
        profiles=profile,
        font_dirs=font_dirs,
        fonts=fonts,
    )
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in track(range(size), description=f"rendering {out}"):
        rel = f"images/{i:06d}.png"
        if not (out / rel).exists():
            tmp = out / f"images/.{i:06d}.tmp.png"
            cv2.imwrite(str(tmp), cv2.cvtColor(ds.render(i), cv2.COLOR_RGB2BGR))
            os.replace(tmp, out / rel)
        rows.append(f"{rel}\t{ds.texts[i]}\n")
    tmp = out / "labels.tsv.tmp"
    tmp.write_text("".join(rows), encoding="utf-8")
    os.replace(tmp, out / "labels.tsv")
    families = sorted({ds.fonts.faces[j].design for j in range(len(ds.fonts))})
    (out / "README.txt").write_text(
        f"{size} synthetic lines, profile {profile}, lang {lang}, charset {charset}, "
        f"seed {seed}, fonts {fonts}: {', '.join(families)}\n",
        encoding="utf-8",
    )
    return out / "labels.tsv"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (images/ and labels.tsv)")
    p.add_argument("--profile", default="document", choices=list(PROFILES))
    p.add_argument("--lang", default="en", choices=["en", "zh"])
    p.add_argument("--charset", help="default: ascii for en, zh for zh")
    p.add_argument("--size", type=int, default=1000, help="number of lines")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument(
        "--fonts",
        default="heldout",
        choices=FONT_SETS,
        help="heldout: only the families training leaves out (distill.data.fonts.HELDOUT_FONTS)",
    )
    p.add_argument("--font-dirs", nargs="*", help="font folders (default: matplotlib + system)")
    args = p.parse_args(argv)
    path = write_set(
        args.out, args.profile, args.lang, args.charset, args.size, args.seed, args.fonts,
        args.font_dirs,
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
