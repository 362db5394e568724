"""The HTTP server: API happy paths, every kind of bad input, dynamic batching, the
result cache, a full queue, health and metrics."""

from __future__ import annotations

import asyncio
import base64
import re
import struct
import subprocess
import sys
import time
import zlib

import cv2
import numpy as np
import pytest

pytest.importorskip(
    "fastapi", reason="the server extra is not installed: pip install -e '.[serve]'"
)
import httpx  # noqa: E402

from distill.export.onnx import export_onnx  # noqa: E402
from distill.models.checkpoint import load_network  # noqa: E402
from distill.runtime.predict import Recognizer  # noqa: E402
from distill.runtime.serve.app import ServeSettings, create_app  # noqa: E402

from .helpers import (  # noqa: E402
    NETS,
    ROOT,  # noqa: E402
    make_ckpt,
)

URL = "/api/v1/ocr"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    module = load_network(make_ckpt(d / "s.ckpt", NETS["student"]))
    return export_onnx(module, d / "s.onnx", "tiny-student")


def png(width: int = 60, height: int = 20, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 255, np.uint8)
    img[5:15, 5 : width - 5] = rng.integers(0, 120, (10, width - 10, 3))
    return cv2.imencode(".png", img)[1].tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_header_only(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def run(app, coro_fn):
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            try:
                return await coro_fn(client)
            finally:
                await app.state.batcher.stop()

    return asyncio.run(main())


def test_json_list_and_multipart_give_the_predictors_readings(model_path):
    rec = Recognizer(model_path)
    images = [png(seed=i, width=40 + 20 * i) for i in range(3)]
    expected = [
        r.text
        for r in rec.recognize(
            [cv2.imdecode(np.frombuffer(d, np.uint8), 1)[:, :, ::-1] for d in images]
        )
    ]
    app = create_app(Recognizer(model_path))

    async def calls(c):
        one = await c.post(URL, json={"image_base64": b64(images[0])})
        many = await c.post(URL, json={"images": [b64(d) for d in images]})
        files = [("files", (f"{i}.png", d, "image/png")) for i, d in enumerate(images)]
        upload = await c.post(URL, files=files)
        return one, many, upload

    one, many, upload = run(app, calls)
    for r in (one, many, upload):
        assert r.status_code == 200, r.text
    assert one.json()["results"][0]["text"] == expected[0]
    for r in (many, upload):
        got = r.json()["results"]
        assert [x["text"] for x in got] == expected
        assert all(0 <= x["confidence"] <= 1 and x["ms"] >= 0 for x in got)
    assert [x["name"] for x in upload.json()["results"]] == ["0.png", "1.png", "2.png"]


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"content": b""}, 422, "empty body"),
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "not valid JSON",
        ),
        ({"json": {"image": "x"}}, 422, "must hold 'image_base64'"),
        ({"json": {"images": []}}, 422, "non-empty list"),
        ({"json": {"image_base64": "@@not base64@@"}}, 422, "not valid base64"),
        ({"json": {"image_base64": b64(b"plain text, not an image")}}, 415, "not an image"),
        ({"json": {"image_base64": b64(png()[:60])}}, 422, "image"),  # truncated
        ({"json": {"image_base64": b64(png_header_only(20000, 20000))}}, 413, "too large"),
        ({"json": {"image_base64": b64(png_header_only(9000, 9000))}}, 413, "9000x9000"),
        ({"json": {"image_base64": "A" * (60 << 20)}}, 413, "larger than"),
        ({"files": [("other", ("a.png", png(), "image/png"))]}, 422, "'file' or 'files'"),
        ({"json": {"images": [b64(png())] * 65}}, 413, "limit 64"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_the_server_keeps_serving(model_path, kwargs, status, message):
    app = create_app(Recognizer(model_path))

    async def calls(c):
        bad = await c.post(URL, **kwargs)
        good = await c.post(URL, json={"image_base64": b64(png())})
        return bad, good

    bad, good = run(app, calls)
    assert bad.status_code == status, bad.text
    assert message in bad.json()["error"]
    assert good.status_code == 200
    assert app.state.metrics.errors.labels("bad_input")._value.get() == 1


def test_concurrent_requests_are_batched_together(model_path):
    rec = Recognizer(model_path)
    sizes = []
    real = rec.recognize_arrays
    rec.recognize_arrays = lambda arrays: (sizes.append(len(arrays)), real(arrays))[1]
    app = create_app(rec, ServeSettings(max_batch=16, max_wait_ms=100, cache_entries=0))

    async def calls(c):
        reqs = [c.post(URL, json={"image_base64": b64(png(seed=i))}) for i in range(12)]
        return await asyncio.gather(*reqs)

    responses = run(app, calls)
    assert all(r.status_code == 200 for r in responses)
    assert sum(sizes) == 12 and max(sizes) > 1, sizes
    # batched or alone, a line reads the same (widths input: padding changes nothing)
    alone = [
        rec.recognize([cv2.imdecode(np.frombuffer(png(seed=i), np.uint8), 1)[:, :, ::-1]])[0].text
        for i in range(12)
    ]
    assert [r.json()["results"][0]["text"] for r in responses] == alone


def test_a_repeated_image_comes_from_the_cache(model_path):
    rec = Recognizer(model_path)
    calls_to_model = []
    real = rec.recognize_arrays
    rec.recognize_arrays = lambda arrays: (calls_to_model.append(len(arrays)), real(arrays))[1]
    app = create_app(rec)

    async def calls(c):
        first = await c.post(URL, json={"image_base64": b64(png(seed=7))})
        second = await c.post(URL, json={"image_base64": b64(png(seed=7))})
        metrics = await c.get("/metrics")
        return first, second, metrics

    first, second, metrics = run(app, calls)
    a, b = first.json()["results"][0], second.json()["results"][0]
    assert not a["cached"] and b["cached"] and a["text"] == b["text"]
    assert calls_to_model == [1]
    assert 'ocr_cache_total{result="hit"} 1.0' in metrics.text


def test_a_full_queue_answers_503(model_path):
    rec = Recognizer(model_path)
    real = rec.recognize_arrays
    rec.recognize_arrays = lambda arrays: (time.sleep(0.2), real(arrays))[1]  # a slow model
    app = create_app(rec, ServeSettings(max_batch=1, max_queue=2, cache_entries=0))

    async def calls(c):
        reqs = [c.post(URL, json={"image_base64": b64(png(seed=i))}) for i in range(8)]
        return await asyncio.gather(*reqs)

    codes = sorted(r.status_code for r in run(app, calls))
    assert 503 in codes and 200 in codes, codes


def test_health_and_metrics(model_path):
    app = create_app(Recognizer(model_path))

    async def calls(c):
        await c.post(URL, json={"image_base64": b64(png())})
        return await c.get("/healthz"), await c.get("/metrics")

    health, metrics = run(app, calls)
    assert health.json()["queue_depth"] == 0
    assert health.json()["status"] == "ok" and health.json()["model"] == "tiny-student"
    for name in ("ocr_requests_total", "ocr_request_seconds_bucket", "ocr_batch_lines_bucket",
                 "ocr_queue_depth", "ocr_lines_total"):  # fmt: skip
        assert name in metrics.text, name


TRAINING_ONLY = ("torch", "torchvision", "lightning", "hydra", "omegaconf", "albumentations")


def test_the_server_runs_with_training_packages_made_unimportable(model_path):
    """Serving needs none of the training stack: with torch, Lightning, Hydra... blocked
    at import, a fresh interpreter builds the app and reads a line through it."""
    code = f"""
import sys
for name in {TRAINING_ONLY!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
import asyncio, base64, httpx, cv2, numpy as np
from distill.runtime.predict import Recognizer
from distill.runtime.serve.app import create_app
img = np.full((20, 60, 3), 255, np.uint8); img[5:15, 5:55] = 0
data = base64.b64encode(cv2.imencode(".png", img)[1].tobytes()).decode()
async def main():
    app = create_app(Recognizer({str(model_path)!r}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/api/v1/ocr", json={{"image_base64": data}})
    await app.state.batcher.stop()
    print(r.status_code)
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "200"


def test_the_base_and_serve_installs_declare_no_training_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = project["dependencies"] + project["optional-dependencies"]["serve"]
    names = {re.split(r"[<>=\[; ]", d, maxsplit=1)[0].lower() for d in runtime}
    assert not names & {"torch", "torchvision", "lightning", "hydra-core", "omegaconf"}, names
    assert {"onnxruntime", "numpy", "fastapi", "uvicorn"} <= names


def test_the_web_page_is_served_and_posts_to_the_api(model_path):
    app = create_app(Recognizer(model_path))

    async def calls(c):
        return await c.get("/")

    page = run(app, calls)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needed in ('type="file"', "drop", "paste", 'fetch("api/v1/ocr"', "FormData"):
        assert needed in page.text, needed


def page_png() -> bytes:
    page = np.full((280, 720, 3), 255, np.uint8)
    for i, text in enumerate(["INVOICE 2026-118", "Total due: 42.50", "Thank you"]):
        cv2.putText(page, text, (30, 60 + 80 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (0, 0, 0), 3)
    return cv2.imencode(".png", page)[1].tobytes()


def test_a_page_is_read_line_by_line_with_boxes_in_reading_order(model_path):
    pytest.importorskip("rapidocr", reason="page mode's detector: pip install -e '.[page]'")
    from distill.runtime.serve.pages import TextDetector

    rec = Recognizer(model_path)
    sizes = []
    real = rec.recognize_arrays
    rec.recognize_arrays = lambda arrays: (sizes.append(len(arrays)), real(arrays))[1]
    app = create_app(rec, ServeSettings(max_wait_ms=50), detector=TextDetector())
    data = page_png()

    async def calls(c):
        health = await c.get("/healthz")
        page = await c.post(URL, files={"file": ("page.png", data, "image/png")})
        line = await c.post(URL, json={"image_base64": b64(data), "mode": "line"})
        bad = await c.post(URL, json={"image_base64": b64(data), "mode": "column"})
        return health, page, line, bad

    health, page, line, bad = run(app, calls)
    assert health.json()["detector"] == "ppocrv6"
    assert page.status_code == 200 and page.json()["mode"] == "page"
    result = page.json()["results"][0]
    assert len(result["lines"]) == 3, result
    for i, found in enumerate(result["lines"]):
        ys = [y for _, y in found["box"]]
        assert min(ys) < 60 + 80 * i - 10 < max(ys), (i, found["box"])  # around line i's ink
        assert len(found["box"]) == 4 and 0.0 <= found["confidence"] <= 1.0
    assert result["text"] == "\n".join(x["text"] for x in result["lines"])
    assert 3 in sizes  # the page's lines reached the model in one batch
    assert line.json()["mode"] == "line" and "lines" not in line.json()["results"][0]
    assert bad.status_code == 422 and "mode" in bad.json()["error"]

    # without a detector, asking for a page is a clear 422
    plain = create_app(Recognizer(model_path))
    r = run(plain, lambda c: c.post(URL, json={"image_base64": b64(data), "mode": "page"}))
    assert r.status_code == 422 and "--detector" in r.json()["error"]
