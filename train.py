"""Train a recognizer:  python train.py [model=teacher|student] [data=...] [experiment=...]"""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from distill.entry import train  # noqa: E402

if __name__ == "__main__":
    train()
