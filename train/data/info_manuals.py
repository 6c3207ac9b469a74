"""The out-of-domain tasks' rows, built from the GNU Info manuals in ``/usr/share/info``: English text on the machine
that no training task touches.

The training data is Debian package descriptions/tags/sections, CPython docstrings and other prose (``train/data``).
These tasks are built from the GNU Info manuals (coreutils, grep, sed, gzip, wget, gnupg, find, gettext, ...):
long-form prose by other authors, in another register. A recipe that only learns Debian or docstring phrasing shows up
here. They are evaluation-only: no entry of ``TASKS`` builds from them (the Info manuals are left out of every
training source, see ``usr_doc.py``), and ``tests/test_levers.py`` checks that no text of these tasks occurs in any
training task. The rows are built here, below both of their readers: ``eval/ood.py`` writes them as evaluation tasks
(dev and test) and ``train/monitor.py`` scores a run on the dev split while it trains.

- ``info_section`` (retrieval, nDCG@10): a section's title ("Invoking gzip" is left out: only titles that occur once,
  of three words or more) -> the section's first prose paragraphs, among all sections of the split.
- ``info_manual`` (clustering, V-measure): prose paragraphs, clustered by the manual they come from.

Splits: dev and test, by a sha256 hash of the (manual, node) pair, so no section is in both.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections import defaultdict
from pathlib import Path


INFO_DIR = Path("/usr/share/info")
MIN_PARAGRAPH_WORDS = 20
MAX_PASSAGE_WORDS = 120
PARAGRAPHS_PER_MANUAL = 30  # per split, so that coreutils (the largest manual) does not make up most of the clusters
UNDERLINE = re.compile(r"^[*=\-.]{3,}$")
NUMBERING = re.compile(r"^(\d+(\.\d+)*|[A-Z](\.\d+)*)\s+")

INSTRUCTIONS = {
    "info_section": "Given the title of a section of a software manual, retrieve the section's text",
    "info_manual": "Identify the software manual that the given paragraph comes from",
}
KINDS = {"info_section": "retrieval", "info_manual": "clustering"}


class InfoManualsMissingError(FileNotFoundError):
    """No GNU Info manuals on this machine; the message says where they are looked for."""


def read_manuals(info_dir: Path = INFO_DIR) -> dict[str, str]:
    """Manual name -> its whole text (multi-part manuals such as find.info-1.gz joined in order)."""
    parts: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(info_dir.glob("*.info*.gz")):
        name = path.name.split(".info")[0]
        parts[name].append(path)
    if not parts:
        raise InfoManualsMissingError(
            f"No GNU Info manuals (*.info*.gz) in {info_dir}; install Debian's info documentation "
            "(e.g. coreutils, grep, sed ship theirs) or point info_dir elsewhere."
        )
    return {
        name: "\n".join(gzip.open(p, "rt", encoding="utf-8", errors="replace").read() for p in paths)
        for name, paths in parts.items()
    }


def parse_nodes(text: str) -> list[dict]:
    """Info text -> [{"node", "title", "paragraphs"}]: prose paragraphs only (no menus, examples or tables)."""
    nodes = []
    for chunk in text.split("\x1f"):
        lines = chunk.strip("\n").split("\n")
        if not lines or not lines[0].startswith("File:") or "Node:" not in lines[0]:
            continue
        node = lines[0].split("Node:")[1].split(",")[0].strip()
        body = lines[1:]
        title = None
        for i in range(len(body) - 1):
            if body[i].strip() and UNDERLINE.match(body[i + 1].strip()):
                title, body = NUMBERING.sub("", body[i].strip()), body[i + 2 :]
                break
        if title is None:
            continue
        paragraphs, current = [], []
        for line in body + [""]:
            if line.startswith("* Menu:"):
                break
            if line.strip() == "":
                if current:
                    paragraphs.append(current)
                current = []
            else:
                current.append(line)
        prose = []
        for para in paragraphs:
            # Examples, option tables and code are indented by 5+ spaces in Info; prose starts at 0 or 3.
            if any(len(line) - len(line.lstrip(" ")) >= 5 for line in para) or para[0].lstrip().startswith("*"):
                continue
            words = " ".join(line.strip() for line in para).split()
            if len(words) >= MIN_PARAGRAPH_WORDS:
                prose.append(" ".join(words))
        nodes.append({"node": node, "title": title, "paragraphs": prose})
    return nodes


def split_of(manual: str, node: str) -> str:
    return "dev" if int(hashlib.sha256(f"{manual}\x00{node}".encode()).hexdigest(), 16) % 2 == 0 else "test"


def build(info_dir: Path = INFO_DIR) -> dict[str, dict[str, list[dict]]]:
    """task -> split -> rows: retrieval rows {id, query, passage}; clustering rows {text, label}."""
    manuals = {name: parse_nodes(text) for name, text in read_manuals(info_dir).items()}
    title_counts = defaultdict(int)
    for nodes in manuals.values():
        for node in nodes:
            title_counts[node["title"].lower()] += 1
    sections = {"dev": [], "test": []}
    paragraphs = {"dev": defaultdict(list), "test": defaultdict(list)}
    seen = set()
    for manual, nodes in sorted(manuals.items()):
        for node in nodes:
            split = split_of(manual, node["node"])
            title, prose = node["title"], [p for p in node["paragraphs"] if p not in seen]
            seen.update(prose)
            if prose and title_counts[title.lower()] == 1 and len(title.split()) >= 3:
                passage = " ".join(" ".join(prose).split()[:MAX_PASSAGE_WORDS])
                sections[split].append({"id": f"{manual}:{node['node']}", "query": title, "passage": passage})
            paragraphs[split][manual].extend(prose)
    clusters = {}
    for split, by_manual in paragraphs.items():
        rows = []
        for manual, texts in sorted(by_manual.items()):
            # Spread over the manual rather than its first chapter: every k-th paragraph.
            step = max(1, len(texts) // PARAGRAPHS_PER_MANUAL)
            rows.extend({"text": t, "label": manual} for t in texts[::step][:PARAGRAPHS_PER_MANUAL])
        clusters[split] = [r for r in rows if sum(1 for x in rows if x["label"] == r["label"]) >= 5]
    return {"info_section": sections, "info_manual": clusters}
