"""The one reader of this framework's checkpoints, without Lightning; and checkpoints
small enough to ship.

    python -m distill.models.checkpoint SRC.ckpt DST.ckpt     # the network only

Every checkpoint made here (teacher, student, distillation, pruned, slimmed) holds its
network's config, charset and preprocessing in ``hyper_parameters`` and the network's
weights under ``net.`` in ``state_dict``: :func:`load_network` rebuilds a network that
reads text exactly as it was trained to, for teachers, ``init_ckpt``, pruning, export and
evaluation alike. A training checkpoint also holds the optimizer's moments, the schedule,
the loop's state and a distillation run's feature adapter: three times the network's
size, none of it needed to read lines or start another run (:func:`slim`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from distill.core.charset import Charset
from distill.core.preprocess import PreprocessConfig
from distill.models.crnn import CRNN, build_model

PREFIX = "net."
KEPT = ("hyper_parameters", "pytorch-lightning_version")


@dataclass
class TrainedNetwork:
    """A network with what it needs to read text: its charset, its preprocessing, the
    metric protocol it was scored with, and the hyper-parameters of the run that made it
    (``net``: its config; ``data``: the data it trained on, when recorded)."""

    net: CRNN
    charset: Charset
    preprocess: PreprocessConfig
    protocol: str = "exact"
    hparams: dict = field(default_factory=dict)
    source: str = ""

    @property
    def net_config(self) -> dict:
        return dict(self.hparams.get("net") or {})


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: torch's errors vary
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a checkpoint of this framework (no hyper-parameters)")
    if "net" not in ckpt["hyper_parameters"]:
        raise ValueError(f"{path}: not a checkpoint of this framework (no network config)")
    return ckpt


def network_weights(ckpt: dict) -> dict[str, torch.Tensor]:
    """The network's weights, without the ``net.`` prefix (a distillation run's feature
    adapter and anything else the module held are left out)."""
    return {k[len(PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}


def load_network(path: str | Path) -> TrainedNetwork:
    """The network of any checkpoint made here, in eval mode, on the CPU."""
    ckpt = read_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    charset = Charset.resolve(hp.get("charset", "ascii"))
    preprocess = PreprocessConfig.from_dict(hp.get("preprocess"))
    net = build_model(charset.num_classes, **dict(hp["net"]))
    try:
        net.load_state_dict(network_weights(ckpt))
    except RuntimeError as e:
        raise ValueError(f"{path}: its weights do not fit its network config: {e}") from None
    return TrainedNetwork(
        net.eval(), charset, preprocess, hp.get("protocol", "exact"), dict(hp), str(path)
    )


def save_network(
    out: str | Path, hparams: dict, net: torch.nn.Module, extra: dict | None = None
) -> Path:
    """A checkpoint :func:`load_network` reads: ``hparams`` and ``net``'s weights."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "hyper_parameters": hparams,
        "state_dict": {PREFIX + k: v for k, v in net.state_dict().items()},
        **(extra or {}),
    }
    torch.save(ckpt, out)
    return out


def slim(src: str | Path, dst: str | Path) -> Path:
    """``src`` with the network's weights and hyper-parameters only."""
    ckpt = read_checkpoint(src)
    out = {k: ckpt[k] for k in KEPT if k in ckpt}
    out["hyper_parameters"] = {
        k: v for k, v in out["hyper_parameters"].items() if k not in ("teacher", "kd")
    }
    out["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, dst)
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m distill.models.checkpoint", description=__doc__)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args(argv)
    try:
        out = slim(args.src, args.dst)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mb = lambda p: p.stat().st_size / 2**20  # noqa: E731
    print(f"{out}: {mb(out):.1f} MB (from {mb(args.src):.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
