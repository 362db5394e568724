"""What a path given as data is: the one classifier behind datasets, the label-cache
writer and the predictor, and the one list of image suffixes they all accept."""

from __future__ import annotations

from pathlib import Path

# the formats decode_image reads (OpenCV's decoders)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pbm", ".pgm", ".ppm")
KINDS = ("lmdb", "folder", "image", "labelfile", "missing")


def is_lmdb(path: str | Path) -> bool:
    return (Path(path) / "data.mdb").is_file()


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def looks_like_label_file(path: str | Path) -> bool:
    """UTF-8 text with a tab in its first non-blank lines (``path<TAB>label``)."""
    try:
        with open(path, encoding="utf-8") as f:
            head = [ln for ln in (f.readline() for _ in range(5)) if ln.strip()]
    except (OSError, UnicodeDecodeError):
        return False
    return any("\t" in ln for ln in head)


def source_kind(path: str | Path) -> str:
    """``lmdb`` (a folder with data.mdb), ``folder`` (of images), ``labelfile``
    (``path<TAB>label`` lines), ``image`` (a file with an image suffix, or any other file
    that is no label file) or ``missing``."""
    p = Path(path)
    if is_lmdb(p):
        return "lmdb"
    if p.is_dir():
        return "folder"
    if p.is_file():
        return "labelfile" if not is_image_file(p) and looks_like_label_file(p) else "image"
    return "missing"


def image_files(folder: str | Path) -> list[Path]:
    """Every image under ``folder`` (searched recursively), in a fixed order."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_file(p))
