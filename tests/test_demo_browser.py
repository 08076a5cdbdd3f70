"""The demo in a real browser: headless Debian Chromium driven by Playwright's Python package
(through executable_path; its own browser download is never used). The site is served on
127.0.0.1 and every request elsewhere is refused, so the page has to work offline.

Needs chromium (apt-get install chromium), the `browser` extra and onnxruntime-web
(`make demo-deps`); without them the test is skipped with the reason, except under
CI=true, where it fails: CI must not pass by skipping it.
"""
from __future__ import annotations

import functools
import http.server
import io
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist import api
from fmnist.config import RunConfig
from fmnist.data.images import read_picture
from test_demo import RESIZE_TOL

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def browser_parts():
    """(chromium path, onnxruntime-web dist folder), or skip / fail saying what is missing."""
    from fmnist.errors import FmnistError

    missing = []
    chromium = chromium_path()
    if chromium is None:
        missing.append("chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -c constraints.txt 'fmnist[browser]')")
    try:
        from fmnist.export.demo import find_ort_web
        ort_dir = find_ort_web()[0]
    except FmnistError:
        ort_dir = None
        missing.append("onnxruntime-web (make demo-deps)")
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        missing.append("the export extra (pip install -c constraints.txt 'fmnist[export]')")
    if missing:
        reason = "browser test needs " + ", ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: not skipped)")
        pytest.skip(reason)
    return chromium, ort_dir


class Site:
    """A folder served on 127.0.0.1 by the standard library's server, in a thread."""

    def __init__(self, folder: Path) -> None:
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # no request lines in the test output
                pass
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Site":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_page_predicts_what_fmnist_predict_does(browser_parts, real_data_dir, tmp_path,
                                                    monkeypatch):
    from playwright.sync_api import sync_playwright

    from fmnist.data import load
    from fmnist.export.demo import build_demo

    chromium, ort_dir = browser_parts
    monkeypatch.setenv("FMNIST_DATA", str(real_data_dir))
    # the default model, briefly trained on real data (confident, so no near-ties), in fp32:
    # then `fmnist predict` computes what the page does (a bf16 run's torch path rounds
    # its activations, the export is fp32)
    config = RunConfig().replace(
        data={"train_limit": 6000, "val_size": 1000}, model={"name": "cnn"},
        optim={"name": "adam", "lr": 2e-3},
        train={"epochs": 2, "threads": 1, "precision": "fp32", "eval_subset": 1000})
    run = api.train(config, out=tmp_path / "run", plots=False)
    site = build_demo(run.dir, tmp_path / "site", ort_dir=ort_dir, log=lambda line: None)

    test = load("fashion-mnist", "test")
    files = []
    for i in (0, 1):  # test images as PNG, as the data set stores them
        files.append(tmp_path / f"test{i}.png")
        Image.fromarray(test.images[i]).save(files[-1])
    photo = Image.fromarray(255 - test.images[2]).resize((112, 112), Image.BICUBIC)
    files.append(tmp_path / "photo.png")  # dark garment on light paper, bigger: like a photo
    photo.save(files[-1])
    want = api.predict(api.open_run(run.dir, "cpu"), files, out=tmp_path / "p.csv")
    want_names = [want.class_names[k] for k in want.probs.argmax(1)]

    refused: list[str] = []
    with Site(site) as served, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 480})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            def only_local(route):
                if route.request.url.startswith(served.url):
                    route.continue_()
                else:
                    refused.append(route.request.url)
                    route.abort()
            page.route("**/*", only_local)
            page.goto(served.url)
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            for path, name in zip(files, want_names):
                page.set_input_files("#file", str(path))
                page.wait_for_function(
                    f"document.getElementById('top').dataset.source === {path.name!r}",
                    timeout=30_000)
                assert page.get_attribute("#top", "data-label") == name, path.name
                fed = np.array(page.evaluate(
                    "Array.from(document.getElementById('fed').getContext('2d')"
                    ".getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))"), np.uint8)
                diff = np.abs(fed.reshape(28, 28).astype(int) - read_picture(path)).max()
                assert diff <= RESIZE_TOL, path.name  # 0: the image Python prepares
            assert page.locator("#bars .bar").count() == 10
            # a drawing with the mouse gets a prediction too
            box = page.locator("#pad").bounding_box()
            page.mouse.move(box["x"] + 80, box["y"] + 60)
            page.mouse.down()
            for x, y in ((200, 60), (200, 230), (80, 230), (80, 60)):
                page.mouse.move(box["x"] + x, box["y"] + y, steps=5)
            page.mouse.up()
            page.wait_for_function(
                "document.getElementById('top').dataset.source === 'drawing'", timeout=30_000)
            shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("L"))
            assert errors == []
        finally:
            browser.close()
    assert refused == []  # nothing but the local site was asked for
    assert shot.std() > 20 and (shot < 100).mean() > 0.01  # not blank: text, pictures, bars
