"""Rebuild a pruned network from its config: the config plus the shapes that changed.

A pruned checkpoint keeps the network config it was trained with and adds
``net.pruned_shapes``: ``{parameter or buffer name: shape}`` for every tensor whose shape
differs from the unpruned build. :func:`apply_shapes` resizes a freshly built network to
those shapes (empty tensors, then ``load_state_dict`` fills them), so every place that
loads a checkpoint (eval, export, resume, a teacher) rebuilds a pruned network without
knowing it was pruned, and without the pruning library.
"""

from __future__ import annotations

import torch
from torch import nn


def changed_shapes(net: nn.Module, reference: nn.Module) -> dict[str, list[int]]:
    """The tensors of ``net`` whose shape differs from ``reference`` (the unpruned build)."""
    ref = reference.state_dict()
    out = {}
    for name, tensor in net.state_dict().items():
        if name not in ref:
            raise ValueError(f"{name}: not in the unpruned network; only channel counts may change")
        if tuple(tensor.shape) != tuple(ref[name].shape):
            out[name] = list(tensor.shape)
    return out


def apply_shapes(net: nn.Module, shapes: dict[str, list[int]]) -> nn.Module:
    """Resize ``net``'s tensors (and the layers' size attributes) to ``shapes``, in place."""
    if not shapes:
        return net
    modules = dict(net.named_modules())
    touched: dict[str, nn.Module] = {}
    for name, shape in shapes.items():
        owner_name, _, attr = name.rpartition(".")
        owner = modules.get(owner_name)
        old = None if owner is None else getattr(owner, attr, None)
        if not isinstance(old, torch.Tensor):
            raise ValueError(f"pruned_shapes names {name!r}, which this network does not have")
        new = torch.empty(shape, dtype=old.dtype)
        if isinstance(old, nn.Parameter):
            setattr(owner, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            owner.register_buffer(attr, new)
        touched[owner_name] = owner
    for owner in touched.values():
        _fix_sizes(owner)
    return sync_out_channels(net)


def sync_out_channels(net: nn.Module) -> nn.Module:
    """The backbone's ``out_channels`` (read by the LSTM's and the feature adapter's
    builders) from its last convolution, after that was resized."""
    backbone = getattr(net, "backbone", None)
    if backbone is not None and hasattr(backbone, "out_channels"):
        convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
        backbone.out_channels = convs[-1].out_channels
    return net


def _fix_sizes(m: nn.Module) -> None:
    """The size attributes a layer computes with, from its (new) weights."""
    if isinstance(m, nn.Conv2d):
        depthwise = m.groups > 1 and m.groups == m.in_channels
        m.out_channels = m.weight.shape[0]
        if depthwise:
            m.groups = m.in_channels = m.out_channels
        else:
            m.in_channels = m.weight.shape[1] * m.groups
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        m.num_features = m.weight.shape[0] if m.weight is not None else m.running_mean.shape[0]
    elif isinstance(m, nn.Linear):
        m.out_features, m.in_features = m.weight.shape
    elif isinstance(m, nn.LSTM):
        m.input_size = m.weight_ih_l0.shape[1]
        m.hidden_size = m.weight_hh_l0.shape[1]
        m._init_flat_weights()
    else:
        raise ValueError(f"cannot resize a {type(m).__name__}")
