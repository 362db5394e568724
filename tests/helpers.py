"""What the tests share: the project root, tiny configs, composed configs, small images,
tiny checkpoints, and the skips for a machine that lacks something (fonts)."""

import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import nn

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


# two tiny networks of the two families: the ResNet34 teacher and the ShuffleNetV2 student
NETS = {
    "teacher": {"backbone": "resnet34", "hidden": 32, "layers": 1},
    "student": {
        "backbone": "shufflenet_v2",
        "hidden": 32,
        "layers": 2,
        "backbone_args": {"width": 0.5, "conv5_channels": 64},
    },
}


def make_ckpt(path, net, charset="ascii", channels=1, max_width=256):
    """A checkpoint of an untrained recognizer, as training writes them."""
    from distill.lit.recognizer import RecognizerModule

    torch.manual_seed(0)
    module = RecognizerModule(
        net=net, charset=charset, preprocess={"channels": channels, "max_width": max_width}
    )
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def recipe_loss(name: str, overrides=(), teacher_channels=None, reads_batch=True):
    """The loss of recipe ``kd=NAME`` composed from its yaml, bound to stand-ins of a
    student (a backbone of 4 channels) and of a teacher (its feature channels; whether
    it reads the student's batch, which makes ``align: auto`` strict)."""
    from types import SimpleNamespace

    from distill.kd.recipe import Recipe

    cfg = compose("train", [f"kd={name}", *overrides])
    loss = Recipe.from_config(cfg.kd).build_loss()
    student = SimpleNamespace(backbone=SimpleNamespace(out_channels=4))
    teacher = SimpleNamespace(
        feat_channels=teacher_channels,
        preprocess=object() if reads_batch else None,
        source="a stand-in teacher",
    )
    loss.bind(student, teacher)
    return loss


# a teacher dictionary unlike the student's digits: letters, CJK, a full-width digit
# and comma, and a duplicate; the space class comes after it
TEACHER_CHARS = list("0123456789abc") + ["中", "文", "１", "，", "5"]


class TinyRecognizer(nn.Module):
    """A PaddleOCR-shaped CTC recognizer: [N, 3, 24, W] -> softmax [N, W / 6, classes]."""

    def __init__(self, classes: int, rate: int = 6, height: int = 24, fixed_frames=None):
        super().__init__()
        self.conv = nn.Conv2d(3, classes, kernel_size=(height, rate), stride=(height, rate))
        self.fixed = fixed_frames

    def forward(self, x):
        y = self.conv(x)[:, :, 0]  # [N, classes, T]
        if self.fixed:  # not a CTC model: as many frames whatever the width
            y = y.mean(-1, keepdim=True).repeat(1, 1, self.fixed)
        return y.permute(0, 2, 1).softmax(-1)


def export_tiny(path: Path, classes: int, chars=TEACHER_CHARS, **kw) -> Path:
    """A tiny PaddleOCR-style ONNX teacher with its dictionary in the metadata."""
    torch.manual_seed(0)
    model = TinyRecognizer(classes, **kw).eval()
    torch.onnx.export(
        model,
        (torch.randn(2, 3, 24, 96),),
        str(path),
        input_names=["x"],
        output_names=["probs"],
        dynamic_axes={"x": {0: "N", 3: "W"}, "probs": {0: "N", 1: "T"}},
        opset_version=17,
        dynamo=False,
    )
    m = onnx.load(str(path))
    entry = m.metadata_props.add()
    entry.key, entry.value = "character", "\n".join(chars)
    onnx.save(m, str(path))
    return path


def with_random_statistics(model):
    """Non-trivial BatchNorm statistics, as after training (fresh ones hide leaks)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) * 2 - 1)
    return model.eval()


def require_fonts(charset: str):
    """The font library, or a skip naming the package to install when no installed face
    covers the charset (a machine without CJK fonts skips the Chinese rendering tests)."""
    from distill.core.charset import Charset
    from distill.data.fonts import FontLibrary, missing_font_message

    lib = FontLibrary()
    if not lib.coverage_of("".join(Charset.resolve(charset).chars), 0.99):
        pytest.skip(missing_font_message(charset, lib.dirs))
    return lib
