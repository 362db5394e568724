"""PP-OCRv6 imported into PyTorch against the stock ONNX model on the same inputs.

    python -m benchmarks.bench_ppocrv6_import [--set LABELFILE:PROTOCOL ...] [--name NAME]

1. Equivalence: rendered lines at widths 48..1600, batches of 1 and 7, through
   onnxruntime (the stock graph) and our network (``distill.models.ppocrv6``, weights from
   the same file); the largest difference of the class probabilities.
2. The dev sets read both ways, each line preprocessed as PP-OCR does (height 48, BGR,
   ``(x/255 - 0.5) / 0.5``, right-padded to at least 320 px): accuracy of each and the
   lines whose readings differ.
3. What the 320-px minimum is worth: our network on each line at its own width, padded
   to 320 px (the stock way: the padding is read as content), and at its own width beside
   wider lines with the padding masked (the same reading alone or in any batch).
4. Other input heights (``--heights 32``): our network, the same weights, on lines
   resized to that height (the stock graph is fixed at 48), padded to 320 * h / 48 px,
   with its cost in MACs beside 48 px.

Writes benchmarks/results/ppocrv6_import[_NAME].{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import time

import cv2
import numpy as np
import torch

from benchmarks.labelsets import load_labelled
from benchmarks.results_io import write_results
from distill.core.ctc import greedy_decode
from distill.core.metrics import score, split_protocol
from distill.core.preprocess import pad_batch
from distill.models.ppocrv6_import import default_path, import_ppocrv6

DEFAULT_SETS = [
    "../shared/devsets/iiit5k_300/labels.tsv:scene",
    "../shared/devsets/sroie_500/labels.tsv:caseless",
]
WIDTHS = (48, 104, 320, 640, 1000, 1600)  # multiples of 8, as PP-OCR pads


def ort_session(path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def ours(net):
    def run(x, widths=None):
        with torch.no_grad():
            w = None if widths is None else torch.from_numpy(np.asarray(widths))
            return net(torch.from_numpy(x), w)[0].float().softmax(-1).numpy()

    return run


def rendered(width: int, batch: int, seed: int) -> np.ndarray:
    """Lines rendered at height 48, BGR, normalized as PP-OCR does, padded to ``width``."""
    from distill.core.charset import Charset
    from distill.core.preprocess import PreprocessConfig
    from distill.data.synth import SynthDataset

    cfg = PreprocessConfig(height=48, channels=3, max_width=max(8, width // 4 * 4), min_width=8)
    ds = SynthDataset(Charset.resolve("ascii"), cfg, size=batch, seed=seed, deterministic=True)
    x = np.zeros((batch, 3, 48, width), np.float32)
    for i in range(batch):
        img = ds.render(i)
        h, w = img.shape[:2]
        new_w = min(width, max(8, int(np.ceil(48 * w / h))))
        a = cv2.resize(img, (new_w, 48))[..., ::-1].astype(np.float32) / 255.0
        x[i, :, :, :new_w] = ((a - 0.5) / 0.5).transpose(2, 0, 1)
    return x


def equivalence(stock, mine, exact) -> list[dict]:
    """Per shape: the largest probability difference, whether the best classes agree,
    and, where the difference passes 1e-4, how far each float32 result is from a float64
    evaluation of the same network (``exact``)."""
    rows = []
    for b in (1, 7):
        for w in WIDTHS:
            x = rendered(w, b, seed=w + b)
            p_ref, p_ours = stock(x), mine(x)
            row = {
                "batch": b,
                "width": w,
                "max_abs_diff": float(np.abs(p_ref - p_ours).max()),
                "argmax_equal": bool((p_ref.argmax(-1) == p_ours.argmax(-1)).all()),
            }
            if row["max_abs_diff"] > 1e-4:
                p64 = exact(x)
                row["stock_vs_float64"] = float(np.abs(p_ref - p64).max())
                row["ours_vs_float64"] = float(np.abs(p_ours - p64).max())
            rows.append(row)
            print(f"  batch {b} width {w:4d}: max |p diff| {row['max_abs_diff']:.2e}")
    return rows


def decode(probs: np.ndarray, frames: np.ndarray, chars: list[str]) -> list[str]:
    return ["".join(chars[k - 1] for k in idx) for idx, _ in greedy_decode(probs, frames)]


def read_set(spec: str, stock, mine, chars, teacher, heights=()) -> dict:
    path, protocol = split_protocol(spec)
    _, images, labels = load_labelled(path)
    arrays = [teacher.prepare(img) for img in images]
    widths = np.array([a.shape[2] for a in arrays])
    frames = -(-widths // 8) + teacher.frame_margin  # PP-OCRv6 may end a line one frame late
    stock_texts, our_texts, own_texts, masked_texts = [], [], [], []
    diffs, t_stock, t_ours = [], 0.0, 0.0
    for a, f in zip(arrays, frames):
        x320, _ = pad_batch([a], 8, min_width=320)
        start = time.perf_counter()
        p_ref = stock(x320)
        t_stock += time.perf_counter() - start
        start = time.perf_counter()
        p = mine(x320)
        t_ours += time.perf_counter() - start
        diffs.append(float(np.abs(p_ref - p).max()))
        n = min(int(f), p.shape[1])
        stock_texts += decode(p_ref, np.array([n]), chars)
        our_texts += decode(p, np.array([n]), chars)
        xo, _ = pad_batch([a], 8)  # its own width, nothing padded
        po = mine(xo)
        own_texts += decode(po, np.array([min(int(f), po.shape[1])]), chars)
    # masked: in batches of 8 beside wider lines, padding masked (widths given)
    order = np.argsort(widths)
    for i in range(0, len(order), 8):
        idx = order[i : i + 8]
        x, w = pad_batch([arrays[j] for j in idx], 8)
        p = mine(x, w)
        fr = np.minimum(-(-w // 8) + teacher.frame_margin, p.shape[1])
        for j, t in zip(idx, decode(p, fr, chars)):
            masked_texts.append((j, t))
    masked_texts = [t for _, t in sorted(masked_texts)]
    res = {"set": path, "protocol": protocol, "lines": len(labels)}
    for key, texts in (
        ("stock_320", stock_texts),
        ("ours_320", our_texts),
        ("ours_own_width", own_texts),
        ("ours_masked_batched", masked_texts),
    ):
        m = score(texts, labels, protocol)
        res[key] = {"acc": m["acc"], "cer": m["cer"]}
    for h in heights:
        texts = []
        teacher.height = h  # the same preprocessing at another height
        for img in images:
            a = teacher.prepare(img)
            x, _ = pad_batch([a], 8, min_width=320 * h // 48)
            p = mine(x)
            f = min(-(-a.shape[2] // 8) + teacher.frame_margin, p.shape[1])
            texts += decode(p, np.array([f]), chars)
        teacher.height = 48
        m = score(texts, labels, protocol)
        res[f"ours_height_{h}"] = {"acc": m["acc"], "cer": m["cer"]}
    res["readings_differ"] = sum(a != b for a, b in zip(stock_texts, our_texts))
    res["max_abs_diff"] = max(diffs)
    res["ms_per_line_stock"] = round(1000 * t_stock / len(arrays), 2)
    res["ms_per_line_ours_torch"] = round(1000 * t_ours / len(arrays), 2)
    return res


def macs_at(net, height: int) -> int:
    """Multiply-accumulates of one line of height ``height`` and width 320 * height / 48."""
    from distill.pruning.measure import count_macs

    return int(count_macs(net, height, 3, width=320 * height // 48))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--set", action="append", help="LABELFILE:PROTOCOL (repeatable)")
    ap.add_argument("--model", default=None, help="the ONNX file (default: the rapidocr wheel's)")
    ap.add_argument("--name", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heights", default="32", help="other input heights to read at, e.g. 32,64")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from distill.kd.onnx import OnnxTeacher

    path = args.model or default_path()
    net, chars, _ = import_ppocrv6(path)
    stock, mine = ort_session(path), ours(net)
    net64 = copy.deepcopy(net).double()

    def exact(x):
        with torch.no_grad():
            return net64(torch.from_numpy(x).double())[0].softmax(-1).numpy()

    teacher = OnnxTeacher(str(path), min_width=320, frame_margin=1, threads=args.threads)
    print("equivalence on rendered lines:")
    rows = equivalence(stock, mine, exact)
    heights = [int(h) for h in args.heights.split(",") if h]
    sets = [read_set(s, stock, mine, chars, teacher, heights) for s in (args.set or DEFAULT_SETS)]
    macs = {h: macs_at(net, h) for h in [48, *heights]}
    report = {"model": str(path), "equivalence": rows, "sets": sets, "macs_at_320": macs}
    md = [
        "# PP-OCRv6 imported into PyTorch vs the stock ONNX model",
        "",
        f"`python -m benchmarks.bench_ppocrv6_import` on `{path.name}`.",
        "",
        "Equivalence on rendered lines (class probabilities, same input):",
        "",
        "| batch | width | max abs diff | argmax equal | stock vs float64 | ours vs float64 |",
        "|---|---|---|---|---|---|",
    ]
    f64 = lambda r, k: f"{r[k]:.1e}" if k in r else ""  # noqa: E731
    md += [
        f"| {r['batch']} | {r['width']} | {r['max_abs_diff']:.1e} | {r['argmax_equal']} | "
        f"{f64(r, 'stock_vs_float64')} | {f64(r, 'ours_vs_float64')} |"
        for r in rows
    ]
    md += [
        "",
        "The dev sets (PP-OCR's preprocessing; accuracy / CER):",
        "",
        "| set | lines | stock, >= 320 px | ours, >= 320 px | readings that differ | "
        "max abs diff | ours, own width | ours, masked in batches of 8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cell = lambda m: f"{100 * m['acc']:.1f}% / {100 * m['cer']:.1f}%"  # noqa: E731
    for s in sets:
        md.append(
            f"| {s['set']}:{s['protocol']} | {s['lines']} | {cell(s['stock_320'])} | "
            f"{cell(s['ours_320'])} | {s['readings_differ']} | {s['max_abs_diff']:.1e} | "
            f"{cell(s['ours_own_width'])} | {cell(s['ours_masked_batched'])} |"
        )
    if heights:
        md += [
            "",
            "Other input heights, the same weights (ours; >= 320 * h / 48 px):",
            "",
            "| height | GMACs at h x (320 * h / 48) | "
            + " | ".join(f"{s['set'].split('/')[-2]}" for s in sets)
            + " |",
            "|---|---|" + "---|" * len(sets),
        ]
        for h in [48, *heights]:
            key = "ours_320" if h == 48 else f"ours_height_{h}"
            md.append(
                f"| {h} | {macs[h] / 1e9:.2f} | " + " | ".join(cell(s[key]) for s in sets) + " |"
            )
    write_results("ppocrv6_import" + (f"_{args.name}" if args.name else ""), report, "\n".join(md))


if __name__ == "__main__":
    main()
