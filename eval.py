"""Evaluate a checkpoint:  python eval.py ckpt_path=PATH data.test=[FILE,...]

Prints JSON metrics (n, acc, acc_nospace, cer, ned) for each test set and keeps them in
``<output dir>/eval.json`` (set the folder with hydra.run.dir=...).
"""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from distill.entry import evaluate  # noqa: E402

if __name__ == "__main__":
    evaluate()
