"""The labelled lines a benchmark reads: one label file, loaded once, or a clear exit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from distill.runtime.predict import collect, read_image


def load_labelled(path: str, limit: int = 0) -> tuple[list[Path], list[np.ndarray], list[str]]:
    """Image paths, decoded images and labels of a label file (the first `limit` if > 0).

    Exits naming the file and line when the file is malformed or is not a label file,
    so a benchmark never scores against missing labels.
    """
    items, errors = collect([path])
    if not errors and any(label is None for _, label in items):
        errors = [f"{path}: not a label file (its lines must be 'relative/path<TAB>label')"]
    if errors:
        sys.exit("\n".join(errors))
    if limit:
        items = items[:limit]
    return [p for p, _ in items], [read_image(p) for p, _ in items], [t for _, t in items]
