import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from distill.config import compose

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PROJECT_ROOT", str(ROOT))

# Tiny models and data: every training test must finish in seconds on 2 cores.
TINY = [
    "charset=digits",
    "preprocess.max_width=128",
    "data.batch_size=8",
    "data.num_workers=0",
    "model.net.hidden=32",
    "model.net.layers=1",
    "logger=[]",
]
TINY_SYNTH = ["data.train.size=32", "data.val.size=8", "data.train.max_chars=6"]
TINY_STUDENT = [
    "model=student",
    "model.net.backbone_args.width=0.5",
    "model.net.backbone_args.conv5_channels=64",
]


def compose_cfg(name: str, overrides: list[str], out_dir: Path) -> DictConfig:
    """Compose a real config from conf/ the way the entry points do."""
    cfg = compose(name, overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.log_dir = str(out_dir)
        cfg.hydra.runtime.output_dir = str(out_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


def write_image(path: Path, text_width: int = 64, value: int = 0) -> None:
    img = np.full((32, text_width, 3), 255, np.uint8)
    img[10:22, 4 : text_width - 4] = value
    cv2.imwrite(str(path), img)


@pytest.fixture
def label_dir(tmp_path) -> Path:
    """A tiny label file with 6 good images rendered by the synthetic renderer."""
    from distill.charset import Charset
    from distill.data.synth import SynthDataset
    from distill.preprocess import PreprocessConfig

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

    from distill.training import make_trainer

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
    from distill.training import build_module

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


def require_fonts(charset: str):
    """The font library, or a skip naming the package to install when no installed face
    covers the charset (a machine without CJK fonts skips the Chinese rendering tests)."""
    from distill.charset import Charset
    from distill.data.fonts import FontLibrary, missing_font_message

    lib = FontLibrary()
    if not lib.coverage_of("".join(Charset.resolve(charset).chars), 0.99):
        pytest.skip(missing_font_message(charset, lib.dirs))
    return lib
