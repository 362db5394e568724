"""Fonts for the synthetic renderer: every face found, what it really covers, and which
ones a line may be drawn with.

A font file can hold several faces (a ``.ttc`` collection) and a family can ship many
files (Lato has 18 weights): the renderer picks a *family* uniformly among those that
can draw the line, then a face within it, so no family dominates by file count.
Region variants of one design (``Noto Sans CJK SC``/``TC``/``JP``, ``AR PL UKai CN``/
``TW``) count as one family.

    python -m distill.data.fonts                 # faces and families per charset
    python -m distill.data.fonts --charset zh --list
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
# Faces whose cmap claims letters but draws symbols, placeholders or ornaments.
DEFAULT_FONT_EXCLUDE = (
    r"LastResort",
    r"^cm\w*10",
    r"STIXSiz",
    r"STIXNonUni",
    r"Display",
    r"Math",
    r"Symbol",
    r"Initials",
    r"Keyboard",
    r"D050000L",  # URW dingbats
)
# Families kept out of training so a test set can measure fonts a model never saw
# (distill/conf/data/synth.yaml ``heldout_fonts``;
# python -m distill.data.render_set --fonts heldout)
HELDOUT_FONTS = (
    r"^Carlito\b",
    r"^Caladea\b",
    r"^Courier Prime\b",
    r"^EB Garamond\b",
    r"^URW Gothic\b",
    r"^WenQuanYi Zen Hei\b",
    r"^AR PL UMing\b",
)
# What to install when a charset has no face at all (scripts/install_fonts.sh has more)
FONT_PACKAGES = {
    "zh": "fonts-noto-cjk or fonts-wqy-microhei",
    "default": "fonts-dejavu-core",
}
_REGION = re.compile(r"\s+(CN|HK|TW|TW MBE|SC|TC|JP|KR)$")


FONT_SETS = ("train", "heldout", "all")


def font_filters(which: str, exclude=DEFAULT_FONT_EXCLUDE) -> dict:
    """FontLibrary filters for a font set: ``train`` (all but the held-out families),
    ``heldout`` (only them) or ``all``; ``exclude`` patterns apply to each."""
    exclude = list(exclude or ())
    if which == "train":
        return {"exclude": exclude + list(HELDOUT_FONTS), "include": None}
    if which == "heldout":
        return {"exclude": exclude, "include": list(HELDOUT_FONTS)}
    if which == "all":
        return {"exclude": exclude, "include": None}
    raise ValueError(f"font set must be one of {FONT_SETS}, got {which!r}")


class MissingFontError(RuntimeError):
    """No installed face can draw the text a charset needs."""


def missing_font_message(charset_name: str, dirs) -> str:
    pkg = FONT_PACKAGES.get(charset_name, FONT_PACKAGES["default"])
    return (
        f"no installed font can draw the {charset_name!r} charset (searched {list(dirs)}): "
        f"install {pkg} (apt-get install -y ...; `make fonts` installs the full set as "
        "root) or point data.train.font_dirs at a folder of fonts"
    )


def default_font_dirs() -> list[str]:
    """matplotlib's bundled fonts (always there) plus the usual system font folders."""
    import matplotlib

    dirs = [os.path.join(matplotlib.get_data_path(), "fonts", "ttf")]
    dirs += ["/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts")]
    return [d for d in dirs if os.path.isdir(d)]


@dataclass(frozen=True)
class Face:
    path: str
    index: int  # face number inside a .ttc collection (0 for a single-face file)
    family: str
    style: str
    coverage: frozenset[int]

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}"

    @property
    def design(self) -> str:
        """The family without region tags: what the renderer samples evenly."""
        return _REGION.sub("", self.family)


def _runs(cps) -> list[list[int]]:
    """Codepoints as [start, end] runs: a CJK face's 30k codepoints fit in a few hundred."""
    out: list[list[int]] = []
    for c in sorted(cps):
        if out and c == out[-1][1] + 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


class _FaceCache:
    """Reading a cmap is slow (seconds for a set of CJK fonts): scans are kept in memory
    and in ``~/.cache/distill/font_faces.json``, keyed by path, size and mtime."""

    def __init__(self):
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        self.path = Path(base) / "distill" / "font_faces.json"
        self.entries: dict | None = None
        self.decoded: dict[str, list] = {}  # this process's faces, ready to use
        self.dirty = False

    def _load(self) -> dict:
        if self.entries is None:
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.entries = {}
        return self.entries

    def faces(self, path: str) -> list[tuple[int, str, str, frozenset[int]]]:
        st = os.stat(path)
        key = f"{path}|{st.st_size}|{int(st.st_mtime)}"
        if key in self.decoded:
            return self.decoded[key]
        entries = self._load()
        if key not in entries:
            entries[key] = [[i, fam, sty, _runs(cps)] for i, fam, sty, cps in _faces_in(path)]
            self.dirty = True
        self.decoded[key] = [
            (i, fam, sty, frozenset(c for a, b in runs for c in range(a, b + 1)))
            for i, fam, sty, runs in entries[key]
        ]
        return self.decoded[key]

    def save(self) -> None:
        if not self.dirty:
            return
        try:  # a read-only home only costs the next scan its time
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError as e:
            log.debug("font cache not saved: %s", e)


_FACE_CACHE = _FaceCache()


def _faces_in(path: str) -> list[tuple[int, str, str, frozenset[int]]]:
    """(index, family, style, codepoints) of every face in a font file; [] if unreadable."""
    from fontTools.ttLib import TTCollection, TTFont

    try:
        if path.lower().endswith(".ttc"):
            holder = TTCollection(path, lazy=True)
            fonts = holder.fonts
        else:
            holder = TTFont(path, lazy=True)
            fonts = [holder]
        out = []
        for i, font in enumerate(fonts):
            names = font["name"]
            family = names.getBestFamilyName() or Path(path).stem
            style = names.getBestSubFamilyName() or "Regular"
            cmap = font.getBestCmap() or {}
            out.append((i, family.strip(), style.strip(), frozenset(cmap)))
        holder.close()  # the faces of a collection share one file
        return out
    except Exception as e:  # a broken font file must not stop the scan
        log.debug("skipping font %s: %s", path, e)
        return []


class FontLibrary:
    """Faces found in folders, each with the set of characters its cmap covers.

    ``exclude``/``include`` are regular expressions matched against "family style" and
    the file name: a face matching any ``exclude`` is dropped; with ``include`` only
    faces matching one of them are kept (a held-out test set).
    """

    def __init__(self, dirs=None, exclude=DEFAULT_FONT_EXCLUDE, include=None):
        self.dirs = list(dirs) if dirs else default_font_dirs()
        ex = [re.compile(p) for p in (exclude or ())]
        inc = [re.compile(p) for p in include] if include else None
        files = sorted(
            str(p)
            for d in self.dirs
            if os.path.isdir(d)
            for p in Path(d).rglob("*")
            if p.suffix.lower() in FONT_SUFFIXES
        )
        self.faces: list[Face] = []
        seen = set()
        for path in files:
            for index, family, style, cps in _FACE_CACHE.faces(path):
                face = Face(path, index, family, style, cps)
                keys = (face.name, Path(path).stem)
                if not cps or face.name in seen or any(p.search(k) for p in ex for k in keys):
                    continue
                if inc is not None and not any(p.search(k) for p in inc for k in keys):
                    continue
                seen.add(face.name)  # the same face installed twice counts once
                self.faces.append(face)
        _FACE_CACHE.save()
        if not self.faces:
            what = f" matching {list(include)}" if include else ""
            raise FileNotFoundError(f"no usable .ttf/.otf/.ttc font{what} found in {self.dirs}")
        self._index()

    @classmethod
    def from_faces(cls, faces: list[Face], dirs=()) -> FontLibrary:
        """A library of the given faces (no folder scan)."""
        lib = cls.__new__(cls)
        lib.dirs, lib.faces = list(dirs), list(faces)
        lib._index()
        return lib

    def _index(self) -> None:
        self._masks: dict[int, int] = {}  # codepoint -> bit mask of the faces that have it
        self._families = defaultdict(list)
        for i, f in enumerate(self.faces):
            self._families[f.design].append(i)

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def families(self) -> list[str]:
        return sorted(self._families)

    def fonts_for(self, text: str) -> list[int]:
        """Indices of the faces that have a glyph for every character of ``text``."""
        mask = (1 << len(self.faces)) - 1
        for cp in {ord(c) for c in text if not c.isspace()}:
            if cp not in self._masks:
                self._masks[cp] = sum(1 << i for i, f in enumerate(self.faces) if cp in f.coverage)
            mask &= self._masks[cp]
            if not mask:
                return []
        return [i for i in range(len(self.faces)) if mask >> i & 1]

    def pick(self, candidates: list[int], rng: np.random.Generator) -> int:
        """A design uniformly among the candidates' families, then one of its faces."""
        by_family = defaultdict(list)
        for i in candidates:
            by_family[self.faces[i].design].append(i)
        families = sorted(by_family)
        faces = by_family[families[rng.integers(len(families))]]
        return faces[rng.integers(len(faces))]

    def coverage_of(self, chars: str, min_fraction: float = 1.0) -> list[int]:
        """Faces covering at least ``min_fraction`` of ``chars`` (spaces aside)."""
        need = {ord(c) for c in chars if not c.isspace()}
        return [
            i
            for i, f in enumerate(self.faces)
            if need and len(need & f.coverage) >= min_fraction * len(need)
        ]

    def report(self, charsets: dict[str, str]) -> str:
        """How many faces and families cover each charset, fully and 99%."""
        lines = [f"{len(self.faces)} faces in {len(self._families)} families ({self.dirs})"]
        for name, chars in charsets.items():
            full = self.coverage_of(chars, 1.0)
            most = self.coverage_of(chars, 0.99)
            fams = {self.faces[i].design for i in full}
            lines.append(
                f"  {name} ({len(chars)} chars): {len(full)} faces / {len(fams)} families "
                f"cover all of it, {len(most)} faces cover 99%"
            )
        return "\n".join(lines)


def main(argv=None) -> None:
    from distill.core.charset import BUILTINS, Charset

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dirs", nargs="*", help="font folders (default: matplotlib + system)")
    p.add_argument("--charset", nargs="*", default=list(BUILTINS), help="charsets to report")
    p.add_argument("--heldout", action="store_true", help="only the held-out families")
    p.add_argument("--list", action="store_true", help="list the faces that cover each charset")
    args = p.parse_args(argv)
    lib = FontLibrary(args.dirs, include=HELDOUT_FONTS if args.heldout else None)
    charsets = {n: "".join(Charset.resolve(n).chars) for n in args.charset}
    print(lib.report(charsets))
    if args.list:
        for name, chars in charsets.items():
            print(f"\n{name}:")
            for i in lib.coverage_of(chars, 0.99):
                f = lib.faces[i]
                print(f"  {f.name:45s} {Path(f.path).name}#{f.index}")


if __name__ == "__main__":
    main()
