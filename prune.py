"""Prune a checkpoint's network by whole channels:

    python prune.py ckpt=PATH [mode=sensitivity|global] [target.metric=params|macs|latency]
                    [target.keep=0.6] [skip=[...]] [data=labelfile 'data.val=[FILE]']

Measures each channel group's sensitivity (pruned alone at each ratio, no fine-tuning),
chooses per-group ratios that meet the target, and writes the pruned checkpoint, the
sensitivity table and plot, and the plan into the run's folder. Fine-tune the result with
``python train.py ... init_ckpt=<pruned.ckpt> teacher.ckpt=<the original>``.
"""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from distill.entry import prune  # noqa: E402

if __name__ == "__main__":
    prune()
