"""Run a teacher once over a dataset and keep what it said: the teacher-label cache.

    python -m distill.teach --teacher ppocrv6 --charset ascii \\
        --source ../shared/data/iiit5k_train_unlabeled/img --out data/generated/iiit5k_ppocrv6
    python -m distill.teach ... --source synth:50000 --shard 0/4      # one shard of four

A teacher costs several milliseconds per line on a CPU, about a student's training
step; read once, its outputs serve every epoch. ``--source`` is a label file, an LMDB,
a folder of unlabeled images, or ``synth:N[:LANG[:PROFILE[:MAX_CHARS]]]`` rendered lines
(PROFILE: clean, document, scene, or ``mix``, the default mix of ``data=synth``;
MAX_CHARS: the clean profile's longest line, 24). The output is an
LMDB in the DTRB layout (``image-%09d``; ``label-%09d``: the ground truth, or the
teacher's reading for an unlabeled image) plus, per sample, the teacher's reading, its
confidence and its top-k class probabilities per valid frame in float16, mapped onto
the student's charset (``gt-%09d`` marks a real label; ``teacher-meta`` says which teacher,
charset and frame rate). Training reads it like any LMDB; ``teacher=cache`` distills
from the stored outputs without running the teacher.

Lines are decoded in parallel threads, sorted by width within windows and read in
batches. Each window is committed in one transaction with the progress counter, so an
interrupted run resumes where it stopped and loses nothing already written; bad images
are skipped and listed (``bad-%09d`` keys, and on stderr). ``--shard I/N`` takes every
N-th source item from the I-th: one shard per process or node, each to its own LMDB.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import lmdb
import numpy as np

from distill.charset import Charset
from distill.preprocess import ImageError, decode_image

MAP_SIZE = 1 << 40  # LMDB reserves address space only; the file grows with the data


@dataclass
class Item:
    name: str
    read: Callable[[], bytes]
    label: str | None


SYNTH_MIX = {"document": 0.5, "scene": 0.3, "clean": 0.2}  # distill/conf/data/synth.yaml's mix


def source_items(spec: str, charset: Charset, seed: int = 0) -> list[Item]:
    """The items of a source, in a fixed order (shards and resumes rely on it)."""
    from distill.data.datasets import IMAGE_SUFFIXES, is_lmdb
    from distill.labelfile import read_label_file

    if spec.startswith("synth:"):
        from distill.data.synth import SynthDataset
        from distill.preprocess import PreprocessConfig

        _, n, *rest = spec.split(":")
        lang, profile, max_chars = (rest + ["en", "clean", "24"][len(rest) :])[:3]
        ds = SynthDataset(
            charset,
            PreprocessConfig(),
            size=int(n),
            lang=lang,
            seed=seed,
            deterministic=True,
            profiles=SYNTH_MIX if profile == "mix" else profile,
            max_chars=int(max_chars),
        )

        def render(i: int) -> bytes:
            ok, buf = cv2.imencode(".png", ds.render(i)[:, :, ::-1])
            return buf.tobytes()

        return [Item(f"synth:{i}", lambda i=i: render(i), ds.texts[i]) for i in range(len(ds))]
    path = Path(spec)
    if is_lmdb(path):
        env = lmdb.open(str(path), readonly=True, lock=False)
        with env.begin() as txn:
            n = int(txn.get(b"num-samples"))
            labels = [(txn.get(b"label-%09d" % k) or b"").decode("utf-8") for k in range(1, n + 1)]

        def get(k: int) -> bytes:
            with env.begin() as txn:
                data = txn.get(b"image-%09d" % k)
            if data is None:
                raise ImageError(f"{path}:image-{k:09d}: missing key")
            return data

        return [Item(f"{path}:{k}", lambda k=k: get(k), labels[k - 1]) for k in range(1, n + 1)]
    if path.is_file():
        pairs, malformed = read_label_file(path)
        if malformed:
            raise ValueError(f"{path}:{malformed[0]}: expected 'relative/path<TAB>label'")
        return [Item(str(p), p.read_bytes, label) for p, label in pairs]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{path}: folder holds no image")
        return [Item(str(p), p.read_bytes, None) for p in files]
    raise FileNotFoundError(f"source not found: {spec} (label file, LMDB, folder or synth:N)")


def pack_topk(probs: np.ndarray, k: int) -> bytes:
    """[frames, classes] -> frames, k, then k class indices (int16) and probabilities
    (float16) per frame, best first."""
    k = min(k, probs.shape[1])
    idx = np.argsort(-probs, axis=1)[:, :k]
    p = np.take_along_axis(probs, idx, 1)
    head = np.array([probs.shape[0], k], np.int32)
    return head.tobytes() + idx.astype(np.int16).tobytes() + p.astype(np.float16).tobytes()


def unpack_topk(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(indices [frames, k], probabilities [frames, k]) of :func:`pack_topk`."""
    frames, k = np.frombuffer(blob[:8], np.int32)
    n = int(frames) * int(k)
    idx = np.frombuffer(blob[8 : 8 + 2 * n], np.int16).reshape(frames, k)
    p = np.frombuffer(blob[8 + 2 * n : 8 + 4 * n], np.float16).reshape(frames, k)
    return idx.astype(np.int64), p.astype(np.float32)


def _decode(item: Item) -> tuple[bytes, np.ndarray] | str:
    try:
        data = item.read()
        return data, decode_image(data, item.name)
    except (OSError, ImageError) as e:
        return f"{item.name}: {e}"


def teach(
    teacher,
    items: list[Item],
    out: Path,
    topk: int = 8,
    batch: int = 32,
    workers: int = 2,
    window: int = 512,
    progress: bool = True,
) -> dict:
    """Write (or resume) the cache of ``items`` in ``out``; returns counts."""
    from rich.progress import Progress

    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "teacher": teacher.config,
        "source": teacher.source,
        "fingerprint": teacher.fingerprint,
        "charset": teacher.charset.to_dict(),
        "width_per_frame": teacher.width_per_frame,
        "topk": topk,
    }
    env = lmdb.open(str(out), map_size=MAP_SIZE)
    with env.begin() as txn:
        done = int(txn.get(b"teach-progress") or 0)
        written = int(txn.get(b"num-samples") or 0)
        bad = int(txn.get(b"num-bad") or 0)
        old = txn.get(b"teacher-meta")
    if old is not None and json.loads(old) != meta:
        raise ValueError(
            f"{out} holds another teacher's outputs (or another charset or top-k): "
            "write to a new folder"
        )
    pool = ThreadPoolExecutor(max(1, workers))
    start, resumed_at = time.monotonic(), done
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"teaching {out.name}", total=len(items), completed=done)
        log_lines = progress and not bar.console.is_terminal  # a log file sees no live bar
        while done < len(items):
            chunk = items[done : done + window]
            decoded = list(pool.map(_decode, chunk))
            good = [(it, d) for it, d in zip(chunk, decoded) if not isinstance(d, str)]
            errors = [d for d in decoded if isinstance(d, str)]
            good.sort(key=lambda g: g[1][1].shape[1] / g[1][1].shape[0])  # batches of like widths
            with env.begin(write=True) as txn:
                txn.put(b"teacher-meta", json.dumps(meta).encode())
                for i in range(0, len(good), batch):
                    part = good[i : i + batch]
                    said = teacher.read([img for _, (_, img) in part])
                    mapped, _ = teacher.vocab.map_probs(said["probs"])
                    for j, (item, (data, _)) in enumerate(part):
                        written += 1
                        text = teacher.vocab.map_text(said["texts"][j])
                        f = int(said["frames"][j])
                        key = written
                        label = item.label if item.label is not None else (text or "")
                        txn.put(b"image-%09d" % key, data)
                        txn.put(b"label-%09d" % key, label.encode("utf-8"))
                        if item.label is not None:
                            txn.put(b"gt-%09d" % key, b"1")
                        if text is not None:
                            txn.put(b"teacher-text-%09d" % key, text.encode("utf-8"))
                        txn.put(b"teacher-conf-%09d" % key, b"%.5f" % said["confidences"][j])
                        txn.put(b"teacher-topk-%09d" % key, pack_topk(mapped[j, :f], topk))
                for e in errors:
                    bad += 1
                    txn.put(b"bad-%09d" % bad, e.encode("utf-8"))
                    print(f"skipped: {e}", file=sys.stderr)
                done += len(chunk)
                txn.put(b"num-samples", str(written).encode())
                txn.put(b"num-bad", str(bad).encode())
                txn.put(b"teach-progress", str(done).encode())
            bar.update(task, completed=done)
            if log_lines:
                rate = (done - resumed_at) / max(time.monotonic() - start, 1e-9)
                eta = (len(items) - done) / max(rate, 1e-9) / 60
                print(
                    f"teaching {out.name}: {done}/{len(items)} lines, {rate:.1f}/s, "
                    f"{eta:.0f} min left",
                    flush=True,
                )
    env.close()
    return {"items": len(items), "written": written, "bad": bad}


def image_teacher(name: str, charset: Charset, height: int, overrides: list[str] = ()):
    """The teacher of ``teacher=NAME`` (a config in distill/conf/teacher/), composed by
    Hydra as ``train.py teacher=NAME`` would (its defaults included), with ``KEY=VALUE``
    overrides of its settings, bound to the student's charset. (A checkpoint teacher
    reads the student's own augmented batch: distill from it online; the cache is for
    teachers that read images their own way.)"""
    from hydra.errors import HydraException
    from hydra.utils import get_class
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from distill.config import compose, config_names
    from distill.teachers import build_teacher as instantiate

    if name not in config_names("teacher"):
        raise ValueError(f"no teacher config {name!r}; choose from {config_names('teacher')}")
    for kv in overrides:
        if "=" not in kv:
            raise ValueError(f"--set {kv!r}: expected KEY=VALUE, e.g. --set path=rec.onnx")
    try:
        cfg = compose("train", [f"teacher={name}", *(f"++teacher.{kv}" for kv in overrides)])
        spec = OmegaConf.to_container(cfg.teacher, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise ValueError(f"teacher={name} {' '.join(overrides)}: {e}") from None
    missing = [k for k, v in spec.items() if v == "???"]
    if missing:
        raise ValueError(
            f"teacher={name} needs {', '.join(missing)}: give "
            + " ".join(f"--set {k}=..." for k in missing)
        )
    if not hasattr(get_class(spec["_target_"]), "read"):
        readers = [n for n in config_names("teacher") if n not in ("checkpoint", "cache")]
        raise ValueError(
            f"teacher={name} does not read raw images; the cache is for teachers that do "
            f"({', '.join(readers)})"
        )
    teacher = instantiate(spec)
    teacher.bind(charset, height)
    return teacher


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m distill.teach",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    ap.add_argument(
        "--teacher", default="ppocrv6", help="a teacher config: ppocrv6, onnx (with --set path=)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a teacher setting, as train.py's teacher.KEY=VALUE: --set path=rec.onnx, "
        "--set stretch=1.3333",
    )
    ap.add_argument("--charset", default="ascii", help="the student's charset")
    ap.add_argument("--height", type=int, default=32, help="the student's input height")
    ap.add_argument(
        "--source",
        action="append",
        required=True,
        help="label file, LMDB, folder of images, or synth:N[:LANG[:PROFILE[:MAX_CHARS]]] "
        "with PROFILE clean (default), document, scene or mix (repeatable)",
    )
    ap.add_argument("--out", required=True, type=Path, help="the LMDB folder to write (or resume)")
    ap.add_argument("--shard", default="0/1", help="I/N: this process takes items I, I+N, ...")
    ap.add_argument("--topk", type=int, default=8, help="classes kept per frame")
    ap.add_argument("--batch", type=int, default=32, help="lines per teacher call")
    ap.add_argument("--workers", type=int, default=2, help="image decoding threads")
    ap.add_argument("--seed", type=int, default=0, help="synth: which lines")
    args = ap.parse_args(argv)
    try:
        shard, shards = (int(x) for x in args.shard.split("/"))
        assert 0 <= shard < shards
    except (ValueError, AssertionError):
        ap.error(f"--shard must be I/N with 0 <= I < N, got {args.shard!r}")
    charset = Charset.resolve(args.charset)
    try:
        teacher = image_teacher(args.teacher, charset, args.height, args.set)
        items = [it for s in args.source for it in source_items(s, charset, args.seed)]
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mine = items[shard::shards]
    out = args.out / f"shard-{shard:03d}-of-{shards:03d}" if shards > 1 else args.out
    res = teach(teacher, mine, out, args.topk, args.batch, args.workers)
    print(
        f"{out}: {res['written']} samples written, {res['bad']} bad image(s) skipped, "
        f"{res['items']} items in this shard"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
