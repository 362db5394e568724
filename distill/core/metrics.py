"""Recognition metrics (numpy/python only, shared by training, eval and the predictor).

- word accuracy: exact match after Unicode NFKC and whitespace collapsing;
- acc_nospace: the same with spaces removed;
- CER: total edit distance / total label characters;
- NED: 1 - mean(edit distance / max(len(pred), len(label))), as in ICDAR 2019.
The ``scene`` protocol (scene-text benchmarks) also lower-cases and keeps only
letters and digits.
"""

from __future__ import annotations

import re
import unicodedata

from rapidfuzz.distance import Levenshtein

# exact: NFKC and collapsed whitespace; scene: lower-case letters and digits only (scene
# text benchmarks); caseless: exact up to letter case (datasets with upper-case labels)
PROTOCOLS = ("exact", "scene", "caseless")
_SPACES = re.compile(r"\s+")


def split_protocol(spec: str, default: str | None = "exact") -> tuple[str, str]:
    """``LABELFILE:PROTOCOL`` (the benchmarks' dev-set arguments) -> (path, protocol);
    without a known protocol suffix, ``default``, or an error naming the spec when None."""
    path, _, protocol = spec.rpartition(":")
    if path and protocol in PROTOCOLS:
        return path, protocol
    if default is None:
        raise ValueError(f"{spec!r}: expected LABELFILE:PROTOCOL, PROTOCOL one of {PROTOCOLS}")
    return spec, default


def normalize(text: str, protocol: str = "exact") -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown metric protocol {protocol!r}; choose one of {PROTOCOLS}")
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()
    if protocol == "scene":
        text = "".join(c for c in text.lower() if c.isalnum())
    elif protocol == "caseless":
        text = text.upper()
    return text


class RecognitionMetrics:
    """Accumulates sums so results from several batches or processes can be added."""

    FIELDS = ("n", "correct", "correct_nospace", "edits", "chars", "ned_sum")

    def __init__(self, protocol: str = "exact"):
        normalize("", protocol)  # validates the name early
        self.protocol = protocol
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(self.FIELDS, 0.0)

    def update(self, preds: list[str], labels: list[str]) -> None:
        s = self.sums
        for pred, label in zip(preds, labels, strict=True):
            p, g = normalize(pred, self.protocol), normalize(label, self.protocol)
            d = Levenshtein.distance(p, g)
            s["n"] += 1
            s["correct"] += p == g
            s["correct_nospace"] += p.replace(" ", "") == g.replace(" ", "")
            s["edits"] += d
            s["chars"] += len(g)
            s["ned_sum"] += d / max(len(p), len(g), 1)

    def add_sums(self, sums: dict[str, float]) -> None:
        for k in self.FIELDS:
            self.sums[k] += float(sums[k])

    def compute(self) -> dict[str, float]:
        s = self.sums
        n = max(s["n"], 1)
        return {
            "n": int(s["n"]),
            "acc": s["correct"] / n,
            "acc_nospace": s["correct_nospace"] / n,
            "cer": s["edits"] / max(s["chars"], 1),
            "ned": 1.0 - s["ned_sum"] / n,
        }


def score(preds: list[str], labels: list[str], protocol: str = "exact") -> dict[str, float]:
    m = RecognitionMetrics(protocol)
    m.update(preds, labels)
    return m.compute()
