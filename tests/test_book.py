"""make book: a run's executed notebooks as a static site with an index (the browser test opens a real one)."""
import json
import shutil

from helpers.workbook import book, runner


def test_a_run_becomes_an_index_and_one_page_per_chapter(tmp_path):
    run = tmp_path / "20261205-000000"
    (run / "labs").mkdir(parents=True)
    for notebook in runner.discover(runner.NOTEBOOKS)[:2]:
        shutil.copy(notebook, run / notebook.name)
    shutil.copy(runner.discover(runner.LABS)[0], run / "labs")
    (run / "workbook.json").write_text(json.dumps({"00_setup.ipynb": {"ok": True, "seconds": 90.0}}))
    (run / "00_setup.summary.json").write_text(json.dumps({"checks": {"a": {"ok": True}, "b": {"ok": False}}}))
    assert book.latest_run(tmp_path) == run
    index = book.build(run)
    page = index.read_text()
    assert "00 · Setup" in page and "1.5 min" in page and "1 of 2" in page and "Labs (with their solutions)" in page
    assert "what your machine offers the lab" in page  # the chapter's "You will learn" line
    assert (run / "book" / "01_vllm.html").read_text().count("jp-Cell") > 10
