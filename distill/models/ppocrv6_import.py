"""PP-OCRv6's weights, read from its ONNX file into :class:`PPOCRv6Rec`.

The file is the rapidocr wheel's ``models/PP-OCRv6_rec_small.onnx`` (found in the installed
package; nothing is downloaded) or any path to the same graph. Its initializers are read
in the graph's order and matched, one by one, with the network's layers in theirs: a
convolution's weight and the bias the next ``Add`` holds, the neck's BatchNorms, each
``MatMul`` weight (stored [in, out]: transposed) with its bias, and each LayerNorm, which
the graph spells out as mean, variance, divide, ``Mul`` by its weight and ``Add`` of its
bias. Every shape is checked; a file that does not fit is refused with an error naming
the first tensor that does not, and the layer it was meant for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.models.ppocrv6 import SMALL, PPOCRv6Rec

PACKAGE, PACKAGE_PATH = "rapidocr", "models/PP-OCRv6_rec_small.onnx"


class ImportMismatch(ValueError):
    """The ONNX file is not the graph this network reproduces."""


@dataclass
class Tensor:
    name: str
    value: np.ndarray


@dataclass
class Layer:
    """One parametrized op of the graph: ``kind`` conv | bn | linear | ln, its tensors."""

    kind: str
    tensors: list[Tensor]
    node: str

    def describe(self) -> str:
        shapes = ", ".join(f"{t.name} {list(t.value.shape)}" for t in self.tensors)
        return f"{self.kind} at node {self.node} ({shapes})"


def default_path() -> Path:
    """PP-OCRv6's recognizer inside the installed rapidocr wheel."""
    import importlib.resources

    try:
        root = importlib.resources.files(PACKAGE)
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"PP-OCRv6's recognizer ships in the Python package {PACKAGE!r}, which is not "
            "installed: pip install -e '.[teachers]' (or give the .onnx path)"
        ) from None
    path = Path(str(root / PACKAGE_PATH))
    if not path.is_file():
        raise FileNotFoundError(f"{PACKAGE} is installed but has no {PACKAGE_PATH}")
    return path


def read_graph(path: str | Path):
    """(layers in graph order, the dictionary from the ``character`` metadata)."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PP-OCRv6 model not found: {path}")
    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers: dict[str, list] = {}
    producer = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
        for o in n.output:
            producer[o] = n

    def follow(name: str):
        """The op that consumes ``name``, through Identity nodes."""
        users = consumers.get(name, [])
        while len(users) == 1 and users[0].op_type == "Identity":
            users = consumers.get(users[0].output[0], [])
        return users[0] if len(users) == 1 else None

    def const_of(node, ndim: int) -> Tensor | None:
        for i in node.input:
            if i in inits and inits[i].ndim == ndim:
                return Tensor(i, inits[i])
        return None

    def bias_after(node, ndim: int) -> Tensor | None:
        nxt = follow(node.output[0])
        return const_of(nxt, ndim) if nxt is not None and nxt.op_type == "Add" else None

    layers = []
    for n in g.node:
        if n.op_type == "Conv":
            w = Tensor(n.input[1], inits[n.input[1]])
            b = bias_after(n, 4)  # [1, C, 1, 1]
            b = [Tensor(b.name, b.value.reshape(-1))] if b else []
            layers.append(Layer("conv", [w, *b], n.name))
        elif n.op_type == "BatchNormalization":
            layers.append(Layer("bn", [Tensor(i, inits[i]) for i in n.input[1:5]], n.name))
        elif n.op_type == "MatMul" and n.input[1] in inits:
            w = Tensor(n.input[1], inits[n.input[1]].T)  # stored [in, out]
            b = bias_after(n, 1)
            layers.append(Layer("linear", [w] + ([b] if b else []), n.name))
        elif n.op_type == "Mul" and const_of(n, 1) is not None:
            source = next((producer.get(i) for i in n.input if i not in inits), None)
            while source is not None and source.op_type == "Identity":
                source = producer.get(source.input[0])
            if source is not None and source.op_type == "Div":  # a LayerNorm's weight
                layers.append(Layer("ln", [const_of(n, 1), bias_after(n, 1)], n.name))
    meta = {p.key: p.value for p in model.metadata_props}
    chars = [c for c in meta.get("character", "").split("\n") if c != ""]
    return layers, chars, inits


def _ours(net: nn.Module) -> list[tuple[str, nn.Module, str]]:
    kinds = {nn.Conv2d: "conv", nn.BatchNorm2d: "bn", nn.Linear: "linear", nn.LayerNorm: "ln"}
    return [(name, m, kinds[type(m)]) for name, m in net.named_modules() if type(m) in kinds]


def _expected(module: nn.Module, kind: str) -> list[tuple[str, tuple]]:
    if kind == "bn":
        return [(k, tuple(module.weight.shape)) for k in ("weight", "bias", "mean", "var")]
    if kind == "ln":
        return [("weight", tuple(module.weight.shape)), ("bias", tuple(module.bias.shape))]
    out = [("weight", tuple(module.weight.shape))]
    return out + ([("bias", tuple(module.bias.shape))] if module.bias is not None else [])


def check_structure(inits: dict) -> None:
    """The graph facts the network hard-codes: 8 attention heads of 15 dimensions."""
    heads = [v.tolist() for v in inits.values() if v.dtype.kind == "i" and v.shape == (5,)]
    want = [0, -1, 3, SMALL["heads"], SMALL["neck_dim"] // SMALL["heads"]]
    if heads and any(h != want for h in heads):
        raise ImportMismatch(f"attention reshape {heads[0]} is not {want} (8 heads of 15)")


def load_weights(net: PPOCRv6Rec, layers: list[Layer], inits: dict, path) -> None:
    """Copy the graph's layers (:func:`read_graph`) into ``net``, in order."""
    check_structure(inits)
    ours = _ours(net)
    for k, (name, module, kind) in enumerate(ours):
        if k >= len(layers):
            raise ImportMismatch(f"{path}: the graph ends before layer {name} ({kind})")
        layer = layers[k]
        expected = _expected(module, kind)
        got = [tuple(t.value.shape) for t in layer.tensors]
        if layer.kind != kind or got != [s for _, s in expected]:
            raise ImportMismatch(
                f"{path}: {layer.describe()} does not fit layer {name} ({kind}, "
                + ", ".join(f"{k} {list(s)}" for k, s in expected)
                + "): not PP-OCRv6's small recognizer?"
            )
        values = [torch.from_numpy(np.array(t.value, dtype=np.float32)) for t in layer.tensors]
        with torch.no_grad():
            if kind == "bn":
                module.weight.copy_(values[0])
                module.bias.copy_(values[1])
                module.running_mean.copy_(values[2])
                module.running_var.copy_(values[3])
            else:
                module.weight.copy_(values[0])
                if len(values) > 1:
                    module.bias.copy_(values[1])
    if len(layers) != len(ours):
        extra = layers[len(ours)]
        raise ImportMismatch(f"{path}: {extra.describe()} has no layer to go to")


@dataclass
class HeadSlice:
    """Which of a target charset's characters PP-OCRv6's dictionary has (``found``; the
    rest, ``missing``, got new rows)."""

    found: list[str]
    missing: list[str]


def _teacher_class(c: str, index: dict[str, int]) -> int | None:
    """PP-OCRv6's class of a character: itself, else its Unicode compatibility form (a
    full-width letter or punctuation mark of the charset is its ASCII one there)."""
    import unicodedata

    if c in index:
        return index[c]
    return index.get(unicodedata.normalize("NFKC", c))


def slice_head(net: PPOCRv6Rec, classes: list[str], charset) -> HeadSlice:
    """Keep the head's rows of ``charset``'s characters, in its class order (blank first).

    ``classes``: PP-OCRv6's characters of classes 1.. (the dictionary, then the space). A
    character the dictionary lacks gets a new row of zero weights and the head's lowest
    bias: the network never says it before fine-tuning shows it, and the gradient reaches
    it from the first step."""
    index: dict[str, int] = {}
    for k, c in enumerate(classes, start=1):
        index.setdefault(c, k)  # a duplicate keeps the first class, as decoding does
    old = net.head
    new = nn.Linear(old.in_features, charset.num_classes)
    found, missing = [], []
    with torch.no_grad():
        new.weight.zero_()
        new.bias.fill_(float(old.bias.min()))
        new.weight[0], new.bias[0] = old.weight[0], old.bias[0]  # the blank
        for j, c in enumerate(charset.chars, start=1):
            k = _teacher_class(c, index)
            if k is None:
                missing.append(c)
                continue
            found.append(c)
            new.weight[j], new.bias[j] = old.weight[k], old.bias[k]
    net.head, net.num_classes = new, charset.num_classes
    return HeadSlice(found, missing)


def import_ppocrv6(path: str | Path | None = None, charset=None):
    """The stock network (eval mode) and its classes' characters (the dictionary, then the
    space; class 0 is the blank): PP-OCRv6's recognizer from the rapidocr wheel, or the
    ONNX file at ``path``. With ``charset`` (a :class:`distill.core.charset.Charset`), the
    head is sliced to its characters (:func:`slice_head`) and the third value says which
    the dictionary had; else it is None."""
    path = Path(path) if path else default_path()
    layers, chars, inits = read_graph(path)
    if not chars:
        raise ImportMismatch(f"{path}: no 'character' metadata (the dictionary)")
    net = PPOCRv6Rec(num_classes=len(chars) + 2)
    load_weights(net, layers, inits, path)
    classes = chars + [" "]
    sliced = slice_head(net, classes, charset) if charset is not None else None
    return net.eval(), classes, sliced


def save_stock_checkpoint(
    out: str | Path,
    charset="ascii",
    path: str | Path | None = None,
    height: int = 48,
    max_width: int = 1200,
    protocol: str = "exact",
) -> Path:
    """Stock PP-OCRv6, its head sliced to ``charset``, as a checkpoint made here (no
    training): ``export.py``, ``eval.py``, a checkpoint teacher and ``init_ckpt`` read it
    as any other, so the stock model and a fine-tuned copy go through the same export and
    the same predictor."""
    from distill.core.charset import Charset
    from distill.core.preprocess import PreprocessConfig
    from distill.models.checkpoint import save_network

    cs = Charset.resolve(charset)
    net, _, sliced = import_ppocrv6(path, cs)
    preprocess = PreprocessConfig(
        height=height, channels=3, max_width=max_width, channel_order="bgr"
    )
    hparams = {
        "net": {"arch": "ppocrv6", "variant": "small", "in_channels": 3},
        "charset": cs.to_dict(),
        "preprocess": preprocess.to_dict(),
        "protocol": protocol,
        "pretrained_from": str(Path(path) if path else default_path()),
    }
    save_network(out, hparams, net)
    print(
        f"{out}: PP-OCRv6 with {len(sliced.found)} of the {len(cs)} characters of "
        f"{cs.name} from its dictionary"
        + (f", new rows for {''.join(sliced.missing)}" if sliced.missing else "")
    )
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    """python -m distill.models.ppocrv6_import OUT.ckpt [--charset ascii] [--onnx PATH]"""
    import argparse

    ap = argparse.ArgumentParser(description=save_stock_checkpoint.__doc__)
    ap.add_argument("out", help="the checkpoint to write")
    ap.add_argument("--charset", default="ascii", help="ascii, zh, or a charset file")
    ap.add_argument("--onnx", default=None, help="PP-OCRv6's file (default: the rapidocr wheel's)")
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--max-width", type=int, default=1200)
    ap.add_argument("--protocol", default="exact")
    a = ap.parse_args(argv)
    save_stock_checkpoint(a.out, a.charset, a.onnx, a.height, a.max_width, a.protocol)


if __name__ == "__main__":
    main()
