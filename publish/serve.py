"""Preview the model page locally: the rendered card plus a working sentence-similarity widget.

    python -m publish.serve MODEL_DIR [--port 8000] [--host 127.0.0.1]

The widget is pre-filled from the card's `widget` metadata (README.md; rendered on the fly when the folder has none).
Its query is split into the task instruction and the text, and the server embeds it with that instruction as the
sentence-transformers prompt (so the instruction is attended to but not pooled, as in training); the sentences get the
"document" prompt. Routes: `GET /` (page), `GET /api/widget` (the example), `POST /api/similarity` (JSON in/out).
"""

import argparse
import html
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from huggingface_hub import ModelCard
from markdown_it import MarkdownIt

from .card import instruction_template, render_card


logger = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; color: #1f2937; }}
header {{ padding: 12px 24px; border-bottom: 1px solid #e5e7eb; font-weight: 600; }}
main {{ display: flex; gap: 32px; padding: 24px; align-items: flex-start; }}
article {{ flex: 1 1 60%; min-width: 0; line-height: 1.5; }}
article table {{ border-collapse: collapse; }}
article td, article th {{ border: 1px solid #d1d5db; padding: 2px 8px; }}
article pre {{ background: #f3f4f6; padding: 8px; overflow-x: auto; }}
aside {{ flex: 0 0 420px; border: 1px solid #e5e7eb; border-radius: 8px; padding: 16px; position: sticky; top: 16px; }}
aside h2 {{ font-size: 15px; margin: 0 0 12px; }}
label {{ font-size: 13px; font-weight: 600; display: block; margin-top: 8px; }}
input, textarea {{ width: 100%; box-sizing: border-box; font: inherit; font-size: 13px; padding: 4px; }}
button {{ margin-top: 12px; padding: 6px 16px; font: inherit; }}
#scores div {{ display: flex; align-items: center; gap: 8px; font-size: 13px; margin-top: 6px; }}
#scores .bar {{ height: 8px; background: #6366f1; border-radius: 4px; }} #error {{ color: #b91c1c; }}
</style></head>
<body><header>{title} <small>(local preview)</small></header>
<main><article>{card_html}</article>
<aside id="widget"><h2>Sentence Similarity</h2>
<label for="instruction">Task instruction</label><input id="instruction" value="{instruction}">
<label for="source">Source sentence</label><input id="source" value="{source}">
<label>Sentences to compare to</label><div id="sentences">{sentence_inputs}</div>
<button id="compute" type="button">Compute</button>
<div id="error"></div><div id="scores"></div></aside></main>
<script>
document.getElementById("compute").addEventListener("click", async () => {{
  const sentences = [...document.querySelectorAll("#sentences input")].map(e => e.value).filter(s => s.trim());
  const body = {{instruction: document.getElementById("instruction").value,
                source_sentence: document.getElementById("source").value, sentences}};
  const out = document.getElementById("scores"), err = document.getElementById("error");
  out.replaceChildren(); err.textContent = "";
  const response = await fetch("/api/similarity", {{method: "POST", headers: {{"Content-Type": "application/json"}},
                                                     body: JSON.stringify(body)}});
  const data = await response.json();
  if (!response.ok) {{ err.textContent = data.error; return; }}
  data.scores.forEach((score, i) => {{
    const row = document.createElement("div");
    row.className = "score"; row.dataset.score = score; row.dataset.sentence = sentences[i];
    const bar = document.createElement("span");
    bar.className = "bar"; bar.style.width = Math.max(0, score) * 120 + "px";
    const text = document.createElement("span"); text.textContent = score.toFixed(3) + "  " + sentences[i];
    row.append(bar, text); out.append(row);
  }});
  out.dataset.ready = "1";
}});
</script></body></html>
"""


def split_instruction(source_sentence: str, template: str) -> tuple[str, str]:
    """("task", "text") when `source_sentence` is `template.format(task=task) + text`, else ("", source_sentence)."""
    prefix, _, suffix = template.partition("{task}")
    if source_sentence.startswith(prefix) and suffix in source_sentence[len(prefix) :]:
        task, _, text = source_sentence[len(prefix) :].partition(suffix)
        return task, text
    return "", source_sentence


class WidgetApp:
    """The model, the card and the widget example of one NV-Embed folder."""

    def __init__(self, model_dir: str | Path, base_model: str = "unknown"):
        from sentence_transformers import SentenceTransformer

        self.model_dir = Path(model_dir)
        readme = self.model_dir / "README.md"
        self.card = (
            ModelCard.load(readme)
            if readme.is_file()
            else render_card(self.model_dir, base_model=base_model, write=False)
        )
        self.template = instruction_template(self.model_dir)
        widget = (self.card.data.get("widget") or [{}])[0]
        self.instruction, self.source = split_instruction(widget.get("source_sentence", ""), self.template)
        self.sentences = list(widget.get("sentences") or [])
        self.model = SentenceTransformer(str(self.model_dir), trust_remote_code=True, device="cpu")
        self.lock = threading.Lock()  # one encode at a time: the model is shared by the request threads

    def similarity(self, source_sentence: str, sentences: list[str], instruction: str = "") -> list[float]:
        """Cosine scores of `source_sentence` (with `instruction` as its prompt) against `sentences` (documents)."""
        if not isinstance(source_sentence, str) or not source_sentence.strip():
            raise ValueError("source_sentence must be a non-empty string.")
        if (
            not isinstance(sentences, list)
            or not sentences
            or not all(isinstance(s, str) and s.strip() for s in sentences)
        ):
            raise ValueError("sentences must be a non-empty list of non-empty strings.")
        prompt = self.template.format(task=instruction) if instruction.strip() else None
        with self.lock:
            query = self.model.encode(
                [source_sentence], prompt=prompt, prompt_name=None if prompt else "query", convert_to_tensor=True
            )
            documents = self.model.encode(
                sentences, prompt_name="document" if "document" in self.model.prompts else None, convert_to_tensor=True
            )
            return self.model.similarity(query, documents)[0].tolist()

    def page(self) -> str:
        body = MarkdownIt("commonmark", {"html": False}).enable("table").render(self.card.text)
        inputs = "".join(f'<input class="sentence" value="{html.escape(s)}">' for s in self.sentences + [""])
        return PAGE.format(
            title=html.escape(self.model_dir.resolve().name),
            card_html=body,
            instruction=html.escape(self.instruction),
            source=html.escape(self.source),
            sentence_inputs=inputs,
        )


class WidgetHandler(BaseHTTPRequestHandler):
    app: WidgetApp  # set on the class by `make_server`

    def log_message(self, fmt, *args):
        logger.debug(fmt, *args)

    def _send(self, status: int, body: str, content_type: str):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in ("/", "/index.html"):
            return self._send(200, self.app.page(), "text/html")
        if self.path == "/api/widget":
            example = {
                "instruction": self.app.instruction,
                "source_sentence": self.app.source,
                "sentences": self.app.sentences,
            }
            return self._send(200, json.dumps(example), "application/json")
        self._send(404, json.dumps({"error": f"no route {self.path}"}), "application/json")

    def do_POST(self):
        if self.path != "/api/similarity":
            return self._send(404, json.dumps({"error": f"no route {self.path}"}), "application/json")
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            scores = self.app.similarity(
                request.get("source_sentence"), request.get("sentences"), request.get("instruction") or ""
            )
        except (ValueError, TypeError, AttributeError) as e:
            return self._send(400, json.dumps({"error": str(e)}), "application/json")
        self._send(200, json.dumps({"scores": scores}), "application/json")


def make_server(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server for `model_dir` (not started: call `serve_forever`). `port=0` picks a free port."""
    handler = type("BoundWidgetHandler", (WidgetHandler,), {"app": WidgetApp(model_dir)})
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m publish.serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = make_server(args.model_dir, args.host, args.port)
    logger.info("serving %s on http://%s:%d/", args.model_dir, *server.server_address[:2])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
