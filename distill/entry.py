"""The Hydra entry points, behind both ``python train.py ...`` in a clone and the
console scripts of an installed package (``distill-train ...``): the same configs
(``distill/conf``), the same command-line overrides.

Outside a clone, ``paths.root_dir`` (data and logs) is the working folder; train.py and
its siblings set it to the clone.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def train(cfg: DictConfig) -> float | None:
    """Train a recognizer (alone, or distilled from ``teacher=...``)."""
    from distill.lit.train import train as run

    return run(cfg).get("val/acc")


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def evaluate(cfg: DictConfig) -> None:
    """Score a checkpoint on ``data.test`` sets."""
    from distill.lit.train import evaluate as run

    run(cfg)


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def export(cfg: DictConfig) -> None:
    """ONNX (FP32, INT8) or TorchScript, parity checked."""
    from distill.export.run import run_export

    run_export(cfg)


@hydra.main(version_base="1.3", config_path="conf", config_name="prune")
def prune(cfg: DictConfig) -> None:
    """Structured channel pruning of a checkpoint's network."""
    from distill.pruning.run import run_prune

    run_prune(cfg)
