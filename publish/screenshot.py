"""Screenshot the local model page (`publish.serve`) after the widget has computed its scores, in headless Chromium.

    python -m publish.screenshot MODEL_DIR [--output benchmarks/widget_screenshot.png]

This is the command that writes the tracked `benchmarks/widget_screenshot.png`; the widget test takes its screenshot
with the same `compute_and_screenshot` into a temporary folder. Needs the Debian package `chromium` and the pip package
`playwright` (its own browser download is not used).
"""

import argparse
import logging
import os
import threading
from pathlib import Path

from .serve import make_server


logger = logging.getLogger(__name__)

CHROMIUM = os.environ.get("NVEMBED_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}


def compute_and_screenshot(page, output: str | Path) -> list[float]:
    """Press the widget's Compute button on an open page, wait for the scores, save a screenshot to `output`.

    Returns:
        The scores the page shows, in its order.
    """
    page.click("#compute")
    page.wait_for_selector("#scores[data-ready='1']", timeout=60_000)
    rows = page.locator("#scores .score")
    scores = [float(rows.nth(i).get_attribute("data-score")) for i in range(rows.count())]
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(output), full_page=False)
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m publish.screenshot", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir")
    parser.add_argument("--output", default="benchmarks/widget_screenshot.png")
    parser.add_argument(
        "--chromium", default=CHROMIUM, help="Chromium executable (default: $NVEMBED_CHROMIUM or %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not Path(args.chromium).is_file():
        raise SystemExit(f"{args.chromium} not found (apt-get install chromium, or pass --chromium)")
    from playwright.sync_api import sync_playwright

    server = make_server(args.model_dir, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"http://127.0.0.1:{server.server_address[1]}", timeout=30_000)
                scores = compute_and_screenshot(page, args.output)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    logger.info("scores %s; screenshot written to %s", [round(s, 3) for s in scores], args.output)


if __name__ == "__main__":
    main()
