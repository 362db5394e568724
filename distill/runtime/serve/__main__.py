"""python -m distill.serve MODEL.onnx [--host 127.0.0.1] [--port 8000] [--threads N]
    [--max-batch 32] [--max-wait-ms 0] [--max-queue 256] [--cache-entries 10000]
    [--detector ppocrv6]

``--max-batch 1`` turns dynamic batching off, ``--cache-entries 0`` the result cache.
``--threads`` defaults to one less than the CPUs (one core stays for HTTP and image
decoding: on 2 cores, 289 vs 227 lines/s at 32 concurrent clients with 1 model thread
instead of 2; benchmarks/results/serve_en_student.md).
``--detector ppocrv6`` reads whole pages: PP-OCRv6's text detector finds the lines
(pip install 'distill[page]'); without it an image is one line.
Thread settings also come from the environment (OCR_THREADS), for containers.
"""

from __future__ import annotations

import argparse
import os


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", help="an ONNX model exported by export.py")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OCR_THREADS", "0")) or None)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=0.0)
    p.add_argument("--max-queue", type=int, default=256)
    p.add_argument("--cache-entries", type=int, default=10_000)
    p.add_argument(
        "--spin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="onnxruntime's idle threads spin (fast for one caller) or sleep",
    )
    p.add_argument(
        "--detector",
        default=os.environ.get("OCR_DETECTOR") or None,
        help="ppocrv6: find the lines of whole pages (default: an image is a line)",
    )
    args = p.parse_args(argv)

    import uvicorn

    from distill.runtime.predict import Recognizer
    from distill.runtime.serve.app import ServeSettings, create_app

    if not args.threads:
        args.threads = max(1, (os.cpu_count() or 2) - 1)
    recognizer = Recognizer(
        args.model, threads=args.threads, batch_size=args.max_batch, spin=args.spin
    )
    settings = ServeSettings(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        cache_entries=args.cache_entries,
    )  # fmt: skip
    detector = None
    if args.detector:
        from distill.runtime.serve.pages import DetectorMissing, TextDetector

        try:
            detector = TextDetector(args.detector, threads=args.threads)
        except (DetectorMissing, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
    uvicorn.run(create_app(recognizer, settings, detector), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
