"""``make book`` (``slm-lab-book``): the executed notebooks and labs of a run as a static HTML site to read before
running anything — every chapter with its outputs and plots (nbconvert's HTML export, images embedded), the
comparison report, and an index with what each chapter teaches, its time in this run and its checks.

    slm-lab-book                    # the latest run under runs/ (make lab), into <run>/book/
    slm-lab-book --run runs/20261205-031500 --labs   # the labs executed first, with their solutions
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
from pathlib import Path

from helpers.system.paths import RUNS
from helpers.workbook import runner

STYLE = ("body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;line-height:1.45}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.35rem .6rem;vertical-align:top}"
         "th{background:#f4f4f4;text-align:left}")


def latest_run(runs: Path = RUNS) -> Path:
    """The newest run folder of ``make lab`` (one with a workbook.json)."""
    found = sorted(p.parent for p in runs.glob("*/workbook.json"))
    if not found:
        raise FileNotFoundError(f"no run of the workbook under {runs}: run `make lab` first")
    return found[-1]


def _chapter_facts(notebook: Path) -> dict:
    """Title (the first heading) and what the chapter teaches (its "You will learn" line)."""
    cells = json.loads(notebook.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("# ")), notebook.stem)
    learn = re.search(r"\*\*You will learn\*\*: (.+?)(\n|$)", text)
    return {"title": title, "learn": learn.group(1).rstrip(" .") if learn else ""}


def _checks(run: Path, stem: str) -> str:
    summary = run / f"{stem}.summary.json"
    if not summary.exists():
        return "–"
    checks = json.loads(summary.read_text())["checks"].values()
    return f"{sum(c['ok'] for c in checks)} of {len(checks)}"


def build(run: Path, out: Path | None = None) -> Path:
    """Export ``run``'s executed notebooks (and labs, under ``run/labs``) to ``out`` (default ``run/book``);
    returns the index page."""
    from nbconvert import HTMLExporter

    out = out or run / "book"
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    seconds = json.loads((run / "workbook.json").read_text()) if (run / "workbook.json").exists() else {}
    rows = []
    for kind, folder in (("notebook", run), ("lab", run / "labs")):
        for notebook in runner.discover(folder):
            body, _ = exporter.from_filename(str(notebook))
            (out / f"{notebook.stem}.html").write_text(body)
            took = seconds.get(notebook.name, {}).get("seconds")
            rows.append({"kind": kind, "stem": notebook.stem, **_chapter_facts(notebook),
                         "time": f"{took / 60:.1f} min" if took else "–", "checks": _checks(folder, notebook.stem)})
    report = run / "report" / "report.html"
    if report.exists():
        shutil.copy(report, out / "report.html")
    (out / "index.html").write_text(_index(run, rows, report.exists()))
    return out / "index.html"


def _index(run: Path, rows: list[dict], report: bool) -> str:
    def row(r):
        return (f"<tr><td><a href='{r['stem']}.html'>{html.escape(r['title'])}</a></td>"
                f"<td>{html.escape(r['learn'])}</td><td>{r['time']}</td><td>{r['checks']}</td></tr>")

    parts = [f"<!doctype html><meta charset='utf-8'><title>SLM Deploy Lab</title><style>{STYLE}</style>",
             "<h1>SLM Deploy Lab</h1>",
             f"<p>The workbook as executed in <code>{html.escape(run.name)}</code>: every output and plot of that run."
             + (" The comparison's <a href='report.html'>report</a>." if report else "") + "</p>"]
    for kind, heading in (("notebook", "Chapters"), ("lab", "Labs (with their solutions)")):
        mine = [r for r in rows if r["kind"] == kind]
        if mine:
            parts += [f"<h2>{heading}</h2><table><tr><th>chapter</th><th>what you learn</th><th>time</th>"
                      "<th>checks passed</th></tr>", *map(row, mine), "</table>"]
    return "\n".join(parts)


def run_labs(run: Path, runtime: str, model: str) -> None:
    """Execute every lab with its solution into ``run/labs`` (for the book)."""
    for lab in runner.discover(runner.LABS):
        print(f"▶ {lab.name} …", flush=True)
        runner.run_notebook(lab, run / "labs", {"runtime": runtime, "model": model, "use_solution": True})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run folder of make lab (default: the latest)")
    parser.add_argument("--labs", action="store_true", help="execute the labs with their solutions first")
    args = parser.parse_args(argv)
    run = args.run or latest_run()
    if args.labs:
        params = json.loads(next(run.glob("*.summary.json")).read_text())["parameters"]
        run_labs(run, params["runtime"], params["model"])
    print("book:", build(run))


if __name__ == "__main__":
    main()
