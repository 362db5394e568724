"""Character sets: the mapping between text and CTC class indices.

Index 0 is the CTC blank and is never in the file; character ``i`` of the file is
class ``i + 1``. A line holding a single space makes the space a real character.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "charsets"  # distill/charsets
BUILTINS = ("digits", "ascii", "zh")
UNKNOWN_POLICIES = ("skip", "strip", "keep")


class Charset:
    """An ordered set of characters with encode/decode for CTC (blank = 0)."""

    blank = 0

    def __init__(self, chars: Iterable[str], name: str = "custom"):
        self.chars: list[str] = []
        seen = set()
        for c in chars:
            if len(c) != 1:
                raise ValueError(f"charset '{name}': entry {c!r} is not a single character")
            if c not in seen:
                seen.add(c)
                self.chars.append(c)
        if not self.chars:
            raise ValueError(f"charset '{name}' is empty")
        self.name = name
        self.index = {c: i + 1 for i, c in enumerate(self.chars)}

    @property
    def num_classes(self) -> int:
        """Number of CTC classes, blank included."""
        return len(self.chars) + 1

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, c: str) -> bool:
        return c in self.index

    def __repr__(self) -> str:
        return f"Charset({self.name!r}, {len(self.chars)} chars)"

    @classmethod
    def from_file(cls, path: str | Path) -> Charset:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"charset file not found: {path}")
        lines = path.read_text(encoding="utf-8").split("\n")
        chars = [ln.rstrip("\r") for ln in lines if ln.rstrip("\r") != ""]
        bad = [(i + 1, c) for i, c in enumerate(chars) if len(c) != 1]
        if bad:
            line, c = bad[0]
            raise ValueError(f"{path}: line {line} holds {c!r}; expected one character per line")
        return cls(chars, name=path.stem)

    @classmethod
    def resolve(cls, spec: str | Sequence[str] | Mapping | Charset) -> Charset:
        """Build a charset from a built-in name, a file path, a list of characters, or
        the ``{"name", "chars"}`` mapping that checkpoints store (``to_dict``)."""
        if isinstance(spec, Charset):
            return spec
        if isinstance(spec, Mapping):
            return cls(list(spec["chars"]), name=str(spec.get("name", "custom")))
        if isinstance(spec, str):
            if spec in BUILTINS:
                return cls.from_file(BUILTIN_DIR / f"{spec}.txt")
            if Path(spec).is_file():
                return cls.from_file(spec)
            raise ValueError(
                f"unknown charset {spec!r}: not a built-in ({', '.join(BUILTINS)}) "
                "and not an existing file"
            )
        return cls(list(spec))

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` that are not in the set, in order of appearance."""
        return [c for c in dict.fromkeys(text) if c not in self.index]

    def strip(self, text: str) -> str:
        return "".join(c for c in text if c in self.index)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[c] for c in text]
        except KeyError as e:
            raise KeyError(f"character {e.args[0]!r} of {text!r} is not in {self!r}") from None

    def decode(self, indices: Iterable[int]) -> str:
        """Map class indices to text; the blank and out-of-range indices are dropped."""
        n = len(self.chars)
        return "".join(self.chars[i - 1] for i in indices if 0 < i <= n)

    def case_pairs(self) -> list[tuple[int, int]]:
        """(lower, upper) class indices of every letter the set holds in both cases: what
        a case-folding loss merges (labels stored in one case for mixed-case text)."""
        pairs = []
        for c in self.chars:
            up = c.upper()
            if c != up and len(up) == 1 and up in self.index:
                pairs.append((self.index[c], self.index[up]))
        return pairs

    def to_dict(self) -> dict:
        return {"name": self.name, "chars": list(self.chars)}
