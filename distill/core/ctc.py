"""Greedy CTC decoding with a confidence, in numpy: shared by training and inference."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def greedy_decode(
    probs: np.ndarray, lengths: np.ndarray | None = None, blank: int = 0
) -> list[tuple[list[int], float]]:
    """Best-path decoding of (N, T, C) probabilities.

    For each sample, only the first ``lengths[i]`` frames (the ones that see real
    pixels) are read. Returns (class indices, confidence) pairs; the confidence is
    the mean probability of the emitted characters (the mean best-frame probability
    when nothing is emitted), as PP-OCR reports it.
    """
    n, t, _ = probs.shape
    if lengths is None:
        lengths = np.full(n, t)
    best = probs.argmax(-1)
    best_p = probs.max(-1)
    out = []
    for i in range(n):
        k = int(min(lengths[i], t))
        path, p = best[i, :k], best_p[i, :k]
        if k == 0:
            out.append(([], 0.0))
            continue
        keep = path != blank
        keep[1:] &= path[1:] != path[:-1]
        idx = path[keep]
        conf = float(p[keep].mean()) if idx.size else float(p.mean())
        out.append((idx.tolist(), conf))
    return out


def greedy_decode_logits(
    logits: np.ndarray, lengths: np.ndarray | None = None, blank: int = 0
) -> list[tuple[list[int], float]]:
    """:func:`greedy_decode` of ``softmax(logits)``, computed from the logits: the best
    path is their argmax, and a frame's probability ``1 / sum(exp(l - l_max))`` is
    computed only on the frames the confidence reads (the emitted characters' frames),
    not on all T x C entries (6,900 classes per frame for Chinese)."""
    n, t, _ = logits.shape
    if lengths is None:
        lengths = np.full(n, t)
    best = logits.argmax(-1)
    out = []
    for i in range(n):
        k = int(min(lengths[i], t))
        if k == 0:
            out.append(([], 0.0))
            continue
        path = best[i, :k]
        keep = path != blank
        keep[1:] &= path[1:] != path[:-1]
        frames = np.flatnonzero(keep) if keep.any() else np.arange(k)
        rows = logits[i, frames]
        top = rows.max(-1, keepdims=True)
        p = 1.0 / np.exp(rows - top).sum(-1)
        out.append((path[keep].tolist(), float(p.mean())))
    return out
