"""LocalRuntime with real processes: health, logs, fail-fast, stop, cleanup, no orphans."""
import json
import os
import subprocess
import sys
import time

import pytest
import requests

from helpers.deploy import runtimes
from helpers.deploy.spec import LABEL, OWNER, BackendSpec
from helpers.deploy.spec import process_started as spec_started
from helpers.workbook import runner

HTTP_SERVER = [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]


def _gone(pid, within=10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if open(f"/proc/{pid}/stat").read().split()[2] == "Z":  # a zombie has exited
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def runtime(tmp_path):
    rt = runtimes.LocalRuntime(state_dir=tmp_path)
    yield rt
    rt.stop_all()


def test_start_request_logs_stop(runtime):
    spec = BackendSpec("static", port=0, local_command=HTTP_SERVER, health_path="/")
    with runtime.start(spec, timeout=30) as d:
        assert requests.get(d.base_url + "/", timeout=5).ok
        assert "GET / HTTP" in d.logs()
        pid = d.handle.pid
    assert _gone(pid)
    assert not list(runtime.state_dir.glob("*.json"))


def test_exit_fails_fast_with_log_lines(runtime):
    spec = BackendSpec("crash", port=0, local_command=[sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
    start = time.monotonic()
    with pytest.raises(runtimes.DeployError, match=r"(?s)exit code 3.*boom"):
        runtime.start(spec, timeout=60)
    assert time.monotonic() - start < 20, "did not fail fast"


def test_timeout_kills_the_process(runtime):
    spec = BackendSpec("mute", port=0, local_command=[sys.executable, "-c", "import time; time.sleep(600)"])
    with pytest.raises(runtimes.DeployError, match="not healthy after 2 s"):
        runtime.start(spec, timeout=2)
    assert not runtime._running
    assert not list(runtime.state_dir.glob("*.json"))


def _record(state_dir, proc, argv, labels):
    deadline = time.monotonic() + 10
    while not runtimes._same_process(proc.pid, argv) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the child has exec'd (before that it shows the parent's cmdline)
    (state_dir / f"{proc.pid}.json").write_text(json.dumps({"pid": proc.pid, "argv": argv, "labels": labels}))


def test_strays_of_dead_kernels_are_swept_and_a_live_kernels_are_not(tmp_path):
    """A backend whose kernel was killed without a goodbye goes at the next start; one that belongs to a kernel still
    running (make present beside a notebook) stays, and cleanup() takes only this process's own."""
    dead_owner = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                text=True).stdout.strip()
    dead = {**OWNER, f"{LABEL}.session": "gone", f"{LABEL}.owner-pid": dead_owner}
    live = {**OWNER, f"{LABEL}.session": "another-kernel", f"{LABEL}.owner-pid": "1",
            f"{LABEL}.owner-started": spec_started(1)}
    procs = {}
    for name, labels in (("dead", dead), ("live", live), ("mine", OWNER)):
        argv = [sys.executable, "-c", "import time; time.sleep(600)", name]
        procs[name] = subprocess.Popen(argv, start_new_session=True)
        _record(tmp_path, procs[name], argv, labels)
    runtime = runtimes.LocalRuntime(state_dir=tmp_path)  # its start sweeps
    procs["dead"].wait(timeout=10)
    assert procs["live"].poll() is None and procs["mine"].poll() is None
    assert runtime.cleanup() == [procs["mine"].pid]
    procs["mine"].wait(timeout=10)
    assert procs["live"].poll() is None
    procs["live"].kill()
    procs["live"].wait()


def test_failed_notebook_leaves_no_orphan_process(tmp_path):
    from conftest import small_notebook

    path = small_notebook(tmp_path / "00_orphan.ipynb", "runtime = 'local'\nsummary_dir = None",
                          "from helpers.deploy import runtimes\nfrom helpers.deploy.spec import BackendSpec\nfrom helpers.workbook.summary import Summary\n"
                          "s = Summary('00_orphan', summary_dir)\n"
                          f"spec = BackendSpec('static', 0, local_command={HTTP_SERVER!r}, health_path='/')\n"
                          "d = runtimes.LocalRuntime().start(spec, timeout=30)\ns.record('pid', d.handle.pid)",
                          "raise RuntimeError('a learner broke this cell')")
    with pytest.raises(runner.NotebookFailed, match="a learner broke this cell"):
        runner.run_notebook(path, tmp_path / "out")
    pid = __import__("json").loads((tmp_path / "out" / "00_orphan.summary.json").read_text())["values"]["pid"]
    assert _gone(pid), f"backend process {pid} outlived its kernel"


def test_without_prctl_a_watcher_ends_the_backend_with_its_kernel():
    """macOS has no PR_SET_PDEATHSIG: there the wrapper watches its parent instead (the branch forced here)."""
    wrapper = runtimes._RUN_WHILE_PARENT_LIVES.replace('hasattr(ctypes.CDLL(None), "prctl")', "False")
    kernel = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"proc = subprocess.Popen([sys.executable, '-c', {wrapper!r}, 'sleep', '876543'], start_new_session=True)\n"
        "time.sleep(1.5)\nprint(proc.pid, flush=True)\n")], stdout=subprocess.PIPE, text=True)
    wrapper_pid = int(kernel.stdout.readline())
    kernel.wait()  # the "kernel" ends without stopping its backend
    assert _gone(wrapper_pid, within=10), "the watcher did not notice its parent was gone"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 876543" not in ps


def test_the_first_error_line_is_the_exception_raised_not_the_traceback():
    log = ("INFO starting\nWARNING: something failed to load, retrying\nTraceback (most recent call last):\n"
           '  File "x.py", line 3, in <module>\n    raise RuntimeError(\n'
           "RuntimeError: Engine core initialization failed. See root cause above.\n")
    assert runtimes.first_error(log) == "RuntimeError: Engine core initialization failed. See root cause above."
    assert runtimes.first_error("INFO ok\nerror: address already in use\n") == "error: address already in use"
    assert runtimes.first_error("all fine\n") == ""


def test_server_flags_join_the_command_of_the_runtime_that_runs_it():
    spec = BackendSpec(name="b", port=0, command=["serve"], local_command=["python", "-m", "b"])
    spec.add_server_args("local", ["--x", "1"])
    spec.add_server_args("docker", ["--y"])
    assert spec.local_command == ["python", "-m", "b", "--x", "1"] and spec.command == ["serve", "--y"]
    with pytest.raises(ValueError, match="takes no command-line flags on the docker runtime"):
        BackendSpec(name="ollama", port=0).add_server_args("docker", ["--z"])
