"""Evaluate a checkpoint:  python eval.py ckpt_path=PATH data.test=[FILE,...]

Prints JSON metrics (n, acc, acc_nospace, cer, ned) for each test set and keeps them in
``<output dir>/eval.json`` (set the folder with hydra.run.dir=...).
"""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from distill.training import evaluate  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
