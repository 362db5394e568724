"""Sensitivity analysis and pruning plans (per-group ratios) that meet a target.

- :func:`sensitivity`: each group pruned alone (least important first) at each ratio, the
  validation accuracy without fine-tuning; the table says which groups can lose channels.
- :func:`plan_by_sensitivity`: one accuracy-drop budget ``t`` for every group (each gets the
  largest tested ratio whose drop alone is <= t), ``t`` bisected until the pruned network
  meets the target: the least sensitive groups lose the most (PaddleSlim's recipe).
- :func:`plan_global`: one importance threshold for all groups (scores normalized by each
  group's mean), bisected to meet the target: the baseline, and the step of a gradual
  schedule (prune a little, recover, score again).

Every function takes ``scores`` (:func:`channel_scores`: group name -> one importance per
channel, computed once on the unpruned network); without them channels go by L1 norm.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from torch import nn

from distill.models.resize import sync_out_channels
from distill.pruning.graph import IMPORTANCES, PruningGraph
from distill.pruning.measure import Batches, count_macs, count_params, torch_latency_ms

log = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
METRICS = ("params", "macs", "latency")


def _progress(iterable, total: int, description: str):
    try:
        from rich.progress import track

        return track(iterable, total=total, description=description, transient=True)
    except ImportError:  # pragma: no cover - rich comes with the train extra
        return iterable


def channel_scores(
    net: nn.Module,
    shape: tuple[int, int],
    skip=(),
    importance: str = "l1",
    batches: Batches | None = None,
    charset=None,
) -> dict[str, torch.Tensor]:
    """Group name -> each channel's importance. ``taylor`` first back-propagates the CTC
    loss of the network's own greedy reading of ``batches`` (no labels: what is kept is
    the function, and the labels' letter case may differ from the network's)."""
    if importance not in IMPORTANCES:
        raise ValueError(f"importance must be one of {IMPORTANCES}, got {importance!r}")
    net = copy.deepcopy(net)
    if importance == "taylor":
        if batches is None or charset is None:
            raise ValueError("taylor importance needs lines to read (batches) and the charset")
        batches.reading_gradients(net, charset)
    graph = PruningGraph(net, *shape, skip=skip)
    return {name: graph.scores(name, importance=importance) for name in graph.groups}


def apply_plan(
    net: nn.Module,
    plan: dict[str, float],
    shape: tuple[int, int],
    skip=(),
    round_to: int = 1,
    scores: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Prune ``net`` in place: group name -> ratio of its channels to remove."""
    graph = PruningGraph(net, *shape, skip=skip, round_to=round_to)
    unknown = sorted(set(plan) - set(graph.groups))
    if unknown:
        raise ValueError(
            f"the plan names groups this network does not have (or skips): {unknown}; "
            f"its groups: {sorted(graph.groups)}"
        )
    for name, ratio in plan.items():
        if ratio > 0:
            graph.prune(name, ratio, None if scores is None else scores[name])
    return sync_out_channels(net)


def pruned_copy(
    net: nn.Module, plan: dict[str, float], shape, skip=(), round_to: int = 1, scores=None
):
    return apply_plan(copy.deepcopy(net), plan, shape, skip, round_to, scores)


def sensitivity(
    net: nn.Module,
    batches: Batches,
    charset,
    protocol: str,
    shape: tuple[int, int],
    ratios=DEFAULT_RATIOS,
    skip=(),
    round_to: int = 1,
    scores: dict[str, torch.Tensor] | None = None,
) -> dict:
    """Accuracy of ``net`` with each group pruned alone at each ratio (no fine-tuning)."""
    base = batches.accuracy(net, charset, protocol)["acc"]
    groups = PruningGraph(copy.deepcopy(net), *shape, skip=skip).groups
    table = {
        "base_acc": base,
        "samples": batches.n,
        "ratios": list(ratios),
        "skip": list(skip),
        "round_to": round_to,
    }
    table["groups"] = {}
    trials = [(name, r) for name in groups for r in ratios]
    for name, ratio in _progress(trials, len(trials), "sensitivity"):
        pruned = pruned_copy(net, {name: ratio}, shape, skip, round_to, scores)
        acc = batches.accuracy(pruned, charset, protocol)["acc"]
        entry = table["groups"].setdefault(
            name, {"channels": groups[name].channels, "members": groups[name].members, "acc": {}}
        )
        entry["acc"][f"{ratio:g}"] = acc
    for name, entry in table["groups"].items():
        worst = min(entry["acc"].values())
        log.info("%-36s %4d ch   acc %.3f .. %.3f", name, entry["channels"], base, worst)
    return table


def _ppocrv6_stage(block: int) -> int:
    from distill.models.ppocrv6 import SMALL

    ends = [len(stage) for stage in SMALL["stages"]]
    for stage in range(len(ends)):
        if block < sum(ends[: stage + 1]):
            return stage
    return len(ends) - 1


def group_label(name: str) -> str:
    """A short name for a group of the ShuffleNetV2 student or of PP-OCRv6 (others keep
    their name). PP-OCRv6's stream groups are named by a stage's last compression; the
    96-channel one runs from the stem through stages 0 and 1."""
    parts = name.split(".")
    if parts[:2] == ["backbone", "blocks"] and len(parts) >= 4:
        block = int(parts[2])
        if parts[3] == "expand":
            return f"block{block} hidden"
        if parts[3:5] == ["se", "reduce"]:
            return f"block{block} SE"
        if parts[3] == "compress":
            stage = _ppocrv6_stage(block)
            return "stages 0-1 stream" if stage <= 1 else f"stage{stage} stream"
    if parts[:2] == ["backbone", "body"] and len(parts) >= 4:
        stage = int(parts[2])
        if parts[3:] == ["0"] and stage == 5:
            return "conv5 (LSTM input)"
        if stage == 0:
            return "stem conv"
        if 2 <= stage <= 4 and len(parts) >= 5:
            return f"stage{stage} unit{parts[3]} {parts[4]}"
    return name


def plot_sensitivity(table: dict, path) -> None:
    """Accuracy against ratio, one line per group (the most sensitive labelled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    ratios = table["ratios"]
    colours = plt.get_cmap("tab20").colors
    for i, (name, entry) in enumerate(table["groups"].items()):
        accs = [100 * entry["acc"][f"{r:g}"] for r in ratios]
        ax.plot(
            [0, *ratios],
            [100 * table["base_acc"], *accs],
            marker="o^sv"[i // 10 % 4],
            ms=3,
            lw=1,
            ls=("-", "--", ":")[i // 20 % 3],
            color=colours[i % 20],
            label=group_label(name),
        )
    how = table.get("importance", "l1")
    ax.set_xlabel(f"share of the group's channels removed (least {how} first, no fine-tuning)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"Pruning sensitivity ({table['samples']} validation lines)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class Target:
    """``keep`` x the original's value of ``metric`` (params, macs or latency)."""

    def __init__(self, metric: str, keep: float, shape: tuple[int, int]):
        if metric not in METRICS:
            raise ValueError(f"target.metric must be one of {METRICS}, got {metric!r}")
        if not 0 < keep < 1:
            raise ValueError(f"target.keep is the share to keep, in (0, 1); got {keep}")
        self.metric, self.keep, self.shape = metric, keep, shape

    def measure(self, net: nn.Module) -> float:
        if self.metric == "params":
            return count_params(net)
        if self.metric == "macs":
            return count_macs(net, *self.shape)
        return torch_latency_ms(net, *self.shape)

    def __repr__(self) -> str:
        return f"{self.metric} <= {self.keep:g} x original"


def _bisect(
    make_plan: Callable[[float], dict], lo, hi, net, target: Target, skip, round_to, scores
):
    """The smallest knob in [lo, hi] whose plan meets the target (plans grow with it)."""
    goal = target.keep * target.measure(net)
    shape = target.shape
    best_plan = make_plan(hi)
    value = target.measure(pruned_copy(net, best_plan, shape, skip, round_to, scores))
    if value > goal:
        raise ValueError(
            f"the target {target} cannot be met: pruning every group as far as allowed "
            f"leaves {value / (goal / target.keep):.3f} of the original {target.metric}; "
            "allow larger ratios or lower the target"
        )
    for _ in range(16):
        mid = (lo + hi) / 2
        plan = make_plan(mid)
        if target.measure(pruned_copy(net, plan, shape, skip, round_to, scores)) <= goal:
            hi, best_plan = mid, plan
        else:
            lo = mid
    return best_plan, hi


def _largest_ratio(ratios: list[float], drops: list[float], budget: float) -> float:
    """The largest ratio whose accuracy drop stays within ``budget``, reading the drop
    curve (from 0 at ratio 0, made non-decreasing) linearly between the tested ratios."""
    points = [(0.0, 0.0)]
    for r, d in zip(ratios, drops):
        points.append((r, max(d, points[-1][1])))
    best = 0.0
    for (r0, d0), (r1, d1) in zip(points, points[1:]):
        if d1 <= budget:
            best = r1
            continue
        if d0 <= budget:  # the budget runs out inside this segment
            best = r0 + (r1 - r0) * (budget - d0) / (d1 - d0)
        break
    return best


def plan_by_sensitivity(
    table: dict, net: nn.Module, target: Target, skip=(), round_to: int = 1, scores=None
) -> tuple[dict, float]:
    """Per-group ratios from the sensitivity table; returns (plan, accuracy-drop budget)."""
    base = table["base_acc"]
    ratios = sorted(table["ratios"])

    def make_plan(budget: float) -> dict:
        return {
            name: _largest_ratio(ratios, [base - entry["acc"][f"{r:g}"] for r in ratios], budget)
            for name, entry in table["groups"].items()
        }

    worst = max(base - a for e in table["groups"].values() for a in e["acc"].values())
    budget = max(worst, 0.0) + 1e-6
    return _bisect(make_plan, 0.0, budget, net, target, skip, round_to, scores)


def plan_global(
    net: nn.Module,
    target: Target,
    skip=(),
    max_ratio: float = 0.8,
    round_to: int = 1,
    scores: dict[str, torch.Tensor] | None = None,
) -> tuple[dict, float]:
    """One threshold on the importance, each group's scores divided by their mean (L1
    norm without ``scores``); returns (plan, quantile)."""
    if scores is None:
        scores = channel_scores(net, target.shape, skip)
    normalized = {name: s / s.mean().clamp_min(1e-12) for name, s in scores.items()}
    everything = torch.cat(list(normalized.values()))

    def make_plan(q: float) -> dict:
        threshold = torch.quantile(everything, q)
        return {
            name: min(max_ratio, float((s < threshold).float().mean()))
            for name, s in normalized.items()
        }

    return _bisect(make_plan, 0.0, 1.0, net, target, skip, round_to, scores)
