"""The padding masks of an exported model, and the lean graph that runs without those a
call of equal-length lines does not need.

Each width-mixing layer multiplies its input by a column mask built from ``widths``
(distill/models/padding.py), so that a line reads the same in any batch. When every line
of a call spans the same number of frames (a single line always does: ``pad_batch`` pads
only up to the next multiple of the frame width), the masks at the frame stride are all
ones. They still cost a Mul each and, in onnxruntime's blocked (NCHWc) layout, a layout
conversion around it: up to a fifth of a batch-1 call (benchmarks/bench_speedups.py).

export.py names each mask ``padding_mask/s{stride}/{k}``; :func:`without_frame_masks`
bypasses those at the frame stride and drops what only they used. The masks at finer
strides (the stem) stay: up to ``width_per_frame - 1`` padded columns exist there.
Torch-free: the predictor builds the lean graph when it loads a model.
"""

from __future__ import annotations

import re

import onnx

MASK_NAME = "padding_mask/s{stride}/{index}"
_MASK_RE = re.compile(r"^padding_mask/s(\d+)/\d+$")


def _derived(graph: onnx.GraphProto, source: str, through_shape: bool) -> set[str]:
    """Tensors computed from ``source`` (nodes are in topological order)."""
    out = {source}
    for node in graph.node:
        if node.op_type == "Shape" and not through_shape:
            continue  # a shape is not the data
        if any(i in out for i in node.input):
            out.update(node.output)
    return out


def mask_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The Muls of an image-derived tensor by a tensor computed from ``widths`` alone (the
    padding masks), in graph order."""
    data = _derived(graph, "image", through_shape=False)
    widths = _derived(graph, "widths", through_shape=True) - data
    return [
        n
        for n in graph.node
        if n.op_type == "Mul"
        and len(n.input) == 2
        and sum(i in data for i in n.input) == 1
        and sum(i in widths for i in n.input) == 1
    ]


def name_masks(model: onnx.ModelProto, strides: list[int]) -> None:
    """Name the mask Muls by their width stride, given the strides in the order the export
    trace applied them (``PaddingMask.traced_strides``)."""
    nodes = mask_nodes(model.graph)
    if len(nodes) != len(strides):
        raise ValueError(
            f"found {len(nodes)} padding-mask Mul nodes in the exported graph but the trace "
            f"applied {len(strides)} masks"
        )
    for k, (node, stride) in enumerate(zip(nodes, strides)):
        node.name = MASK_NAME.format(stride=stride, index=k)


def mask_stride(node: onnx.NodeProto) -> int | None:
    m = _MASK_RE.match(node.name)
    return int(m.group(1)) if m and node.op_type == "Mul" else None


def without_frame_masks(model: onnx.ModelProto, width_per_frame: int) -> onnx.ModelProto | None:
    """A copy of ``model`` without its masks at the frame stride, exact whenever every line
    of a call has the same number of frames; None if the model has no such named masks
    (exported before they were named, or without a ``widths`` input)."""
    lean = onnx.ModelProto()
    lean.CopyFrom(model)
    graph = lean.graph
    data = _derived(graph, "image", through_shape=False)
    bypass = {
        n.output[0]: next(i for i in n.input if i in data)
        for n in graph.node
        if mask_stride(n) == width_per_frame
    }
    if not bypass:
        return None

    def resolve(name: str) -> str:
        while name in bypass:
            name = bypass[name]
        return name

    for node in graph.node:
        for k, name in enumerate(node.input):
            node.input[k] = resolve(name)
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(graph.node):  # keep what the outputs still depend on
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(live))
    used = needed | {i.name for i in graph.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return lean
