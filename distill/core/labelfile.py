"""The label-file format shared by datasets, the LMDB converter and the predictor:
UTF-8, one ``relative/image/path<TAB>label`` per line, paths relative to the label
file's folder, blank lines ignored."""

from __future__ import annotations

from pathlib import Path


def read_label_file(path: str | Path) -> tuple[list[tuple[Path, str]], list[int]]:
    """(image path, label) pairs, and the numbers of malformed lines (no tab, no path)."""
    path = Path(path)
    pairs, malformed = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            rel, sep, label = line.partition("\t")
            if not sep or not rel:
                malformed.append(n)
                continue
            pairs.append((path.parent / rel, label))
    return pairs, malformed
