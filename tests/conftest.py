"""Fixtures shared by the test modules (helpers without a fixture live in helpers.py)."""

from pathlib import Path

import cv2
import pytest

from .helpers import TINY, TINY_STUDENT, TINY_SYNTH, compose_cfg


@pytest.fixture
def label_dir(tmp_path) -> Path:
    """A tiny label file with 6 good images rendered by the synthetic renderer."""
    from distill.core.charset import Charset
    from distill.core.preprocess import PreprocessConfig
    from distill.data.synth import SynthDataset

    ds = SynthDataset(
        Charset.resolve("digits"),
        PreprocessConfig(),
        size=6,
        seed=3,
        deterministic=True,
        max_chars=5,
    )
    (tmp_path / "img").mkdir()
    lines = []
    for i in range(len(ds)):
        cv2.imwrite(str(tmp_path / f"img/{i}.png"), ds.render(i)[:, :, ::-1])
        lines.append(f"img/{i}.png\t{ds.texts[i]}")
    (tmp_path / "gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


@pytest.fixture(scope="session")
def memorized_student(tmp_path_factory) -> dict:
    """A tiny student trained until it memorized one batch of 8 synthetic digit lines:
    a model with clear, varied readings, as tests of INT8 agreement need (an untrained
    one reads every line alike). Returns the model (eval mode), the batch and the loss
    before training."""
    import hydra
    import lightning as L
    import torch

    from distill.lit.train import make_trainer

    cfg = compose_cfg(
        "train",
        [
            "debug=overfit",
            *TINY,
            *TINY_SYNTH,
            *TINY_STUDENT,
            "data.train.size=8",
            "data.train.deterministic=true",
            "trainer.overfit_batches=1",
            "trainer.max_steps=250",
            "model.optimizer.lr=3e-3",
            "model.net.hidden=64",
            "callbacks=none",
            "test=false",
        ],
        tmp_path_factory.mktemp("overfit"),
    )
    L.seed_everything(cfg.seed)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    from distill.lit.train import build_module

    model = build_module(cfg)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    model.eval()
    with torch.no_grad():
        loss_before = model.loss(model.student_outputs(batch), None, batch)["loss"].item()
    model.train()  # Lightning keeps the train/eval mode it is handed
    trainer = make_trainer(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    return {"model": model.eval(), "batch": batch, "loss_before": loss_before}
