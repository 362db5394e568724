"""The train and evaluate routines behind train.py and eval.py (importable for tests)."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from distill.lit.callbacks import WallClock

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


def prepare(cfg: DictConfig):
    """Fix what the run's config leaves open, in place: the preprocessing (the values the
    user set, the rest from the teacher, else the built-in defaults). Returns the
    teacher, built once, or None when the run has none or its recipe uses none."""
    from distill.kd.recipe import Recipe
    from distill.kd.teachers import build_teacher, resolve_preprocess, teacher_requested

    teacher = None
    if teacher_requested(cfg.get("teacher")):
        if Recipe.from_config(cfg.get("kd")).needs_teacher:
            teacher = build_teacher(cfg.teacher)
        else:
            log.info("kd recipe uses no teacher: training on the labels alone")
    resolved = resolve_preprocess(OmegaConf.to_container(cfg.preprocess, resolve=True), teacher)
    with open_dict(cfg):
        cfg.preprocess = resolved.to_dict()
    return teacher


def make_trainer(trainer_cfg: DictConfig, **kwargs) -> L.Trainer:
    """The Lightning Trainer of a trainer config, with ``precision: auto`` resolved."""
    precision = resolve_precision(
        trainer_cfg.get("precision"), str(trainer_cfg.get("accelerator", "cpu"))
    )
    return hydra.utils.instantiate(trainer_cfg, precision=precision, **kwargs)


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The module a config trains: :func:`prepare`, then :func:`make_module`."""
    return make_module(cfg, prepare(cfg))


def init_network(cfg: DictConfig) -> dict | None:
    """``init_ckpt=PATH``: the network of another checkpoint (a pruned one, or any to
    fine-tune) starts this run: its shapes go into ``model.net`` (so this run's
    checkpoints rebuild it) and its weights are returned. Optimizer and step start anew."""
    from distill.models.checkpoint import network_weights, read_checkpoint

    path = cfg.get("init_ckpt")
    if not path:
        return pretrained_weights(cfg)
    try:
        ckpt = read_checkpoint(path)
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(f"init_ckpt: {e}") from None
    net = dict(ckpt["hyper_parameters"]["net"])
    shapes = net.pop("pruned_shapes", None)
    ours = OmegaConf.to_container(cfg.model.net, resolve=True)
    ours.pop("pruned_shapes", None)
    differ = {k for k in set(net) | set(ours) if k != "in_channels" and net.get(k) != ours.get(k)}
    if differ:
        raise ValueError(
            f"init_ckpt {path} holds a network built with "
            + ", ".join(f"{k}={net.get(k)!r}" for k in sorted(differ))
            + " but this run's model.net has "
            + ", ".join(f"{k}={ours.get(k)!r}" for k in sorted(differ))
            + ": use the same model config"
        )
    with open_dict(cfg):
        cfg.model.net.pruned_shapes = shapes
    return network_weights(ckpt)


def pretrained_weights(cfg: DictConfig) -> dict | None:
    """``model.pretrained``: a pretrained network's weights to start from (PP-OCRv6's, from
    its ONNX file: ``ppocrv6`` for the rapidocr wheel's, or a path), its head sliced to the
    run's charset. None when the model names none."""
    source = cfg.model.get("pretrained")
    if not source:
        return None
    if cfg.model.net.get("arch") != "ppocrv6":
        raise ValueError(f"model.pretrained={source}: only a PP-OCRv6 network (arch: ppocrv6)")
    from distill.core.charset import Charset
    from distill.models.ppocrv6_import import import_ppocrv6

    spec = cfg.charset
    charset = Charset.resolve(OmegaConf.to_container(spec) if OmegaConf.is_config(spec) else spec)
    net, _, sliced = import_ppocrv6(None if source == "ppocrv6" else source, charset)
    log.info(
        "network from PP-OCRv6 (%s): %d of the %d characters of charset %s in its dictionary%s",
        source,
        len(sliced.found),
        len(charset),
        charset.name,
        f"; new rows for {''.join(sliced.missing[:20])}" if sliced.missing else "",
    )
    return net.state_dict()


def make_module(cfg: DictConfig, teacher) -> L.LightningModule:
    """The supervised module, or the distillation module when there is a teacher, from
    a prepared config. The data config rides along in the checkpoint."""
    weights = init_network(cfg)
    module = _make_module(cfg, teacher)
    if weights is not None:
        source = cfg.get("init_ckpt") or f"model.pretrained={cfg.model.pretrained}"
        try:
            module.net.load_state_dict(weights)
        except RuntimeError as e:
            raise ValueError(
                f"{source} does not fit this run's network "
                f"(charset {module.charset.name}, {module.charset.num_classes} classes?): {e}"
            ) from None
        log.info("network initialized from %s", source)
    return module


def _make_module(cfg: DictConfig, teacher) -> L.LightningModule:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("pretrained", None)  # the starting weights (init_network), not a setting
    if teacher is None:
        return hydra.utils.instantiate(model, data=data, _recursive_=False)
    from distill.kd.recipe import Recipe
    from distill.lit.distillation import DistillationModule

    student = model
    student.pop("_target_", None)
    recipe = Recipe.from_config(cfg.get("kd"))
    return DistillationModule(teacher=teacher, kd=recipe, data=data, **student)


def native_bf16(accelerator: str) -> bool:
    """bf16 autocast pays only where the hardware computes in bf16: a GPU that supports
    it, or a CPU with avx512_bf16 or AMX (elsewhere it is emulated, about 2x slower)."""
    import torch

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    from distill.core.hardware import has_native_bf16

    return has_native_bf16()


def resolve_precision(precision, accelerator: str = "cpu"):
    """``auto`` -> ``bf16-mixed`` on hardware with native bf16, else ``32-true``; any
    other value is the user's choice and is kept."""
    if str(precision) != "auto":
        return precision
    chosen = "bf16-mixed" if native_bf16(str(accelerator)) else "32-true"
    why = "native bf16" if chosen == "bf16-mixed" else "no native bf16 on this machine"
    log.info("precision=auto: %s (%s; set trainer.precision to force)", chosen, why)
    return chosen


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit a model (optionally resuming), then test the best checkpoint. Returns metrics."""
    L.seed_everything(cfg.seed, workers=True)
    teacher = prepare(cfg)
    datamodule = hydra.utils.instantiate(
        cfg.data,
        teacher_view=getattr(teacher, "view", None),  # raw images for a teacher that reads them
        labels_from_teacher=teacher is not None,
        _convert_="all",
    )
    model = make_module(cfg, teacher)
    clock = WallClock()
    callbacks = [*_instantiate_group(cfg.get("callbacks")), clock]
    loggers = _instantiate_group(cfg.get("logger"))
    if not loggers:  # nothing to write the learning rate to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = make_trainer(cfg.trainer, callbacks=callbacks, logger=loggers)
    if loggers:
        _log_config(trainer, cfg)
    n_params = sum(p.numel() for p in model.net.parameters())
    kind = cfg.model.net.get("backbone") or cfg.model.net.get("arch")
    log.info("model: %s, %.2fM parameters", kind, n_params / 1e6)

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test") and datamodule.test_sources:
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    if not trainer.fast_dev_run:
        from distill.kd.teachers import teacher_source

        summary = {
            "metrics": metrics,
            "best_val_acc": _best_score(trainer),
            "best_checkpoint": best,
            "steps": trainer.global_step,
            "wall_time_s": round(clock.elapsed, 1),  # every resumed part of the run
            "params": n_params,
            "distilled_from": teacher_source(cfg.get("teacher")) if teacher else None,
        }
        _report(trainer, summary, cfg)
    return metrics


def _best_score(trainer: L.Trainer) -> float | None:
    cb = trainer.checkpoint_callback
    score = getattr(cb, "best_model_score", None)
    return float(score) if score is not None else None


def _report(trainer: L.Trainer, summary: dict, cfg: DictConfig) -> None:
    """Tell the user what came out and where it is; keep it in <run>/metrics.json
    (written once per job, by the global rank 0)."""
    if not trainer.is_global_zero:
        return
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
    """Score a checkpoint on each ``data.test`` set; returns {set name: metrics}. The
    global rank 0 prints them as JSON and keeps them, with the checkpoint, dev set and
    protocol they were computed for, in ``<output dir>/eval.json``."""
    from distill.lit.recognizer import RecognizerModule

    ckpt = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.output_dir)
    model = RecognizerModule.from_checkpoint_file(ckpt)
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
    trainer = make_trainer(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    trainer.test(model, datamodule=datamodule, verbose=False)
    if trainer.is_global_zero:
        kept = {
            "ckpt_path": str(cfg.ckpt_path),
            "ckpt": file_identity(ckpt),
            "test": [file_identity(p) for p in cfg.data.test],
            "protocol": model.protocol,
            "results": model.test_results,
        }
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(kept, indent=2) + "\n")
        print(json.dumps(model.test_results, indent=2))
    return model.test_results


def file_identity(path) -> dict:
    """What a cached result was computed from: the path, and the file's (or, for a
    folder such as an LMDB, its files') size and modification time."""
    p = Path(str(path))
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    stats = [f.stat() for f in files if f.exists()]
    return {
        "path": str(p.resolve()),
        "size": sum(s.st_size for s in stats),
        "mtime": max((round(s.st_mtime, 3) for s in stats), default=None),
    }
