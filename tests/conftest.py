import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

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
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
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
