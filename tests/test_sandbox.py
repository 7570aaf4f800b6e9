"""Model-written code runs confined or not at all: in bubblewrap, or where that does not work in a locked-down
container, each harmful completion fails harmlessly — the learner's file, environment and network untouched,
nothing left running — and where no sandbox works the answer is "not graded", never run unconfined."""
import os
import socket
import subprocess
import threading
import time

import pytest

from helpers.tasks import grading, sandbox

MARKER = "987654"  # how long a stray child would sleep: its name in the process list


@pytest.fixture(params=["bubblewrap", pytest.param("docker", marks=pytest.mark.docker)])
def confined(request, monkeypatch):
    """Each sandbox in turn: docker by hiding bwrap, as on a machine where it is missing or cannot work."""
    sandbox.confinement.cache_clear()
    if request.param == "docker":
        real = sandbox.shutil.which
        monkeypatch.setattr(sandbox.shutil, "which", lambda name, **kw: None if name == "bwrap" else real(name, **kw))
    prefix, name = sandbox.confinement()
    if prefix is None or not name.startswith(request.param):
        pytest.skip(f"{request.param} does not work here: {name}")
    yield name
    sandbox.confinement.cache_clear()


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "home" / "notes.txt"
    path.parent.mkdir()
    path.write_text("the learner's notes")
    return path


def _answer(body: str) -> str:
    return "```python\ndef f():\n" + "".join(f"    {line}\n" for line in body.splitlines()) + "```"


def _strays() -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if f"sleep {MARKER}" in line and "ps -eo" not in line]


def test_a_correct_answer_passes_inside(confined):
    assert grading.grade_code(_answer("return 41 + 1"), "f", [((), 42)]) == (True, "ok")


def test_it_cannot_delete_the_learners_file(confined, victim):
    ok, why = grading.grade_code(_answer(f"import os\nos.remove({str(victim)!r})\nreturn 1"), "f", [((), 1)])
    assert not ok and victim.read_text() == "the learner's notes"


def test_it_cannot_read_the_learners_environment(confined, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    ok, why = grading.grade_code(_answer("import os\nreturn os.environ.get('HF_TOKEN')"), "f", [((), "hf_secret_value")])
    assert not ok and "hf_secret_value" not in why.replace("expected 'hf_secret_value'", "")


def test_it_cannot_reach_the_network(confined):
    listener = socket.create_server(("127.0.0.1", 0))
    port, reached = listener.getsockname()[1], []
    threading.Thread(target=lambda: reached.append(listener.accept()), daemon=True).start()
    code = _answer(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\nreturn 1")
    ok, why = grading.grade_code(code, "f", [((), 1)])
    time.sleep(0.5)
    listener.close()
    assert not ok and not reached, why


def test_a_fork_bomb_ends_and_leaves_nothing(confined):
    code = _answer("import os\nwhile True:\n    os.fork()")
    start = time.monotonic()
    ok, why = grading.grade_code(code, "f", [((), 1)], timeout=10)
    assert not ok and time.monotonic() - start < 30


def test_a_large_file_stops_at_the_file_size_limit(confined):
    ok, why = grading.grade_code(_answer("open('big', 'wb').write(b'x' * 10**9)\nreturn 1"), "f", [((), 1)])
    assert not ok


def test_endless_output_is_cut_and_the_run_ends(confined):
    outcome = sandbox.run("while True:\n    print('x' * 1000, flush=True)", timeout=3)
    assert outcome.ran and outcome.timed_out and len(outcome.stdout) <= sandbox.OUTPUT_BYTES


def test_a_child_left_running_is_killed_with_its_group(confined):
    code = f"import os\nif os.fork() == 0:\n    os.execv('/bin/sleep', ['sleep', '{MARKER}'])\nprint('parent done')"
    outcome = sandbox.run(code, timeout=5)
    assert outcome.ran and "parent done" in outcome.stdout
    deadline = time.monotonic() + 10
    while _strays() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _strays(), "a child of the graded code outlived it"


def test_where_no_sandbox_works_the_code_is_not_run(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "confinement", lambda: (None, "bwrap is not installed"))
    flag = tmp_path / "ran"
    ok, why = grading.grade_code(_answer(f"open({str(flag)!r}, 'w').write('x')\nreturn 1"), "f", [((), 1)])
    assert ok is None and why.startswith("not graded: no sandbox works") and not flag.exists()


def test_commands_confine_as_documented():
    bwrap = sandbox.bwrap_command()
    assert {"--unshare-all", "--die-with-parent", "--new-session", "--clearenv"} <= set(bwrap)
    assert "/home" not in bwrap and os.path.expanduser("~") not in bwrap  # no home bound, only read-only system paths
    docker = sandbox.docker_command("python:3.11-slim")
    for flag, value in (("--network", "none"), ("--cap-drop", "ALL"), ("--user", "65534:65534"),
                        ("--security-opt", "no-new-privileges")):
        assert docker[docker.index(flag) + 1] == value
    assert "--read-only" in docker and "--pids-limit" in docker and "--memory" in docker
