"""The HTTP server under load: throughput and latency percentiles by concurrency, with
dynamic batching on and off, the result cache on and off, single lines and whole pages.

    python -m benchmarks.bench_serve [--model models/en_student.onnx]
        [--lines ../shared/devsets/sroie_500/labels.tsv] [--requests 300] [--seconds 20]
        [--concurrency 1,8,32] [--threads 2] [--name NAME]

Each configuration starts its own server (``python -m distill.serve``) on 127.0.0.1 and
sends it, from ``c`` concurrent clients, distinct images (so the cache cannot help),
except in the cache rows, where the clients draw from a pool of 20 images. A cell stops
at ``--requests`` requests or ``--seconds`` seconds, whichever comes first. Pages are
8 receipt lines stacked on a white sheet, read with ``--detector ppocrv6`` (skipped when
the page extra is not installed). The client runs on the same machine as the server:
on 2 cores it takes a share of the CPU, alike for every configuration.
Writes benchmarks/results/serve_NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.results_io import write_results
from distill.core import hardware
from distill.runtime.predict import collect, read_image

ROOT = Path(__file__).resolve().parent.parent

PAGE_LINES = 8
POOL = 20


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, model: str, threads: int, extra: list[str]):
        self.port = free_port()
        env = {**os.environ, "OCR_THREADS": str(threads)} if threads else dict(os.environ)
        cmd = [sys.executable, "-m", "distill.serve", model, "--port", str(self.port), *extra]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 60) -> None:
        import httpx

        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server stopped: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise SystemExit("the server did not answer /healthz in time")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def load(url: str, payloads: list[bytes], concurrency: int, limit: int, seconds: float):
    """``concurrency`` clients send payloads in turn; returns latencies (s) seen by the
    clients, the server's own times (ms), wall time, and counts of non-200 answers."""
    import httpx

    latencies, server_ms, errors = [], [], {}
    next_index = 0
    deadline = time.perf_counter() + seconds

    async def client(c: httpx.AsyncClient):
        nonlocal next_index
        while next_index < limit and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            body = payloads[i % len(payloads)]
            start = time.perf_counter()
            r = await c.post(
                url + "/api/v1/ocr",
                files={"file": (f"{i}.png", body, "image/png")},
                timeout=60,
            )
            if r.status_code == 200:
                latencies.append(time.perf_counter() - start)
                server_ms.append(r.json()["ms"])  # the handler's own time, HTTP excluded
            else:
                errors[r.status_code] = errors.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, server_ms, wall, errors


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def make_pages(lines: list[np.ndarray], n: int) -> list[bytes]:
    """Receipt-like pages: PAGE_LINES real lines, left-aligned on white with margins."""
    pages = []
    for p in range(n):
        chosen = [lines[(p * PAGE_LINES + i) % len(lines)] for i in range(PAGE_LINES)]
        scaled = [cv2.resize(x, (int(x.shape[1] * 40 / x.shape[0]), 40)) for x in chosen]
        width = max(x.shape[1] for x in scaled) + 80
        page = np.full((PAGE_LINES * 60 + 60, width, 3), 255, np.uint8)
        for i, x in enumerate(scaled):
            y = 40 + 60 * i
            page[y : y + 40, 40 : 40 + x.shape[1]] = x
        pages.append(cv2.imencode(".png", page[:, :, ::-1])[1].tobytes())
    return pages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "en_student.onnx"))
    ap.add_argument("--lines", default=str(ROOT.parent / "shared/devsets/sroie_500/labels.tsv"))
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument(
        "--threads", type=int, default=0, help="model threads (0: the server's default)"
    )
    ap.add_argument("--server-args", default="", help="more flags for every server, e.g. --no-spin")
    ap.add_argument("--name", default=Path(ap.parse_known_args()[0].model).stem)
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    items, bad = collect([args.lines])
    if bad:
        raise SystemExit("\n".join(bad))
    paths = [p for p, _ in items]
    line_pngs = [Path(p).read_bytes() for p in paths[: max(args.requests, POOL)]]
    try:
        import rapidocr  # noqa: F401

        pages = make_pages([read_image(p) for p in paths[:200]], 40)
    except ImportError:
        pages = None
        print("pages skipped: the detector is not installed (pip install -e '.[page]')")

    configs = [  # name, server flags, payloads, concurrency levels
        ("lines, batching on", ["--cache-entries", "0"], line_pngs, levels),
        ("lines, batching off", ["--cache-entries", "0", "--max-batch", "1"], line_pngs, levels),
        ("lines from a pool of 20, cache on", [], line_pngs[:POOL], [8]),
        ("lines from a pool of 20, cache off", ["--cache-entries", "0"], line_pngs[:POOL], [8]),
    ]
    if pages:
        det = ["--detector", "ppocrv6", "--cache-entries", "0"]
        configs += [
            (f"pages of {PAGE_LINES} lines, batching on", det, pages, [1, 8]),
            (
                f"pages of {PAGE_LINES} lines, batching off",
                [*det, "--max-batch", "1"],
                pages,
                [1, 8],
            ),
        ]
    rows = []
    for name, flags, payloads, conc in configs:
        server = Server(args.model, args.threads, [*flags, *args.server_args.split()])
        try:
            server.wait()
            asyncio.run(load(server.url, payloads[:4], 2, 8, 30))  # warm-up
            for c in conc:
                lat, server_ms, wall, errors = asyncio.run(
                    load(server.url, payloads, c, args.requests, args.seconds)
                )
                row = {
                    "config": name,
                    "concurrency": c,
                    "requests": len(lat),
                    "errors": errors,
                    "req_per_s": len(lat) / wall,
                    "p50_ms": 1000 * percentile(lat, 50),
                    "p95_ms": 1000 * percentile(lat, 95),
                    "p99_ms": 1000 * percentile(lat, 99),
                    "mean_ms": 1000 * statistics.fmean(lat) if lat else float("nan"),
                    "server_p50_ms": percentile(server_ms, 50),
                    "server_p99_ms": percentile(server_ms, 99),
                }
                rows.append(row)
                print(
                    f"{name:42s} c={c:3d}  {row['req_per_s']:7.1f} req/s  p50 {row['p50_ms']:7.1f}"
                    f"  p95 {row['p95_ms']:7.1f}  p99 {row['p99_ms']:7.1f} ms  {errors or ''}",
                    flush=True,
                )
        finally:
            server.stop()

    def find(config, c):
        return next((r for r in rows if r["config"] == config and r["concurrency"] == c), None)

    top = max(levels)
    on, off = find("lines, batching on", top), find("lines, batching off", top)
    gain = on["req_per_s"] / off["req_per_s"] if on and off else float("nan")
    table = [
        "| configuration | c | requests | req/s | p50 ms | p95 ms | p99 ms "
        "| server p50 / p99 ms | errors |"
    ]
    table.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        table.append(
            f"| {r['config']} | {r['concurrency']} | {r['requests']} | {r['req_per_s']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['server_p50_ms']:.1f} / {r['server_p99_ms']:.1f} | {r['errors'] or ''} |"
        )
    md = (
        f"# Serving {Path(args.model).name}\n\n"
        f"`python -m benchmarks.bench_serve {' '.join(sys.argv[1:])}`\n\n"
        f"{hardware.describe()}; model threads "
        f"{args.threads or 'the server default (CPUs - 1)'}; client and server on the same "
        "machine (a client's latency includes its own event loop's delays; the server column "
        "is the handler's time, body parsing included, transport excluded); each cell stops at "
        f"{args.requests} requests or {args.seconds:g} s.\n\n"
        + "\n".join(table)
        + f"\n\nDynamic batching at concurrency {top}: {gain:.2f}x the throughput of "
        "batching off.\n"
    )
    write_results(f"serve_{args.name}", {"rows": rows, "batching_gain": gain}, md)


if __name__ == "__main__":
    main()
