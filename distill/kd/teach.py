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
the student's charset (the format: :mod:`distill.kd.cache`). Training reads it like any
LMDB; ``teacher=cache`` distills from the stored outputs without running the teacher.

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
import numpy as np

from distill.core.charset import Charset
from distill.core.preprocess import ImageError, decode_image
from distill.core.sources import image_files, source_kind
from distill.data.lmdb import LmdbWriter, open_env, read_lmdb, sample_key
from distill.kd.cache import META, NUM_BAD, PROGRESS, pack_topk, sample_fields


@dataclass
class Item:
    name: str
    read: Callable[[], bytes]
    label: str | None


def synth_mix() -> dict[str, float]:
    """The render profiles' mix of ``data=synth`` (distill/conf/data/synth.yaml)."""
    from omegaconf import OmegaConf

    from distill.config import compose

    return OmegaConf.to_container(compose("train", ["data=synth"]).data.train.profiles)


def source_items(spec: str, charset: Charset, seed: int = 0) -> list[Item]:
    """The items of a source, in a fixed order (shards and resumes rely on it)."""
    from distill.core.labelfile import read_label_file

    if spec.startswith("synth:"):
        from distill.core.preprocess import PreprocessConfig
        from distill.data.synth import SynthDataset

        _, n, *rest = spec.split(":")
        lang, profile, max_chars = (rest + ["en", "clean", "24"][len(rest) :])[:3]
        ds = SynthDataset(
            charset,
            PreprocessConfig(),
            size=int(n),
            lang=lang,
            seed=seed,
            deterministic=True,
            profiles=synth_mix() if profile == "mix" else profile,
            max_chars=int(max_chars),
        )

        def render(i: int) -> bytes:
            ok, buf = cv2.imencode(".png", ds.render(i)[:, :, ::-1])
            return buf.tobytes()

        return [Item(f"synth:{i}", lambda i=i: render(i), ds.texts[i]) for i in range(len(ds))]
    path = Path(spec)
    kind = source_kind(path)
    if kind == "lmdb":
        from distill.data.datasets import LmdbDataset

        labels = read_lmdb(path, lambda txn: LmdbDataset.read_labels(txn, path))

        def get(k: int) -> bytes:
            with open_env(path).begin() as txn:
                data = txn.get(sample_key("image", k))
            if data is None:
                raise ImageError(f"{path}:image-{k:09d}: missing key")
            return data

        return [Item(f"{path}:{k}", lambda k=k: get(k), lab) for k, lab in enumerate(labels, 1)]
    if kind == "folder":
        files = image_files(path)
        if not files:
            raise FileNotFoundError(f"{path}: folder holds no image")
        return [Item(str(p), p.read_bytes, None) for p in files]
    if kind == "missing":
        raise FileNotFoundError(f"source not found: {spec} (label file, LMDB, folder or synth:N)")
    pairs, malformed = read_label_file(path)
    if malformed or not pairs:
        line = f":{malformed[0]}" if malformed else ""
        raise ValueError(f"{path}{line}: expected 'relative/path<TAB>label' lines")
    return [Item(str(p), p.read_bytes, label) for p, label in pairs]


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

    meta = {
        "teacher": teacher.config,
        "source": teacher.source,
        "fingerprint": teacher.fingerprint,
        "charset": teacher.charset.to_dict(),
        "width_per_frame": teacher.width_per_frame,
        "topk": topk,
    }
    writer = LmdbWriter(out)
    done = int(writer.get(PROGRESS) or 0)
    bad = int(writer.get(NUM_BAD) or 0)
    old = writer.get(META)
    if old is not None and json.loads(old) != meta:
        writer.close()
        raise ValueError(
            f"{out} holds another teacher's outputs (or another charset or top-k): "
            "write to a new folder"
        )
    pool = ThreadPoolExecutor(max(1, workers))
    start, resumed_at = time.monotonic(), done
    with writer, Progress(disable=not progress) as bar:
        task = bar.add_task(f"teaching {out.name}", total=len(items), completed=done)
        log_lines = progress and not bar.console.is_terminal  # a log file sees no live bar
        while done < len(items):
            chunk = items[done : done + window]
            decoded = list(pool.map(_decode, chunk))
            good = [(it, d) for it, d in zip(chunk, decoded) if not isinstance(d, str)]
            errors = [d for d in decoded if isinstance(d, str)]
            good.sort(key=lambda g: g[1][1].shape[1] / g[1][1].shape[0])  # batches of like widths
            writer.put(META, json.dumps(meta).encode())
            for i in range(0, len(good), batch):
                part = good[i : i + batch]
                said = teacher.read([img for _, (_, img) in part])
                # a foreign teacher's classes onto the student's (ours share the charset)
                vocab = getattr(teacher, "vocab", None)
                mapped = vocab.map_probs(said["probs"])[0] if vocab else said["probs"]
                for j, (item, (data, _)) in enumerate(part):
                    text = vocab.map_text(said["texts"][j]) if vocab else said["texts"][j]
                    label = item.label if item.label is not None else (text or "")
                    topk_blob = pack_topk(mapped[j, : int(said["frames"][j])], topk)
                    fields = sample_fields(
                        text, said["confidences"][j], topk_blob, real_label=item.label is not None
                    )
                    writer.add(data, label, **fields)
            for e in errors:
                bad += 1
                writer.put(sample_key("bad", bad), e.encode("utf-8"))
                print(f"skipped: {e}", file=sys.stderr)
            done += len(chunk)
            writer.put(NUM_BAD, str(bad).encode())
            writer.put(PROGRESS, str(done).encode())
            writer.commit()  # the window's samples and the progress counter at once
            bar.update(task, completed=done)
            if log_lines:
                rate = (done - resumed_at) / max(time.monotonic() - start, 1e-9)
                eta = (len(items) - done) / max(rate, 1e-9) / 60
                print(
                    f"teaching {out.name}: {done}/{len(items)} lines, {rate:.1f}/s, "
                    f"{eta:.0f} min left",
                    flush=True,
                )
        written = writer.count
    return {"items": len(items), "written": written, "bad": bad}


def image_teacher(name: str, charset: Charset, height: int, overrides: list[str] = ()):
    """The teacher of ``teacher=NAME`` (a config in distill/conf/teacher/), composed by
    Hydra as ``train.py teacher=NAME`` would (its defaults included), with ``KEY=VALUE``
    overrides of its settings, bound to the student's charset: an ONNX recognizer, or a
    checkpoint made here (``checkpoint --set ckpt=PATH``), each reading the images with its
    own preprocessing."""
    from hydra.errors import HydraException
    from hydra.utils import get_class
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from distill.config import compose, config_names
    from distill.kd.teachers import build_teacher

    if name not in config_names("teacher"):
        raise ValueError(f"no teacher config {name!r}; choose from {config_names('teacher')}")
    for kv in overrides:
        if "=" not in kv:
            raise ValueError(f"--set {kv!r}: expected KEY=VALUE, e.g. --set path=rec.onnx")
    try:
        cfg = compose("train", [f"teacher={name}", *(f"++teacher.{kv}" for kv in overrides)])
        target = cfg.teacher.get("_target_")
        if target is None or not hasattr(get_class(target), "read"):
            readers = [n for n in config_names("teacher") if n not in ("cache", "none")]
            raise ValueError(
                f"teacher={name} does not read raw images; the cache is for teachers that do "
                f"({', '.join(readers)})"
            )
        spec = OmegaConf.to_container(cfg.teacher, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise ValueError(f"teacher={name} {' '.join(overrides)}: {e}") from None
    missing = [k for k, v in spec.items() if v == "???"]
    if missing:
        raise ValueError(
            f"teacher={name} needs {', '.join(missing)}: give "
            + " ".join(f"--set {k}=..." for k in missing)
        )
    teacher = build_teacher(spec)
    if teacher is None:
        raise ValueError(f"teacher={name} names no model: give --set ckpt=PATH")
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
