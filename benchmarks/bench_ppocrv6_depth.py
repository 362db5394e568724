"""Which parts of PP-OCRv6's MetaFormer blocks can go: the depth cut, measured before
any recovery training.

    python -m benchmarks.bench_ppocrv6_depth [--set LABELFILE:PROTOCOL ...] [--limit N]

The stock network, its head sliced to ASCII (the same readings wherever the full head's
choice is ASCII), reads each dev set as the predictor does (height 48, BGR, each line at
its own width, masked in batches of 16). Then, in every block whose input and output have
the same shape, two cuts are measured on their own (accuracy and multiply-adds): the whole
block removed, and only its channel mixer (1x1 expand / GELU / 1x1 compress, the branch
the residual goes around) removed, the depthwise token mixer kept. Last, the cut of the
two that costs least is made cumulatively, least harmful block first (ranked by the mean
accuracy lost over the sets), to show how fast accuracy falls with depth when nothing is
retrained. Recovery by distillation is the next step; this table says where to cut.

Writes benchmarks/results/ppocrv6_depth[_NAME].{json,md}.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from torch import nn

from benchmarks.bench_ppocrv6_import import decode
from benchmarks.labelsets import load_labelled
from benchmarks.results_io import write_results
from distill.core.charset import Charset
from distill.core.metrics import score, split_protocol
from distill.core.preprocess import PreprocessConfig, pad_batch, preprocess, valid_frames
from distill.models.ppocrv6_import import import_ppocrv6
from distill.pruning.measure import count_macs

DEFAULT_SETS = [
    "../shared/devsets/iiit5k_300/labels.tsv:scene",
    "../shared/devsets/sroie_500/labels.tsv:caseless",
]
PREPROCESS = PreprocessConfig(height=48, channels=3, max_width=1200, channel_order="bgr")
BATCH = 16


def without_blocks(net: nn.Module, drop: list[int]) -> nn.Module:
    """A copy of ``net`` whose backbone skips the blocks ``drop`` (residual ones only)."""
    cut = copy.deepcopy(net)
    blocks = cut.backbone.blocks
    cut.backbone.blocks = nn.ModuleList(b for i, b in enumerate(blocks) if i not in drop)
    return cut


class TokenMixerOnly(nn.Module):
    """A MetaFormer block without its channel mixer: its token mixer alone."""

    residual = True

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.block.token_mixer(x, mask)


def without_mixers(net: nn.Module, drop: list[int]) -> nn.Module:
    """A copy of ``net`` whose blocks ``drop`` keep their token mixer only."""
    cut = copy.deepcopy(net)
    for i in drop:
        cut.backbone.blocks[i] = TokenMixerOnly(cut.backbone.blocks[i])
    return cut


CUTS = {"block": without_blocks, "channel mixer": without_mixers}


def read(net: nn.Module, arrays: list[np.ndarray], chars: list[str]) -> list[str]:
    """Readings in the predictor's way: sorted by width, batches of 16, padding masked."""
    order = np.argsort([a.shape[2] for a in arrays], kind="stable")
    texts: list[str] = [""] * len(arrays)
    with torch.no_grad():
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            x, widths = pad_batch([arrays[j] for j in idx], 8)
            logits = net(torch.from_numpy(x), torch.from_numpy(widths))[0]
            probs = logits.float().softmax(-1).numpy()
            frames = np.minimum(valid_frames(widths, 8), probs.shape[1])
            for j, text in zip(idx, decode(probs, frames, chars)):
                texts[j] = text
    return texts


def measure(net, sets, chars) -> dict:
    accs = {}
    for name, (arrays, labels, protocol) in sets.items():
        accs[name] = score(read(net, arrays, chars), labels, protocol)["acc"]
    return {"acc": accs, "macs": count_macs(net, 48, 3, width=320)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--set", action="append", help="LABELFILE:PROTOCOL (repeatable)")
    ap.add_argument("--limit", type=int, default=0, help="the first N lines of each set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    charset = Charset.resolve("ascii")
    net, _, _ = import_ppocrv6(charset=charset)
    net.eval()
    chars = list(charset.chars)
    sets = {}
    for spec in args.set or DEFAULT_SETS:
        path, protocol = split_protocol(spec)
        _, images, labels = load_labelled(path, args.limit)
        arrays = [preprocess(im, PREPROCESS) for im in images]
        sets[path.split("/")[-2]] = (arrays, labels, protocol)
    print(f"sets: {', '.join(f'{k} ({len(v[1])} lines)' for k, v in sets.items())}")

    base = measure(net, sets, chars)
    print(f"full network: {base}")
    residual = [i for i, b in enumerate(net.backbone.blocks) if b.residual]
    single = []
    for kind, cut in CUTS.items():
        for i in residual:
            m = measure(cut(net, [i]), sets, chars)
            m.update(kind=kind, block=i)
            m["lost"] = float(np.mean([base["acc"][k] - m["acc"][k] for k in sets]))
            single.append(m)
            print(f"{kind} {i} removed: {m['acc']}, {m['macs'] / 1e6:.0f}M MACs", flush=True)
    best = min(CUTS, key=lambda k: np.mean([m["lost"] for m in single if m["kind"] == k]))
    ranked = [m["block"] for m in sorted(single, key=lambda m: m["lost"]) if m["kind"] == best]
    cumulative = []
    for k in range(2, len(ranked) + 1):
        drop = sorted(ranked[:k])
        m = measure(CUTS[best](net, drop), sets, chars)
        m.update(kind=best, blocks=drop)
        cumulative.append(m)
        print(f"{best}s {drop} removed: {m['acc']}, {m['macs'] / 1e6:.0f}M MACs", flush=True)
        if all(m["acc"][s] < 0.05 for s in sets):
            break  # nothing left to read; deeper cuts only repeat it

    names = list(sets)
    head = "| cut | MMACs (48 x 320) | x MACs | " + " | ".join(names) + " |"
    rule = "|---" * (3 + len(names)) + "|"

    def row(label, m):
        cells = " | ".join(f"{100 * m['acc'][s]:.1f}%" for s in names)
        return f"| {label} | {m['macs'] / 1e6:.0f} | {m['macs'] / base['macs']:.2f} | {cells} |"

    counts = ", ".join(f"{s}: {len(sets[s][1])} lines" for s in names)
    md = [
        "# PP-OCRv6: removing MetaFormer blocks, no retraining",
        "",
        f"`python -m benchmarks.bench_ppocrv6_depth` (ASCII head; lines at their own width,"
        f" masked in batches of {BATCH}; {counts}).",
        "",
        "Each cut on its own (blocks numbered from 0, the stem not counted):",
        "",
        head,
        rule,
        row("none (stock)", base),
        *[row(f"{m['kind']} {m['block']} removed", m) for m in single],
        "",
        f"The {best} cut in several blocks at once, least harmful first:",
        "",
        head,
        rule,
        *[row(f"{best}s " + ", ".join(map(str, m["blocks"])), m) for m in cumulative],
    ]
    report = {"base": base, "single": single, "cumulative": cumulative, "sets": names, "best": best}
    write_results("ppocrv6_depth" + (f"_{args.name}" if args.name else ""), report, "\n".join(md))


if __name__ == "__main__":
    main()
