import json

import nbformat
import pytest

from helpers.workbook import runner


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("runtime = 'auto'\nsummary_dir = None", metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def test_discover_orders_numbered_notebooks(tmp_path):
    for name in ["01_b.ipynb", "00_a.ipynb", "notes.ipynb", "10_c.ipynb"]:
        (tmp_path / name).write_text("{}")
    assert [p.name for p in runner.discover(tmp_path)] == ["00_a.ipynb", "01_b.ipynb", "10_c.ipynb"]


def test_run_notebook_injects_parameters_and_returns_summary(tmp_path):
    nb = _notebook(tmp_path / "00_x.ipynb",
                   "from helpers.workbook.summary import Summary\ns = Summary('00_x', summary_dir, runtime=runtime)\n"
                   "s.check('runtime passed', runtime == 'local')\ns.finish()")
    summary = runner.run_notebook(nb, tmp_path / "out")
    assert summary["complete"] and summary["parameters"] == {"runtime": "local"}
    assert (tmp_path / "out" / "00_x.ipynb").exists()


def test_failing_cell_reports_its_source_and_error(tmp_path):
    nb = _notebook(tmp_path / "00_y.ipynb", "x = 1", "assert x == 2, 'x should be two'")
    with pytest.raises(runner.NotebookFailed) as err:
        runner.run_notebook(nb, tmp_path / "out")
    assert "assert x == 2" in str(err.value) and "x should be two" in str(err.value)


def test_failed_check_is_written_before_it_raises(tmp_path):
    nb = _notebook(tmp_path / "00_z.ipynb",
                   "from helpers.workbook.summary import Summary\ns = Summary('00_z', summary_dir)\n"
                   "s.check('one equals two', 1 == 2, 'arithmetic broke')")
    with pytest.raises(runner.NotebookFailed, match="one equals two"):
        runner.run_notebook(nb, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "00_z.summary.json").read_text())
    assert summary["checks"]["one equals two"] == {"ok": False, "detail": "arithmetic broke"}
    assert not summary["complete"]
