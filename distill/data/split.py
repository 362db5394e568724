"""Split a label file into train and validation label files (a held-out validation set
from your own crops, so the dev sets stay untouched).

    python -m distill.data.split ../shared/data/scene_words/labels.tsv data/generated/scene \\
        --val 300 [--seed 0]

Writes OUT/train.tsv and OUT/val.tsv with image paths rewritten relative to OUT.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from distill.core.labelfile import read_label_file


def split_label_file(path: Path, out: Path, val: int, seed: int = 0) -> dict[str, int]:
    pairs, malformed = read_label_file(path)
    if malformed:
        raise ValueError(f"{path}:{malformed[0]}: expected 'relative/path<TAB>label'")
    if not 0 < val < len(pairs):
        raise ValueError(
            f"{path}: {len(pairs)} lines; --val must be between 1 and {len(pairs) - 1}"
        )
    order = np.random.default_rng(seed).permutation(len(pairs))
    parts = {"val": sorted(order[:val]), "train": sorted(order[val:])}
    out.mkdir(parents=True, exist_ok=True)
    for name, idx in parts.items():
        lines = [f"{os.path.relpath(pairs[i][0], out)}\t{pairs[i][1]}\n" for i in idx]
        (out / f"{name}.tsv").write_text("".join(lines), encoding="utf-8")
    return {name: len(idx) for name, idx in parts.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("label_file", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--val", type=int, required=True, help="lines held out for validation")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        counts = split_label_file(args.label_file, args.out_dir, args.val, args.seed)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out_dir}: train.tsv {counts['train']} lines, val.tsv {counts['val']} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
