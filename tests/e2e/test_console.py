"""The web console in a real browser (headless Chromium, Debian's package, driven by
Playwright) against the local stack: the founding example quoted, accepted, watched to the end,
its images in the gallery and downloaded (manifest and zip), and the market.

Screenshots of each page go to ``$SUBC_CONSOLE_SCREENSHOTS`` (``make console-screenshots``
writes docs/console/), else to the test's temporary folder.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra.local import demo
from infra.local.stack import LocalStack
from subconscious.render.png import png_size
from tests.local_stacks import running_stack

CHROMIUM = Path("/usr/bin/chromium")
# Everything that would reach outside 127.0.0.1 is off: the test runs offline.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS_ENV = "SUBC_CONSOLE_SCREENSHOTS"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)"
)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which(str(CHROMIUM)) is None,
        reason=f"no Chromium at {CHROMIUM}: `make test` installs Debian's (apt-get install "
        "chromium); run it, or install it, to run the browser tests",
    ),
]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    """The local stack with its own settings (not the fault suite's short deadlines): a
    healthy market whose machines render fast, so the pipeline, not the GPU, sets the pace."""
    with running_stack(images_per_s=400, machine_logs=tmp_path / "machines") as local:
        yield local


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait_until(page: Any, expression: str, timeout_s: float) -> None:
    """Poll a JavaScript expression from here: ``page.wait_for_function`` evaluates a string
    inside the page, which the console's policy (no 'unsafe-eval') rightly refuses."""
    end = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < end, f"still false after {timeout_s} s: {expression}"
        page.wait_for_timeout(200)


def _order_state(page: Any) -> str:
    return str(page.locator("#order-state .tag").inner_text()).strip()


def test_the_founding_example_in_the_console_from_quote_to_gallery_and_download(
    stack: LocalStack, browser: Any, shots: Path, tmp_path: Path
) -> None:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, timezone_id="UTC"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    refused: set[tuple[int, str]] = set()
    page.on(
        "response",
        lambda r: refused.add((r.status, urlsplit(r.url).path)) if r.status >= 400 else None,
    )

    # sign in: the page loads with no key; the key goes to sessionStorage only
    response = page.goto(f"{stack.api_url}/console")
    assert response is not None and response.status == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("#view-signin:not([hidden])")
    page.fill("#api-key", stack.api_key)
    page.screenshot(path=shots / "1-sign-in.png")
    page.fill("#api-key", "sk_wrong_key_for_the_test")
    page.click("#signin-button")
    page.wait_for_selector("#banner:not([hidden])")
    assert "refused" in page.inner_text("#banner")
    assert page.evaluate("sessionStorage.length") == 0
    page.fill("#api-key", stack.api_key)
    page.click("#signin-button")
    page.wait_for_selector("#view-quote:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('subconscious.apiKey')") == stack.api_key

    # quote the founding example: 1000 images from 10 prompts, by the end of the day, under
    # 3 cents an image
    page.fill("#prompts", "\n".join(demo.PROMPTS))
    page.fill("#images", "1000")
    page.click("[data-deadline=eod]")
    assert page.inner_text("#per-prompt") == "100 per prompt × 10 prompts"

    # first with a price cap no GPU can meet: accepting asks, naming what fails; "Back"
    # places nothing
    page.fill("#budget", "0.000001")
    page.click("#quote-button")
    page.wait_for_selector("#options tbody tr")
    assert page.locator("#options tbody tr:has(td .tag.ok)").count() == 0
    page.locator("#options tbody tr button").first.click()
    page.wait_for_selector("#confirm[open]")
    assert "over your maximum of $0.000001" in page.inner_text("#confirm-text")
    page.screenshot(path=shots / "2b-outside-terms-confirm.png")
    page.click("#confirm-no")
    assert page.locator("#confirm[open]").count() == 0
    assert page.evaluate("location.hash") == "#quote"
    # "Accept anyway" places it (the API takes it only with accept_outside_terms); then
    # cancelled from its page, after a confirm of its own
    page.locator("#options tbody tr button").first.click()
    page.click("#confirm-yes")
    page.wait_for_selector("#view-order:not([hidden])")
    outside_order = page.inner_text("#order-id")
    page.click("#cancel-order")
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-yes")
    page.wait_for_selector("#order-state .tag:has-text('cancelled')")
    assert page.inner_text("#order-reason") == "cancelled"
    assert not page.is_visible("#cancel-order")  # an ended order cannot be cancelled again
    page.click("#nav a[data-view=quote]")

    page.fill("#budget", "0.03")
    page.click("#quote-button")
    page.wait_for_selector("#quote-summary:has-text('at most $0.03')")
    page.wait_for_selector("#quote-result:not([hidden])")
    rows = page.locator("#options tbody tr")
    assert rows.count() >= 1
    assert page.locator("#chart svg .point").count() == rows.count()
    # the deadline and the price cap, as lines or, far beyond every option, named at the edge
    assert page.locator("#chart svg .term-label").count() == 2
    assert "1000 images from 10 prompts" in page.inner_text("#quote-summary")
    page.screenshot(path=shots / "2-quote-options-and-chart.png", full_page=True)

    # accept the first option within the terms: straight to the order's page
    page.locator("#options tbody tr:has(td .tag.ok) button").first.click()
    page.wait_for_selector("#view-order:not([hidden])")
    order_id = page.inner_text("#order-id")
    assert re.fullmatch(r"o-[0-9a-f]{32}", order_id)

    # watch it: progress moves, then completes
    # about a minute on an idle 2-core machine; minutes when every core is busy
    deadline = time.monotonic() + 480
    progress_shot = False
    while _order_state(page) != "completed" and time.monotonic() < deadline:
        done = page.evaluate("document.querySelector('#order-progress').value")
        if not progress_shot and 300 <= done < 1000 and page.locator("#gallery img").count():
            page.screenshot(path=shots / "3-order-progress.png")
            progress_shot = True
        page.wait_for_timeout(200)
    assert _order_state(page) == "completed", page.inner_text("#order-count")
    assert page.inner_text("#order-count") == "1000 of 1000 delivered"
    assert page.inner_text("#order-reason") == "all delivered"
    assert page.inner_text("#order-charge").startswith("$")
    assert "spend" not in page.content().lower()  # customer money only

    # the gallery: every image, each with its prompt and seed, loaded through its presigned link
    _wait_until(page, "document.querySelectorAll('#gallery img').length === 1000", 30)
    first = page.locator("#gallery figure").first
    assert first.locator(".prompt").inner_text() in demo.PROMPTS
    assert re.fullmatch(r"seed \d+", first.locator(".seed").inner_text())
    # lazy thumbnails load as they scroll into view: the first 100, scrolled through
    for index in range(0, 100, 12):
        page.locator("#gallery img").nth(index).scroll_into_view_if_needed()
    _wait_until(
        page,
        "[...document.querySelectorAll('#gallery img')].slice(0, 100)"
        ".every(i => i.complete && i.naturalWidth === 512)",
        60,
    )
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=shots / "4-gallery.png")
    if not progress_shot:  # rendered faster than watched: the finished order stands in
        page.screenshot(path=shots / "3-order-progress.png")

    # download: the manifest, then the zip of every image with the manifest inside
    with page.expect_download() as manifest_download:
        page.click("#download-manifest")
    manifest_path = tmp_path / "manifest.jsonl"
    manifest_download.value.save_as(manifest_path)
    lines = [json.loads(line) for line in manifest_path.read_text().splitlines()]
    assert len(lines) == 1000 and {line["order_id"] for line in lines} == {order_id}
    assert {line["prompt"] for line in lines} == set(demo.PROMPTS)
    assert len({line["file"] for line in lines}) == 1000
    with page.expect_download(timeout=60_000) as zip_download:
        page.click("#download-zip")
    archive = zipfile.ZipFile(io.BytesIO(Path(zip_download.value.path()).read_bytes()))
    assert archive.testzip() is None  # every CRC matches
    names = archive.namelist()
    assert len(names) == 1001 and "manifest.jsonl" in names
    assert png_size(archive.read(lines[0]["file"])) == (512, 512)

    # the orders list and the market
    page.click("#nav a[data-view=orders]")
    page.wait_for_selector(f"#orders a[href='#order/{order_id}']")
    # newest first: the founding order above the cancelled one
    links = page.locator("#orders tbody a").evaluate_all("links => links.map(a => a.hash)")
    assert links == [f"#order/{order_id}", f"#order/{outside_order}"]
    page.screenshot(path=shots / "5-orders.png")
    page.click("#nav a[data-view=market]")
    page.wait_for_selector("#market-gpus tbody tr")
    assert page.locator("#market-providers tbody tr").count() == len(stack.providers)
    page.screenshot(path=shots / "6-market.png", full_page=True)

    # the key never went into a URL, and the page raised no error (CSP violations included)
    assert not [url for url in requested if stack.api_key in url]
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []
    # the wrong key, and GET /v1/orders where this API does not list orders yet (the page
    # then lists this tab's own)
    assert refused <= {(401, "/v1/market"), (404, "/v1/orders")}, refused
    page.click("#sign-out")
    assert page.evaluate("sessionStorage.getItem('subconscious.apiKey')") is None
    context.close()
