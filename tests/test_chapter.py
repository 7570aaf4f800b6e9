"""A notebook's start: runtime and model from its parameters or notebook 00's saved choice; hard and soft checks."""
import pytest

from helpers import models
from helpers.system import machine
from helpers.workbook import chapter
from helpers.workbook.summary import CheckFailed, Summary, hard_failures


def _env(**overrides):
    base = dict(python="3.11.7", platform="Linux", cpus=2, ram_gb=24.0, ram_available_gb=20.0, disk_free_gb=80.0,
                cpu_flags=["avx2"], docker=None, docker_error="no socket", nvidia_runtime=False, gpus=[])
    return machine.Environment(**{**base, **overrides})


def test_notebook_00s_choice_is_used_unless_a_notebook_is_told_otherwise(tmp_path):
    assert chapter.resolve("auto", None, _env(), tmp_path) == ("local", models.DEFAULT)
    chapter.save_choice("docker", "phi4-nano", tmp_path)
    docker = _env(docker="28.2.2", docker_error=None)
    assert chapter.resolve("auto", None, docker, tmp_path) == ("docker", "phi4-nano")
    assert chapter.resolve("local", "qwen2.5-coder-0.5b", docker, tmp_path) == ("local", "qwen2.5-coder-0.5b")
    with pytest.raises(RuntimeError, match="needs a reachable Docker daemon"):
        chapter.resolve("auto", None, _env(), tmp_path)  # the saved docker choice, but no daemon here


def _lab(tmp_path, key):
    return chapter.Chapter("00_x", _env(), "local", models.get(key), Summary("00_x", tmp_path))


def test_grades_are_hard_for_known_answers_and_scores_otherwise(tmp_path):
    nano = _lab(tmp_path, "phi4-nano")
    with pytest.raises(CheckFailed):
        nano.grade("sum", "the sum is right", False, "41")
    real = _lab(tmp_path / "real", "qwen2.5-coder-0.5b")
    assert not real.grade("sum", "the sum is right", False, "41, I think")
    real.check("healthy", "server healthy", True)
    data = real.summary.data
    assert data["checks"]["sum"] == {"ok": False, "detail": "", "text": "the sum is right", "answer": "41, I think",
                                     "soft": True}
    assert hard_failures(data) == {}
    with pytest.raises(CheckFailed):
        real.check("bad-requests", "bad requests are 4xx", False)
    assert list(hard_failures(real.summary.data)) == ["bad-requests"]


def test_skipped_work_is_recorded_with_its_reason(tmp_path):
    lab = _lab(tmp_path, "phi4-nano")
    assert lab.skip("engine stack", "no Docker daemon") is None
    assert lab.summary.data["values"]["skipped"] == {"engine stack": "no Docker daemon"}


class _Server:
    def __init__(self, name, running):
        self.name, self.running, self.base_url = name, running, f"http://{name}"

    def memory_bytes(self):
        return 2**30

    def stop(self):
        self.running.remove(self.name)


def _serve_each(tmp_path, monkeypatch, ram_gb: float, free_gb: float) -> tuple[list, list, dict]:
    """Which backends ran beside which, on a machine of ``ram_gb`` with ``free_gb`` free."""
    from helpers import backends

    lab = chapter.Chapter("05_x", _env(ram_gb=ram_gb), "local", models.get("qwen2.5-coder-0.5b"), Summary("05_x", tmp_path))
    running, seen = [], []

    def start(name, **kw):
        running.append(name)
        lab.servers.append(server := _Server(name, running))
        lab.running[name] = server
        return server

    monkeypatch.setattr(lab, "start", start)
    monkeypatch.setattr(lab, "prepare", lambda name, progress=True: models.require(
        lab.model, backends.get(name).needs, lab.env))  # the check, not the conversion
    monkeypatch.setattr(machine, "memory_available_gb", lambda: free_gb)
    monkeypatch.setattr(machine, "largest_programs", lambda: ["firefox 3.0 GB"])
    for entry in backends.BACKENDS.values():
        monkeypatch.setattr(entry, "provide", lambda *a, **kw: None)
    for name, server in lab.serve_each():
        seen.append((name, list(running)))
    return seen, running, lab.summary.data["values"]["served"]


def test_backends_that_fit_together_run_together(tmp_path, monkeypatch):
    seen, running, served = _serve_each(tmp_path, monkeypatch, ram_gb=24.0, free_gb=20.0)
    assert served["together"] and [names for _, names in seen] == [["vllm", "ollama", "onnx-engine"]] * 3
    assert running == ["vllm", "ollama", "onnx-engine"]  # left running for the dashboard, stopped by finish


def test_backends_that_do_not_fit_together_run_one_after_another(tmp_path, monkeypatch):
    seen, running, served = _serve_each(tmp_path, monkeypatch, ram_gb=16.0, free_gb=8.0)
    assert not served["together"] and "firefox 3.0 GB" in served["why"]
    assert seen == [("vllm", ["vllm"]), ("ollama", ["ollama"]), ("onnx-engine", ["onnx-engine"])] and running == []


def test_a_model_no_backend_can_hold_stops_before_anything_starts(tmp_path, monkeypatch):
    with pytest.raises(models.ResourceError, match="does not fit this machine.*Choose phi4-nano"):
        _serve_each(tmp_path, monkeypatch, ram_gb=4.0, free_gb=3.0)


def test_a_backend_killed_at_its_memory_limit_says_what_it_measured(tmp_path, monkeypatch):
    from helpers import backends
    from helpers.deploy import runtimes

    lab = chapter.Chapter("01_x", _env(), "docker", models.get("qwen2.5-coder-0.5b"), Summary("01_x", tmp_path))

    class OOM:
        def start(self, spec, **kw):
            raise runtimes.DeployError("the backend exited before it was healthy: killed by the kernel at its memory "
                                       "limit of 5.0 GiB (OOMKilled)\nlast log lines:\n...")

    monkeypatch.setattr(lab, "spec", lambda backend, progress=True, card=None: None)
    monkeypatch.setattr(backends.get("vllm"), "setup", lambda *a, **kw: None)
    monkeypatch.setattr(runtimes, "get", lambda name: OOM())
    with pytest.raises(runtimes.DeployError) as raised:
        lab.start("vllm")
    first = str(raised.value).splitlines()[0]
    assert first.startswith("vllm the backend exited before it was healthy: killed by the kernel at its memory limit")
    assert "qwen2.5-coder-0.5b on vllm measured 6.5 GB" in first and "Docker Desktop" in first


def test_a_backend_started_with_other_settings_runs_beside_its_usual_one(tmp_path):
    """The engine on phi4-nano's int4 build next to its fp32 build (notebook 05's one-stream row): each serves its
    own variant, and stopping the int4 one leaves the other running."""
    import requests

    lab = _lab(tmp_path, "phi4-nano")
    try:
        usual = lab.start("onnx-engine", progress=False)
        int4 = lab.start("onnx-engine", progress=False, options={"variant": "genai-int4"})
        variants = [requests.get(s.base_url + "/health", timeout=10).json()["variant"] for s in (usual, int4)]
        assert variants == ["genai-fp32", "genai-int4"] and lab.running == {"onnx-engine": usual}
        lab.stop(int4)
        assert lab.servers == [usual] and requests.get(usual.base_url + "/health", timeout=10).ok
    finally:
        lab.finish()
