"""The HTTP application: ``create_app(Recognizer("m.onnx"))``.

- ``POST /api/v1/ocr``: JSON ``{"image_base64": "..."}`` or ``{"images": ["...", ...]}``
  (base64, data URLs accepted), or a multipart upload (``file``/``files`` fields);
  returns per image the text, its confidence, whether it came from the cache, and the
  time spent; a request's images go through the batcher with every other request's.
  With a text detector (``create_app(..., detector=TextDetector())``) an image is a
  page: its lines come back with their boxes, in reading order (``"mode": "line"`` in
  the JSON or the form reads an image as one line anyway).
- ``GET /``: a web page: drop, paste or pick images, read the text and confidences;
- ``GET /healthz``: the model's name and the queue; ``GET /metrics``: Prometheus text
  (requests by status, latency histogram, batch sizes, queue depth, cache hits and
  misses, errors by kind).
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from distill.core.preprocess import preprocess
from distill.runtime.serve.batcher import DynamicBatcher, QueueFull
from distill.runtime.serve.cache import ResultCache, image_key
from distill.runtime.serve.inputs import MAX_IMAGES, BadInput, decode_upload, from_base64


@dataclass
class ServeSettings:
    max_batch: int = 32  # 1 turns dynamic batching off
    max_wait_ms: float = 0.0  # 0: read what is queued now; lines that come while
    # the model works are queued, and read together by the next call
    max_queue: int = 256
    cache_entries: int = 10_000  # 0 turns the cache off
    cache_bytes: int = 64 << 20


class Metrics:
    """The server's Prometheus collectors, in a registry of its own."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("ocr_requests", "HTTP requests", ["path", "status"], registry=r)
        self.latency = Histogram(
            "ocr_request_seconds", "request latency", ["path"], registry=r,
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )  # fmt: skip
        self.batch = Histogram(
            "ocr_batch_lines", "lines per model call", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )  # fmt: skip
        self.lines = Counter("ocr_lines", "lines recognized by the model", registry=r)
        self.queue = Gauge("ocr_queue_depth", "lines waiting for the model", registry=r)
        self.cache = Counter("ocr_cache", "result cache lookups", ["result"], registry=r)
        self.errors = Counter("ocr_errors", "refused or failed requests", ["kind"], registry=r)


MODES = ("page", "line")


def create_app(recognizer, settings: ServeSettings | None = None, detector=None):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    settings = settings or ServeSettings()
    metrics = Metrics()
    cache = ResultCache(settings.cache_entries, settings.cache_bytes)

    def on_batch(n: int, seconds: float) -> None:
        metrics.batch.observe(n)
        metrics.lines.inc(n)

    batcher = DynamicBatcher(
        recognizer.recognize_arrays, settings.max_batch, settings.max_wait_ms,
        settings.max_queue, on_batch,
    )  # fmt: skip

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="distill OCR", lifespan=lifespan)
    app.state.batcher, app.state.cache, app.state.metrics = batcher, cache, metrics

    def error(status: int, kind: str, message: str) -> JSONResponse:
        metrics.errors.labels(kind).inc()
        return JSONResponse({"error": message}, status_code=status)

    def mode_of(value) -> str:
        default = "page" if detector is not None else "line"
        mode = value or default
        if mode not in MODES:
            raise BadInput(422, f"mode must be 'page' or 'line', got {mode!r}")
        if mode == "page" and detector is None:
            raise BadInput(
                422, "mode 'page' needs a text detector: start the server with --detector ppocrv6"
            )
        return mode

    async def images_of(request: Request) -> tuple[list[tuple[str, bytes]], str]:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            files = [v for k, v in form.multi_items() if k in ("file", "files")]
            if not files:
                raise BadInput(422, "multipart body without a 'file' or 'files' field")
            mode = mode_of(form.get("mode"))
            return [(f.filename or f"file{i}", await f.read()) for i, f in enumerate(files)], mode
        body = await request.body()
        if not body:
            raise BadInput(422, "empty body: send JSON {'image_base64': ...} or a file upload")
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadInput(422, "body is not valid JSON") from None
        if not isinstance(doc, dict) or not ({"image_base64", "images"} & set(doc)):
            raise BadInput(422, "JSON must hold 'image_base64' (a string) or 'images' (a list)")
        mode = mode_of(doc.get("mode"))
        if "images" in doc:
            if not isinstance(doc["images"], list) or not doc["images"]:
                raise BadInput(422, "'images' must be a non-empty list of base64 strings")
            return [
                (f"images[{i}]", from_base64(t, f"images[{i}]"))
                for i, t in enumerate(doc["images"])
            ], mode
        return [("image_base64", from_base64(doc["image_base64"], "image_base64"))], mode

    async def recognize(image) -> object:
        array = preprocess(image, recognizer.preprocess_cfg)
        metrics.queue.set(batcher.depth + 1)
        result = await batcher.submit(array)
        metrics.queue.set(batcher.depth)
        return result

    async def read_page(image) -> dict:
        """Detect the lines (in a worker thread: the event loop keeps serving), then
        read them all at once: they reach the batcher together."""
        boxes, crops = await asyncio.to_thread(detector.lines, image)
        results = await asyncio.gather(*(recognize(c) for c in crops))
        lines = [
            {
                "box": [[round(float(x), 1), round(float(y), 1)] for x, y in box],
                "text": r.text,
                "confidence": round(float(r.confidence), 4),
            }
            for box, r in zip(boxes, results)
        ]
        confidence = min((line["confidence"] for line in lines), default=0.0)
        return {
            "text": "\n".join(x["text"] for x in lines),
            "confidence": confidence,
            "lines": lines,
        }

    async def read_one(name: str, data: bytes, mode: str) -> dict:
        start = time.perf_counter()
        key = image_key(data) + mode if cache.enabled else None
        hit = cache.get(key) if key else None
        if cache.enabled:
            metrics.cache.labels("hit" if hit else "miss").inc()
        if hit is None:
            image = decode_upload(data, name)
            if mode == "page":
                result = await read_page(image)
            else:
                r = await recognize(image)
                result = {"text": r.text, "confidence": round(float(r.confidence), 4)}
            if key:
                cache.put(key, result)
            cached = False
        else:
            result, cached = hit, True
        return {
            "name": name,
            **result,
            "cached": cached,
            "ms": round(1000 * (time.perf_counter() - start), 2),
        }

    @app.post("/api/v1/ocr")
    async def ocr(request: Request):
        start = time.perf_counter()
        path = "/api/v1/ocr"
        try:
            items, mode = await images_of(request)
            if len(items) > MAX_IMAGES:
                raise BadInput(413, f"{len(items)} images in one request, limit {MAX_IMAGES}")
            results = await asyncio.gather(*(read_one(n, d, mode) for n, d in items))
        except BadInput as e:
            metrics.requests.labels(path, str(e.status)).inc()
            return error(e.status, "bad_input", e.message)
        except QueueFull as e:
            metrics.requests.labels(path, "503").inc()
            return error(503, "queue_full", str(e))
        except Exception as e:  # the model failed: a 500 that says so, the server goes on
            metrics.requests.labels(path, "500").inc()
            return error(500, "internal", f"recognition failed: {e}")
        metrics.requests.labels(path, "200").inc()
        metrics.latency.labels(path).observe(time.perf_counter() - start)
        return {
            "model": recognizer.name,
            "mode": mode,
            "results": results,
            "ms": round(1000 * (time.perf_counter() - start), 2),
        }

    page = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/healthz")
    async def healthz():
        return {
            "status": "ok",
            "model": recognizer.name,
            "detector": getattr(detector, "name", None),
            "queue_depth": batcher.depth,
        }

    @app.get("/metrics")
    async def prometheus():
        metrics.queue.set(batcher.depth)
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
