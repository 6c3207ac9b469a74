"""Documents as (heading, paragraphs) sections: the structure the broad training pairs are cut from.

One event parser (the standard library's ``html.parser``) reads the HTML of DocBook (Debian handbook, reference,
FAQ, PostgreSQL), Sphinx (Django), LibreOffice's help and GNOME's Mallard pages (XML with ``<title>``, ``<desc>``
and ``<p>``): a heading (``h1``-``h6``, or Mallard's ``title``) opens a section, every ``<p>`` outside ``<pre>``,
tables, navigation and Mallard's ``<info>`` adds a paragraph to the open section, and Mallard's ``<desc>`` (a page's
one-line summary) is kept as the document's summary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser


HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6", "title"}
SKIPPED = {"pre", "table", "script", "style", "nav", "code-block", "screen", "info", "head"}
# Divs whose content is navigation, not text (Sphinx's sidebar and related links, DocBook's headers and footers).
SKIPPED_DIV_CLASSES = {
    "sphinxsidebar",
    "related",
    "footer",
    "navheader",
    "navfooter",
    "toc",
    "nav",
    "searchformwrapper",
}
PARAGRAPH_DIV_CLASSES = {"para"}  # Publican (Debian handbook, harden-doc) writes <div class="para"> for <p>
NUMBERING = re.compile(r"^((\d+|[A-Z])(\.\d+)*\.?|[IVX]+\.)\s+")


@dataclass
class Section:
    """A heading and the paragraphs under it, in document order."""

    heading: str
    paragraphs: list[str] = field(default_factory=list)


@dataclass
class Document:
    """One file's sections and, for Mallard pages, its one-line ``summary`` (``<desc>``)."""

    sections: list[Section]
    summary: str = ""


def clean_heading(text: str) -> str:
    """``text`` without its numbering ("2.1. "), permalink signs and surrounding whitespace."""
    text = " ".join(text.replace("¶", " ").split())
    return NUMBERING.sub("", text).strip()


class _SectionParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.summary = ""
        self._skip = 0  # depth inside SKIPPED elements
        self._in_info_desc = False
        self._heading: list[str] | None = None
        self._paragraph: list[str] | None = None
        self._divs: list[str] = []  # per open div: "skip", "para" or ""

    def handle_starttag(self, tag, attrs):
        if tag == "div":
            classes = set((dict(attrs).get("class") or "").split())
            role = "skip" if classes & SKIPPED_DIV_CLASSES else "para" if classes & PARAGRAPH_DIV_CLASSES else ""
            self._divs.append(role)
            if role == "skip":
                self._skip += 1
            elif role == "para" and not self._skip and self._heading is None:
                self._paragraph = []
            return
        if tag in SKIPPED:
            self._skip += 1
            return
        if tag == "desc" and self._skip == 1:
            self._in_info_desc = True
            self._paragraph = []
            return
        if self._skip:
            return
        if tag in HEADINGS:
            self._heading = []
        elif tag == "p" and self._heading is None:
            self._paragraph = []

    def handle_endtag(self, tag):
        if tag == "div":
            role = self._divs.pop() if self._divs else ""
            if role == "skip":
                self._skip = max(0, self._skip - 1)
            elif role == "para":
                self._end_paragraph()
            return
        if tag in SKIPPED:
            self._skip = max(0, self._skip - 1)
            return
        if tag == "desc" and self._in_info_desc:
            self.summary = " ".join("".join(self._paragraph or []).split())
            self._in_info_desc, self._paragraph = False, None
            return
        if self._skip:
            return
        if tag in HEADINGS and self._heading is not None:
            heading = clean_heading("".join(self._heading))
            self._heading = None
            if heading:
                self.sections.append(Section(heading))
        elif tag == "p":
            self._end_paragraph()

    def _end_paragraph(self):
        if self._paragraph is None:
            return
        text = " ".join("".join(self._paragraph).split())
        self._paragraph = None
        if text and self.sections:
            self.sections[-1].paragraphs.append(text)

    def handle_data(self, data):
        if self._in_info_desc and self._paragraph is not None:
            self._paragraph.append(data)
        elif self._skip:
            return
        elif self._heading is not None:
            self._heading.append(data)
        elif self._paragraph is not None:
            self._paragraph.append(data)


def parse_sections(markup: str) -> Document:
    """The sections of one HTML page or Mallard ``.page`` file.

    Example:
        >>> doc = parse_sections("<h2>1.2. Why Debian?</h2><p>Because it is free.</p><pre>x</pre><p>And stable.</p>")
        >>> doc.sections
        [Section(heading='Why Debian?', paragraphs=['Because it is free.', 'And stable.'])]
    """
    parser = _SectionParser()
    parser.feed(markup)
    parser.close()
    return Document([s for s in parser.sections if s.paragraphs], parser.summary)
