"""Checkpoints small enough to ship: the network's weights and what rebuilds it.

    python -m distill.checkpoint SRC.ckpt DST.ckpt

A training checkpoint also holds the optimizer's moments, the schedule, the loop's state
and a distillation run's feature adapter: three times the network's size, none of it
needed to read lines, evaluate, export or start another run (``init_ckpt=DST``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

KEPT = ("hyper_parameters", "pytorch-lightning_version")


def slim(src: str | Path, dst: str | Path) -> Path:
    """``src`` with the network's weights and hyper-parameters only."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{src}: not a checkpoint of this framework (no hyper-parameters)")
    out = {k: ckpt[k] for k in KEPT if k in ckpt}
    out["hyper_parameters"] = {
        k: v for k, v in out["hyper_parameters"].items() if k not in ("teacher", "kd")
    }
    out["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, dst)
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m distill.checkpoint", description=__doc__)
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
