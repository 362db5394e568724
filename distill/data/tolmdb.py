"""Convert a label file to an LMDB in the DTRB layout.

    python -m distill.data.tolmdb data/mine/gt.txt data/mine/lmdb [--check]

Images are stored as their original encoded bytes. With ``--check`` each image is
decoded first and unreadable ones are left out (and listed) instead of stored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.progress import track

from distill.core.labelfile import read_label_file
from distill.core.preprocess import ImageError, decode_image
from distill.data.lmdb import LmdbWriter


def label_file_to_lmdb(label_file: str | Path, out_dir: str | Path, check: bool = True) -> dict:
    """Write the LMDB; returns counts {written, skipped} and the skipped paths."""
    label_file, out_dir = Path(label_file), Path(out_dir)
    pairs, malformed = read_label_file(label_file)
    if malformed:
        raise ValueError(f"{label_file}:{malformed[0]}: expected 'relative/path<TAB>label'")
    skipped = []
    with LmdbWriter(out_dir) as out:
        if out.count:
            raise ValueError(f"{out_dir} holds {out.count} samples already: write to a new folder")
        for path, label in track(pairs, description=f"writing {out_dir}"):
            try:
                data = path.read_bytes()
                if check:
                    decode_image(data, str(path))
            except (OSError, ImageError) as e:
                skipped.append(f"{path}: {e}")
                continue
            out.add(data, label)
        out.commit()
        written = out.count
    return {"written": written, "skipped": len(skipped), "skipped_files": skipped}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("label_file")
    ap.add_argument("out_dir")
    ap.add_argument("--no-check", action="store_true", help="store images without decoding them")
    args = ap.parse_args(argv)
    res = label_file_to_lmdb(args.label_file, args.out_dir, check=not args.no_check)
    for s in res["skipped_files"]:
        print(f"skipped: {s}", file=sys.stderr)
    print(f"{args.out_dir}: {res['written']} samples written, {res['skipped']} skipped")
    return 0 if res["written"] else 1


if __name__ == "__main__":
    sys.exit(main())
