"""The local Hub-widget preview (`python -m publish.serve`), end to end in headless Chromium driven by Playwright.

Needs the Debian package `chromium` and the pip package `playwright` (its browser download is not used). Outside CI a
missing browser skips the browser test with the reason; in CI (the `CI` variable set) it fails. The tests write only
to temporary folders: `python -m publish.screenshot` writes the tracked `benchmarks/widget_screenshot.png`.
"""

import json
import os
import shutil
import threading
import urllib.request
from pathlib import Path

import pytest
import torch

from publish.card import render_card
from publish.screenshot import CHROMIUM, CHROMIUM_FLAGS, VIEWPORT, compute_and_screenshot
from publish.serve import make_server, split_instruction


INSTRUCTIONS = {
    "debian_description": {"kind": "retrieval", "instruction": "Given a package summary, retrieve its description"}
}
QUERY = "compress a file with gzip"
PASSAGES = [
    "gzip compresses files with the deflate algorithm",
    "the quick brown fox jumps over the lazy dog",
    "network time protocol daemon keeps clocks in sync",
]


def browser_missing_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "pip package `playwright` is not installed"
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not found (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def widget_server(tiny_nvembed_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("widget") / "model"
    shutil.copytree(tiny_nvembed_folder, folder)
    (folder / "instructions.json").write_text(json.dumps(INSTRUCTIONS))
    render_card(folder, base_model="HuggingFaceTB/SmolLM2-135M-Instruct", widget_query=QUERY, widget_passages=PASSAGES)
    server = make_server(folder, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def model_scores(folder: Path, instruction: str, query: str, passages: list[str]) -> list[float]:
    """The model's own cosine scores, through AutoModel's `encode` (not the widget's sentence-transformers path)."""
    from transformers import AutoModel

    from modeling_nvembed import format_instruction

    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.inference_mode():
        q = model.encode([query], instruction=format_instruction(instruction))
        p = model.encode(passages)
    return (q @ p.T)[0].tolist()


def test_split_instruction_inverts_the_template():
    template = "Instruct: {task}\nQuery:\n"
    assert split_instruction(template.format(task="find docs") + "gzip", template) == ("find docs", "gzip")
    assert split_instruction("plain text", template) == ("", "plain text")


def test_similarity_endpoint_matches_model(widget_server):
    folder, url = widget_server
    example = json.load(urllib.request.urlopen(f"{url}/api/widget", timeout=30))
    assert example == {
        "instruction": INSTRUCTIONS["debian_description"]["instruction"],
        "source_sentence": QUERY,
        "sentences": PASSAGES,
    }
    request = urllib.request.Request(
        f"{url}/api/similarity", data=json.dumps(example).encode(), headers={"Content-Type": "application/json"}
    )
    scores = json.load(urllib.request.urlopen(request, timeout=60))["scores"]
    assert scores == pytest.approx(model_scores(folder, example["instruction"], QUERY, PASSAGES), abs=1e-5)

    bad = urllib.request.Request(f"{url}/api/similarity", data=b'{"source_sentence": "x", "sentences": []}')
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad, timeout=30)
    assert info.value.code == 400 and "sentences" in json.load(info.value)["error"]


def test_widget_in_headless_chromium(widget_server, tmp_path):
    reason = browser_missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the browser for this test: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    folder, url = widget_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url, timeout=30_000)
            # the card is rendered as HTML and the widget is pre-filled from its metadata
            assert page.locator("article h2", has_text="Usage").count() == 1
            assert page.locator("article table").count() >= 2
            assert page.input_value("#instruction") == INSTRUCTIONS["debian_description"]["instruction"]
            assert page.input_value("#source") == QUERY
            assert [page.input_value(f"#sentences input >> nth={i}") for i in range(len(PASSAGES))] == PASSAGES

            shown = compute_and_screenshot(page, tmp_path / "widget_screenshot.png")
            rows = page.locator("#scores .score")
            texts = [rows.nth(i).inner_text() for i in range(rows.count())]
        finally:
            browser.close()

    expected = model_scores(folder, INSTRUCTIONS["debian_description"]["instruction"], QUERY, PASSAGES)
    assert shown == pytest.approx(expected, abs=1e-5)
    assert [t.split()[0] for t in texts] == [f"{s:.3f}" for s in expected]
    assert (tmp_path / "widget_screenshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
