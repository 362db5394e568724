"""The train and evaluate routines behind train.py and eval.py (importable for tests)."""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
# printed once per run by Lightning's pytree helper with this torch; nothing to act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def _instantiate_group(cfg: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a group such as callbacks or logger."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c and "_target_" in c]


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    """``last`` means the last.ckpt of this run's output dir; other paths must exist."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        path = Path(output_dir) / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last but {path} does not exist: give the run's folder with "
                "hydra.run.dir=... or a checkpoint path"
            )
        return str(path)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt_path}")
    return ckpt_path


@rank_zero_only
def _log_config(trainer: L.Trainer, cfg: DictConfig) -> None:
    for logger in trainer.loggers:
        logger.log_hyperparams(
            {
                "charset": str(cfg.charset),
                "model": OmegaConf.to_container(cfg.model.net, resolve=True),
                "preprocess": OmegaConf.to_container(cfg.preprocess, resolve=True),
                "batch_size": cfg.data.batch_size,
                "max_steps": cfg.trainer.get("max_steps"),
                "seed": cfg.seed,
            }
        )


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The supervised module, or the distillation module when ``teacher.ckpt`` is set."""
    teacher_ckpt = (cfg.get("teacher") or {}).get("ckpt")
    if not teacher_ckpt:
        return hydra.utils.instantiate(cfg.model, _recursive_=False)
    if not Path(teacher_ckpt).is_file():
        raise FileNotFoundError(f"teacher.ckpt not found: {teacher_ckpt}")
    from distill.module import DistillationModule

    student = OmegaConf.to_container(cfg.model, resolve=True)
    student.pop("_target_", None)
    kd = OmegaConf.to_container(cfg.kd, resolve=True) if cfg.get("kd") else {}
    return DistillationModule(teacher_ckpt=str(teacher_ckpt), kd=kd, **student)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit a model (optionally resuming), then test the best checkpoint. Returns metrics."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = build_module(cfg)
    callbacks = _instantiate_group(cfg.get("callbacks"))
    loggers = _instantiate_group(cfg.get("logger"))
    if not loggers:  # nothing to write the learning rate to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    if loggers:
        _log_config(trainer, cfg)
    n_params = sum(p.numel() for p in model.net.parameters())
    log.info("model: %s backbone, %.2fM parameters", cfg.model.net.backbone, n_params / 1e6)

    metrics: dict[str, float] = {}
    start = time.time()
    if cfg.get("train", True):
        ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test") and datamodule.test_sources:
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if not trainer.fast_dev_run:
        summary = {
            "metrics": metrics,
            "best_val_acc": _best_score(trainer),
            "best_checkpoint": best,
            "steps": trainer.global_step,
            "wall_time_s": round(time.time() - start, 1),
            "params": n_params,
            "distilled_from": (cfg.get("teacher") or {}).get("ckpt"),
        }
        _report(trainer, summary, cfg)
    return metrics


def _best_score(trainer: L.Trainer) -> float | None:
    cb = trainer.checkpoint_callback
    score = getattr(cb, "best_model_score", None)
    return float(score) if score is not None else None


@rank_zero_only
def _report(trainer: L.Trainer, summary: dict, cfg: DictConfig) -> None:
    """Tell the user what came out and where it is; keep it in <run>/metrics.json."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["", f"Finished {summary['steps']} steps in {summary['wall_time_s'] / 60:.1f} min."]
    shown = {
        k: v
        for k, v in summary["metrics"].items()
        if k.startswith(("val/", "test/")) and "loss" not in k
    }
    for k, v in sorted(shown.items()):
        lines.append(f"  {k:28s} {v:.4f}")
    if summary["best_checkpoint"]:
        lines.append(f"Best checkpoint:  {summary['best_checkpoint']}")
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if last.is_file():
        lines.append(f"Last checkpoint:  {last}  (resume with ckpt_path={last})")
    for logger in trainer.loggers:
        if getattr(logger, "log_dir", None):
            lines.append(f"TensorBoard logs: {logger.log_dir}  (make tensorboard)")
    print("\n".join(lines), flush=True)


def evaluate(cfg: DictConfig) -> dict[str, dict]:
    """Score a checkpoint on each ``data.test`` set; returns {set name: metrics}."""
    from distill.module import load_recognizer

    ckpt = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.output_dir)
    model = load_recognizer(ckpt)
    if cfg.get("protocol"):
        model.protocol = cfg.protocol
    if not cfg.data.get("test"):
        raise ValueError("nothing to evaluate: give data.test=[FILE,...]")
    # the checkpoint decides how images are read and which characters exist
    datamodule = hydra.utils.instantiate(
        cfg.data,
        charset=model.charset.to_dict(),
        preprocess=model.preprocess_cfg.to_dict(),
        train=None,
        val=None,
        _convert_="all",
    )
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False
    )
    trainer.test(model, datamodule=datamodule, verbose=False)
    return model.test_results


def print_json(obj) -> None:
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        print(json.dumps(obj, indent=2))
