"""Does the choice of channels matter? One group of a checkpoint pruned alone at each
ratio, its channels chosen by L1 norm, by Taylor importance and at random, read without
recovery on the same validation lines as prune.py reads them:

    python -m benchmarks.bench_prune_criteria --ckpt logs/cuts/ascii_h48.ckpt \\
        --group backbone.blocks.12.expand --ratios 0.1 0.25 \\
        --val data/generated/real/sroie_lines/val.tsv data/generated/real/scene_words/val.tsv

Writes benchmarks/results/prune_criteria_NAME.{json,md}.
"""

from __future__ import annotations

import argparse

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from benchmarks.results_io import write_results
from distill.data.datamodule import validation_set
from distill.models.checkpoint import load_network
from distill.pruning.measure import validation_sample
from distill.pruning.plan import channel_scores, group_label, pruned_copy


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--group", action="append", required=True, help="a group's name (repeat)")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.25])
    ap.add_argument("--val", nargs="+", required=True, help="validation label files")
    ap.add_argument("--eval-samples", type=int, default=200)
    ap.add_argument("--importance-samples", type=int, default=256)
    ap.add_argument("--seed", type=int, default=12345, help="prune.py's seed: the same lines")
    ap.add_argument("--name", default="ppocrv6")
    args = ap.parse_args(argv)

    trained = load_network(args.ckpt)
    with initialize_config_module("distill.conf", version_base="1.3"):  # as prune.py reads it
        cfg = compose("prune", ["ckpt=-", "data=labelfile", f"data.val=[{','.join(args.val)}]"])
    data = OmegaConf.to_container(cfg.data, resolve=True)
    ds = validation_set(data, trained.charset, trained.preprocess, "bench_prune_criteria")
    evaluate, grads = validation_sample(ds, args.seed, args.eval_samples, args.importance_samples)
    shape = (trained.preprocess.height, trained.preprocess.channels)
    net, charset, protocol = trained.net, trained.charset, trained.protocol

    base = evaluate.accuracy(net, charset, protocol)["acc"]
    by = {
        "l1": channel_scores(net, shape),
        "taylor": channel_scores(net, shape, importance="taylor", batches=grads, charset=charset),
    }
    rng = torch.Generator().manual_seed(0)
    by["random"] = {g: torch.rand(len(s), generator=rng) for g, s in by["l1"].items()}
    rows = []
    for group in args.group:
        if group not in by["l1"]:
            raise SystemExit(f"{args.ckpt} has no group {group!r}; its groups: {sorted(by['l1'])}")
        for ratio in args.ratios:
            row = {"group": group, "ratio": ratio}
            for criterion, scores in by.items():
                pruned = pruned_copy(net, {group: ratio}, shape, scores=scores)
                row[criterion] = evaluate.accuracy(pruned, charset, protocol)["acc"]
                print(f"{group} {ratio:g} {criterion}: {row[criterion]:.3f}", flush=True)
            rows.append(row)

    lines = ["| group | removed | L1 | Taylor | random |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {group_label(r['group'])} | {r['ratio']:.0%} | {100 * r['l1']:.1f}% "
            f"| {100 * r['taylor']:.1f}% | {100 * r['random']:.1f}% |"
        )
    md = (
        f"# Which channels go: {args.ckpt}\n\n"
        f"Each group pruned alone, no recovery; accuracy ({protocol}) on {evaluate.n} "
        f"validation lines of {ds.name} (unpruned: {100 * base:.1f}%); Taylor importance "
        f"from the network's own reading of {grads.n} others.\n\n" + "\n".join(lines) + "\n"
    )
    write_results(
        f"prune_criteria_{args.name}", {"ckpt": args.ckpt, "base": base, "rows": rows}, md
    )


if __name__ == "__main__":
    main()
