"""HTML mail to readable plain text with the stdlib ``html.parser``: no scripts, no styles, line
breaks kept where the layout had them (br, p, div, li, tr, headings), entities decoded."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = frozenset(
    {"p", "div", "br", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr",
     "section", "article", "header", "footer", "ul", "ol", "dl", "dt", "dd", "address", "center"}
)  # fmt: skip
_SKIP = frozenset({"script", "style", "head", "title", "noscript", "template", "svg"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip_depth = 0
        self.quote_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip_depth += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag in _BLOCK:
            self.out.append("\n")
            if tag == "li":
                self.out.append("- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        if tag == "blockquote":
            self.quote_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in _BLOCK:
            self.out.append("\n")
        if tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        # Source newlines in HTML are just spaces; the layout's breaks come from the tags.
        text = re.sub(r"\s+", " ", data.replace("\xa0", " "))
        if self.quote_depth and text.strip():
            # Keep blockquoted history recognisable to the quote stripper.
            text = "> " + text.strip()
        self.out.append(text)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # pragma: no cover - html.parser is lenient; belt and braces
        pass
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
