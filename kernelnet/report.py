"""The pipeline report: one self-contained ``report.html`` (PNG plots embedded as data URIs) and ``report.md``.

A report is a list of :class:`Section` (title, key/value facts, tables, images); rendering is plain string
building with escaping, so the HTML opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelnet.runtime.io.atomic import write_text

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1d1d1f;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:right}th{background:#f4f4f6}td:first-child,th:first-child{text-align:left}
.facts td{text-align:left}.ok{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}.muted{color:#666;font-size:.9em}
"""


@dataclass
class Section:
    """One report section: facts (key → value), tables (caption, rows), images (caption, PNG path), notes."""

    title: str
    facts: list[tuple[str, Any]] = field(default_factory=list)
    tables: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    images: list[tuple[str, Path]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fmt_value(value: Any) -> str:
    """Human formatting: floats to 4 significant digits (scientific when tiny), booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return str(value)
        return f"{value:.3e}" if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6) else f"{value:.4g}"
    return str(value)


def _cell(value: Any) -> str:
    text = html.escape(fmt_value(value))
    if isinstance(value, bool):
        return f'<td class="{"ok" if value else "bad"}">{text}</td>'
    return f"<td>{text}</td>"


def _table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p class=muted>(none)</p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(r.get(c, "")) for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img_html(caption: str, path: Path) -> str:
    if not path.is_file():
        return f"<p class=muted>({html.escape(caption)}: not produced)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption class=muted>{html.escape(caption)}</figcaption></figure>")


def render_html(title: str, sections: list[Section], subtitle: str = "") -> str:
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f"<p class=muted>{html.escape(subtitle)}</p>")
    for sec in sections:
        parts.append(f"<section><h2>{html.escape(sec.title)}</h2>")
        if sec.facts:
            parts.append('<table class="facts">' + "".join(
                f"<tr><th>{html.escape(k)}</th>{_cell(v)}</tr>" for k, v in sec.facts) + "</table>")
        for caption, rows in sec.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>{_table_html(rows)}")
        for caption, path in sec.images:
            parts.append(_img_html(caption, Path(path)))
        for note in sec.notes:
            parts.append(f"<p>{html.escape(note)}</p>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _table_md(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt_value(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_markdown(title: str, sections: list[Section], base: Path, subtitle: str = "") -> str:
    out = [f"# {title}\n"]
    if subtitle:
        out.append(f"{subtitle}\n")
    for sec in sections:
        out.append(f"\n## {sec.title}\n")
        if sec.facts:
            out.append(_table_md([{"what": k, "value": v} for k, v in sec.facts]))
        for caption, rows in sec.tables:
            out.append(f"\n**{caption}**\n\n{_table_md(rows)}")
        for caption, path in sec.images:
            rel = os.path.relpath(Path(path), base)
            out.append(f"\n![{caption}]({rel})\n")
        for note in sec.notes:
            out.append(f"\n{note}\n")
    return "".join(out)


def write_report(out_dir: str | os.PathLike[str], title: str, sections: list[Section],
                 subtitle: str = "") -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (images linked) atomically."""
    out_dir = Path(out_dir)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    write_text(html_path, render_html(title, sections, subtitle))
    write_text(md_path, render_markdown(title, sections, out_dir, subtitle))
    return html_path, md_path
