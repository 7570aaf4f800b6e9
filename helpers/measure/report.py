"""A run's report, exported as Markdown and HTML (figures embedded), written under runs/."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path


def figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _markdown_to_html(markdown: str) -> str:
    """Headings, paragraphs and pipe tables of our own Markdown (not a general converter)."""
    out, table = [], []

    def flush():
        if table:
            head, *body = [[html.escape(c.strip()) for c in row.strip().strip("|").split(" | ")] for row in table
                           if not set(row.replace("|", "").strip()) <= {"-"}]
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body) + "</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


def write(out_dir: Path, title: str, sections: list[tuple[str, str]], figures: dict[str, object]) -> tuple[Path, Path]:
    """``sections`` ((heading, markdown)) and ``figures`` (name -> matplotlib figure) as report.md and report.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, text in sections:
        markdown += [f"## {heading}", "", text, ""]
        body += [f"<h2>{html.escape(heading)}</h2>", _markdown_to_html(text)]
    for name, fig in figures.items():
        png = figure_png(fig)
        (out_dir / f"{name}.png").write_bytes(png)
        markdown += [f"![{name}]({name}.png)", ""]
        body.append(f'<h3>{html.escape(name)}</h3><img src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text("\n".join(markdown))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}img{max-width:100%}")
    html_path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                         f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    return md_path, html_path
