"""Which channels of a recognizer can be removed together: Torch-Pruning's DepGraph.

DepGraph traces the network once and groups every layer whose channels must shrink
together (a convolution's outputs, its BatchNorm, the depthwise convolution that reads
them, the next convolution's inputs, the LSTM's input width). Two things of ours are
made explicit to it:

- ShuffleNetV2's channel shuffle interleaves the two halves of every unit's output, so
  the channels that pass between units are coupled across the whole stage through a
  permutation. While tracing, each :class:`ChannelShuffle` runs as one opaque operation
  and is declared a layer that must not be pruned: every group that crosses a shuffle is
  then left whole, and the groups inside the units (their branch widths), the stem and
  the last 1x1 convolution (the LSTM's input width) stay prunable.
- The LSTM's input width is pruned exactly (the columns of both directions' input
  weights); its hidden width is not touched.

PP-OCRv6's recognizer needs nothing declared: DepGraph couples each stage's residual
stream (the stem's or the first block's output, every depthwise convolution, squeeze-
excite and compression of the stage, and the next stage's or the neck's inputs), and
leaves each block's hidden width (expand -> compress) and squeeze-excite width a group of
its own. A network names the modules whose widths stay (``unprunable``: PP-OCRv6's neck,
whose 120 channels are split into attention heads and normalized together).

Which channels of a group go is decided by an importance: the L1 norm of their weights,
or Taylor's first-order estimate of the loss change (|weight x gradient| summed over the
group; the caller puts the gradients on the network first, :func:`channel_scores` in
plan.py). PP-OCRv6's convolutions carry their BatchNorm folded in, so weight norms are
on scales that differ from group to group: a one-shot cut to 80% of its multiply-adds
reads 3.7% by L1 norm and 47.7% by Taylor (docs/pruning.md).
"""

from __future__ import annotations

import contextlib
import fnmatch
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from distill.models.backbones import ChannelShuffle


class _OpaqueShuffle(torch.autograd.Function):
    """The shuffle as one autograd node: DepGraph sees an input and an output, no reshapes."""

    @staticmethod
    def forward(ctx, x, groups):
        ctx.groups = groups
        b, c, h, w = x.shape
        return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)

    @staticmethod
    def backward(ctx, grad):
        b, c, h, w = grad.shape
        g = ctx.groups
        return grad.view(b, c // g, g, h, w).transpose(1, 2).reshape(b, c, h, w), None


@contextlib.contextmanager
def opaque_shuffles():
    """Run every ChannelShuffle as :class:`_OpaqueShuffle` (for tracing only)."""
    original = ChannelShuffle.forward

    def forward(self, *parts):
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        self.traced_channels = x.shape[1]  # DepGraph asks for it to size the next split
        return _OpaqueShuffle.apply(x, self.groups)

    ChannelShuffle.forward = forward
    try:
        yield
    finally:
        ChannelShuffle.forward = original


class _ShufflePruner(tp.pruner.function.BasePruningFunc):
    """Declares a shuffle to DepGraph; in and out are one dependency, and the shuffle is
    always an ignored layer, so a group that contains it is never pruned."""

    def prune_out_channels(self, layer, idxs):
        raise RuntimeError("a channel shuffle is never pruned")

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer):
        return layer.traced_channels

    get_in_channels = get_out_channels


class _LSTMInputPruner(tp.pruner.function.LSTMPruner):
    """Only the input width of the first layer (both directions); never the hidden width."""

    def prune_out_channels(self, layer, idxs):
        raise RuntimeError("the LSTM's hidden width is not pruned")

    def get_out_channels(self, layer):
        return None


IMPORTANCES = ("l1", "taylor")


def _under(name: str, pattern: str) -> bool:
    """``name`` is the module ``pattern`` names or inside it; ``*`` matches any part of a
    name (``backbone.blocks.*.compress``)."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


def is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels


@dataclass
class Group:
    """One set of channels that shrink together, named by its first 1x1/full convolution."""

    name: str
    channels: int
    members: list[str] = field(default_factory=list)


class PruningGraph:
    """DepGraph of one network (a :class:`~distill.models.crnn.CRNN`), and its groups.

    ``skip``: module names whose output channels are kept (and the modules inside them;
    ``*`` matches any part of a name), e.g. the stem convolution next to the input; a
    name that matches no module is an error. The CTC head, the shuffles and the
    network's ``unprunable`` modules are always kept.
    ``round_to``: a pruned group keeps a multiple of this many channels.
    """

    def __init__(
        self,
        net: nn.Module,
        height: int,
        in_channels: int,
        skip=(),
        round_to: int = 1,
        width: int = 128,
    ):
        self.net = net
        self.names = {m: n for n, m in net.named_modules()}
        unknown = [s for s in skip if not any(_under(n, s) for n in self.names.values() if n)]
        if unknown:
            tops = ", ".join(n for n, _ in net.named_children())
            raise ValueError(
                f"skip names modules this network does not have: {unknown} (its modules: "
                f"{tops}; nested ones by dotted path, e.g. backbone.blocks.0)"
            )
        example = torch.zeros(1, in_channels, height, width)
        was_training = net.training
        net.eval()
        with opaque_shuffles():
            self.dg = tp.DependencyGraph().build_dependency(
                net,
                example_inputs=example,
                forward_fn=lambda m, x: m(x)[0],
                customized_pruners={ChannelShuffle: _ShufflePruner(), nn.LSTM: _LSTMInputPruner()},
                verbose=False,
            )
        net.train(was_training)
        self.skip = tuple(skip) + tuple(getattr(net, "unprunable", ()))
        self.round_to = round_to
        ignored = [m for m in net.modules() if isinstance(m, ChannelShuffle)]
        ignored += [m for n, m in net.named_modules() if n and self._skipped(n)]
        ignored.append(net.head)
        self.groups: dict[str, Group] = {}
        self._roots: dict[str, nn.Module] = {}
        for group in self.dg.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
            outs = [
                dep.target.module
                for dep, _ in group
                if isinstance(dep.target.module, nn.Conv2d)
                and self.dg.is_out_channel_pruning_fn(dep.handler)
            ]
            roots = [m for m in outs if not is_depthwise(m)]
            if not roots:
                continue
            root = roots[0]
            name = self.names[root]
            if name in self.groups:
                continue
            members = sorted(
                {
                    self.names[dep.target.module]
                    for dep, _ in group
                    if dep.target.module in self.names
                }
            )
            self.groups[name] = Group(name, root.out_channels, members)
            self._roots[name] = root

    def _skipped(self, name: str) -> bool:
        return any(_under(name, s) for s in self.skip)

    def scores(self, name: str, importance: str = "l1") -> torch.Tensor:
        """Each channel's importance over the whole group (mean over its layers): ``l1``
        the L1 norm of its weights, ``taylor`` |weight x gradient| (the gradients must be
        on the network)."""
        root = self._roots[name]
        group = self.dg.get_pruning_group(
            root, tp.prune_conv_out_channels, list(range(root.out_channels))
        )
        if importance == "l1":
            scorer = tp.importance.GroupMagnitudeImportance(
                p=1, group_reduction="mean", normalizer=None
            )
        elif importance == "taylor":
            if root.weight.grad is None:
                raise ValueError(f"taylor importance of {name}: the network has no gradients")
            scorer = tp.importance.GroupTaylorImportance(group_reduction="mean", normalizer=None)
        else:
            raise ValueError(f"importance must be one of {IMPORTANCES}, got {importance!r}")
        return scorer(group).detach()

    def prune(self, name: str, ratio: float, scores: torch.Tensor | None = None) -> int:
        """Remove ``ratio`` of group ``name``'s channels, the least important first (by
        ``scores``, one per channel; default their L1 norm), keeping a multiple of
        ``round_to``. Returns how many were removed (one channel at least is always kept)."""
        root = self._roots[name]
        n = root.out_channels
        keep = n - int(n * ratio)
        round_to = self.round_to
        if round_to > 1:  # kernels run best on channel counts that are multiples of 4/8/16
            keep = min(n, -(-keep // round_to) * round_to)
        remove = n - max(1, keep)
        if remove <= 0:
            return 0
        if scores is None:
            scores = self.scores(name)
        if len(scores) != n:
            raise ValueError(f"{name}: {len(scores)} scores for {n} channels")
        idxs = torch.argsort(scores)[:remove].tolist()
        group = self.dg.get_pruning_group(root, tp.prune_conv_out_channels, idxs)
        if not self.dg.check_pruning_group(group):
            return 0
        group.prune()
        self.groups[name].channels = root.out_channels
        return remove
