"""The web page in a real headless browser (Debian's Chromium and chromedriver through
selenium; ``bash scripts/install_browser.sh`` installs them, ``.ci/run`` does as root).

An image is uploaded through the page's file input; the text the page shows must be the
predictor's reading of that image; in page mode the boxes are drawn over the image.
``SCREENSHOT_DIR=benchmarks/results pytest tests/test_serve_browser.py`` also keeps the
screenshots there (the committed ones were made so).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from .helpers import ROOT

pytest.importorskip(
    "fastapi", reason="the server extra is not installed: pip install -e '.[serve]'"
)
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'"
)
if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytest.skip(
        "no headless browser: bash scripts/install_browser.sh (chromium, chromium-driver)",
        allow_module_level=True,
    )

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from distill.runtime.predict import Recognizer, read_image  # noqa: E402
from distill.runtime.serve.app import create_app  # noqa: E402

MODEL = ROOT / "models" / "en_student.onnx"
SAMPLE = ROOT / "data" / "samples" / "img" / "000.png"


class LiveServer:
    """uvicorn on a free local port, in a thread."""

    def __init__(self, app):
        import uvicorn

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        end = time.time() + 30
        while not self.server.started and time.time() < end:
            time.sleep(0.05)
        assert self.server.started, "the server did not start"
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1000,900",
    ):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def upload(driver, url: str, image: Path) -> list[list[str]]:
    """Open the page, pick ``image`` with its file input, return the result table's rows."""
    driver.get(url)
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "model").text)
    pick = driver.find_element(By.ID, "pick")
    driver.execute_script("arguments[0].hidden = false;", pick)  # a label covers it for users
    pick.send_keys(str(image))
    WebDriverWait(driver, 30).until(EC.visibility_of_element_located((By.ID, "results")))
    rows = driver.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    return [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]


def keep_screenshot(driver, name: str, tmp_path: Path) -> Path:
    driver.execute_script("document.getElementById('pick').hidden = true;")  # as users see it
    path = tmp_path / name
    driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["SCREENSHOT_DIR"]) / name)
    return path


def test_the_page_shows_the_text_of_an_uploaded_line(browser, tmp_path):
    rec = Recognizer(MODEL)
    expected = rec.recognize([read_image(SAMPLE)])[0].text
    with LiveServer(create_app(Recognizer(MODEL))) as url:
        rows = upload(browser, url, SAMPLE)
        status = browser.find_element(By.ID, "status").text
        keep_screenshot(browser, "serve_page_line.png", tmp_path)
    assert len(rows) == 1
    name, text, confidence, ms = rows[0]
    assert name == SAMPLE.name and text == expected
    assert 0.0 <= float(confidence) <= 1.0 and float(ms.split()[0]) > 0
    assert "1 image(s), 1 line(s)" in status


def test_the_page_draws_the_boxes_of_a_whole_page(browser, tmp_path):
    pytest.importorskip("rapidocr", reason="page mode's detector: pip install -e '.[page]'")
    from distill.runtime.serve.pages import TextDetector

    lines = [read_image(ROOT / "data" / "samples" / "img" / f"00{i}.png") for i in range(4)]
    scaled = [cv2.resize(x, (int(x.shape[1] * 40 / x.shape[0]), 40)) for x in lines]
    page = np.full((4 * 70 + 60, max(x.shape[1] for x in scaled) + 80, 3), 255, np.uint8)
    for i, x in enumerate(scaled):
        page[40 + 70 * i : 80 + 70 * i, 40 : 40 + x.shape[1]] = x
    path = tmp_path / "page.png"
    cv2.imwrite(str(path), page[:, :, ::-1])
    with LiveServer(create_app(Recognizer(MODEL), detector=TextDetector())) as url:
        rows = upload(browser, url, path)
        polygons = browser.find_elements(By.CSS_SELECTOR, "#boxes polygon")
        keep_screenshot(browser, "serve_page_boxes.png", tmp_path)
    assert len(rows) == 4 and [r[0] for r in rows] == [f"page.png #{i}" for i in range(1, 5)]
    assert len(polygons) == 4
