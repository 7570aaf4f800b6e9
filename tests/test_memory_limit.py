"""Notebook 05 on the real model inside an 8 GB memory cgroup: what a 16 GB laptop with a browser and an IDE open
leaves the lab. Its backends do not fit together there (docs/memory.md), so they run one after another; nothing
is killed for memory. Needs cgroup v1's memory controller, writable (root on this CI machine); skipped elsewhere."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.workbook import runner
from helpers.workbook.summary import hard_failures
from test_notebooks import judge, read_as_a_learner

CGROUPS = Path("/sys/fs/cgroup/memory")
LIMIT_GB = 8
MODEL = "qwen2.5-coder-0.5b"

pytestmark = pytest.mark.slow


@pytest.fixture
def memory_cgroup():
    """A fresh memory cgroup limited to LIMIT_GB; whatever still runs in it afterwards is killed."""
    if not (CGROUPS / "memory.limit_in_bytes").exists() or not os.access(CGROUPS, os.W_OK):
        pytest.skip("no writable cgroup v1 memory controller here")
    group = CGROUPS / f"slm-lab-test-{os.getpid()}"
    group.mkdir()
    (group / "memory.limit_in_bytes").write_text(str(LIMIT_GB * 2**30))
    try:
        yield group
    finally:
        for _ in range(50):
            pids = (group / "cgroup.procs").read_text().split()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        group.rmdir()


def test_notebook_05_on_the_real_model_passes_inside_8_gb(memory_cgroup, tmp_path):
    run = (f"from pathlib import Path; from helpers.workbook import runner; "
           f"runner.run_notebook(runner.NOTEBOOKS / '05_comparison.ipynb', Path({str(tmp_path)!r}), "
           f"{{'runtime': 'local', 'model': {MODEL!r}}}, timeout=1800)")
    # the shell joins the cgroup, then becomes papermill: the kernel and every backend it starts are inside
    script = f'echo $$ > {memory_cgroup}/cgroup.procs && exec "$0" -c "$1"'
    result = subprocess.run(["sh", "-c", script, sys.executable, run], cwd=runner.REPO, capture_output=True,
                            text=True, timeout=3600)
    peak_gb = int((memory_cgroup / "memory.max_usage_in_bytes").read_text()) / 2**30
    oom = dict(line.split() for line in (memory_cgroup / "memory.oom_control").read_text().splitlines())
    print(f"peak usage of the cgroup (page cache included): {peak_gb:.1f} GB of {LIMIT_GB}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "05_comparison.summary.json").read_text())
    assert summary["complete"] and not hard_failures(summary)
    judge(runner.NOTEBOOKS / "05_comparison.ipynb", {"runtime": "local", "model": MODEL}, summary)
    read_as_a_learner(runner.NOTEBOOKS / "05_comparison.ipynb", {"model": MODEL}, tmp_path / "05_comparison.ipynb")
    assert summary["values"]["environment"]["memory_limit_gb"] == LIMIT_GB
    served = summary["values"]["served"]
    assert served["together"] is False and "one after another" in served["why"], served
    assert int(oom.get("oom_kill", 0)) == 0, "a process was killed for memory"
