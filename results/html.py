"""The report's Markdown as one self-contained HTML page.

Figures are inlined as data URIs, and so is every local file the page links (the tables'
Markdown, LaTeX and CSV, the figures' PDFs): a link to ``tables/x.tex`` becomes a
``data:`` link with a ``download="x.tex"`` attribute, so the page can be mailed or served
alone and still hands out every file it shows. Links to other sites stay links.

Handles the Markdown subset the report writes: ``#`` headings, paragraphs, ``-`` lists,
pipe tables (with a ``|---|`` separator row; ``---:`` right-aligns), images
``![alt](path)``, links, ``**bold**``, ``*italic*`` and ``code``. Everything else is
escaped and shown as text, never interpreted, so the page holds no script.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e4e4e4; }
thead th { border-bottom: 2px solid #444; } td.r, th.r { text-align: right; }
img { max-width: 100%; height: auto; } figure { margin: 1rem 0; } figcaption { font-size: 13px; color: #555; }
code { background: #f4f4f4; padding: 0 .2rem; border-radius: 3px; }
"""

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def markdown_to_html(text: str, base: Path, title: str) -> str:
    """The page for ``text``; image and link paths are read relative to ``base`` and inlined."""
    _BASE.append(Path(base))
    try:
        return _page(text, Path(base), title)
    finally:
        _BASE.pop()


def _page(text: str, base: Path, title: str) -> str:
    body: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            body.append(_table(block))
        elif _IMAGE.fullmatch(line.strip()):
            alt, src = _IMAGE.fullmatch(line.strip()).groups()
            body.append(f'<figure><img alt="{html.escape(alt)}" src="{_data_uri(base / src)}"></figure>')
            i += 1
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ")) \
                    and not _IMAGE.fullmatch(lines[i].strip()):
                para.append(lines[i])
                i += 1
            body.append(f"<p>{_inline(' '.join(para))}</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _table(block: list[str]) -> str:
    rows = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in block]
    header, align, body = rows[0], rows[1] if len(rows) > 1 else [], rows[2:]
    if not all(set(a) <= set(":-") for a in align):  # no separator row: all body
        header, align, body = [], [], rows
    right = [a.endswith(":") and not a.startswith(":") for a in align]

    def cells(row: list[str], tag: str) -> str:
        return "".join(f'<{tag}{" class=r" if j < len(right) and right[j] else ""}>{_inline(c)}</{tag}>'
                       for j, c in enumerate(row))

    head = f"<thead><tr>{cells(header, 'th')}</tr></thead>" if header else ""
    return f"<table>{head}<tbody>" + "".join(f"<tr>{cells(r, 'td')}</tr>" for r in body) + "</tbody></table>"


_BASE: list[Path] = []  # the folder relative links are read from, while a page is built


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"(?<![*\w])\*([^*]+)\*(?![*\w])", r"<i>\1</i>", out)
    return _LINK.sub(lambda m: _link(m.group(1), html.unescape(m.group(2))), out)


_LINKED = {".pdf": "application/pdf", ".csv": "text/csv;charset=utf-8", ".md": "text/markdown;charset=utf-8",
           ".tex": "application/x-tex;charset=utf-8", ".json": "application/json", ".txt": "text/plain;charset=utf-8"}
"""Local files a link embeds, by suffix (figures' PNGs are shown, not linked)."""


def _link(label: str, href: str) -> str:
    """A link; one to a local file the page ships is embedded as a ``data:`` download."""
    path = _BASE[-1] / href if _BASE and not re.match(r"^[a-z][a-z0-9+.-]*:", href) else None
    kind = _LINKED.get(path.suffix.lower(), "") if path is not None else ""
    if path is not None and kind and path.is_file():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<a href="data:{kind};base64,{data}" download="{html.escape(path.name)}">{label}</a>'
    return f'<a href="{html.escape(href)}">{label}</a>'


def _data_uri(path: Path) -> str:
    kind = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(path.suffix.lower(), "")
    if not kind or not path.is_file():
        return html.escape(str(path))
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
