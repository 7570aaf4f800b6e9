"""Other platforms, simulated here: the doctor and a notebook's start say what will not run instead of failing."""
import os
import platform
from pathlib import Path

import pytest

from helpers import backends
from helpers.system import cpus, machine
from helpers.workbook import chapter, doctor


def _env(**overrides):
    base = dict(python="3.12.4", platform="macOS-15.1-arm64-arm-64bit", cpus=8, ram_gb=16.0, ram_available_gb=9.0,
                disk_free_gb=120.0, cpu_flags=[], docker="27.3.1", docker_error=None, nvidia_runtime=False, gpus=[],
                registry=True, system="Darwin", machine="aarch64")
    return machine.Environment(**{**base, **overrides})


def _lines(env) -> dict[tuple[str, str, str], str]:
    return {(v.model, v.backend, v.runtime): v.line() for v in doctor.verdicts(env, {"Hugging Face Hub": True})}


def test_on_a_mac_the_doctor_says_vllm_will_not_run_and_what_will():
    lines = _lines(_env())
    qwen = "qwen2.5-coder-0.5b"
    assert lines[(qwen, "vllm", "local")].startswith("will not run: vLLM publishes nothing for the local runtime "
                                                     "on Darwin aarch64 — run this backend on Linux")
    assert lines[(qwen, "vllm", "docker")].startswith("will not run: vLLM publishes nothing for the docker runtime")
    assert lines[(qwen, "ollama", "local")].startswith("will run (as the lab's Ollama-API stand-in on llama.cpp")
    assert lines[(qwen, "ollama", "docker")] == "will run"  # ollama/ollama publishes linux/arm64
    assert lines[(qwen, "onnx-engine", "local")] == "will run"


def test_on_windows_without_wsl_every_backend_points_to_wsl():
    lines = _lines(_env(system="Windows", machine="x86_64", docker=None, docker_error="no daemon"))
    assert all("Linux (or WSL2)" in line for (_, _, runtime), line in lines.items() if runtime == "local")


def test_wsl2_is_linux_with_the_memory_wslconfig_gives_it():
    env = _env(system="Linux", machine="x86_64", wsl=True, ram_gb=32.0, memory_limit_gb=4.0)
    line = _lines(env)[("qwen2.5-coder-0.5b", "vllm", "local")]
    assert "RAM: 6.5 GB needed" in line and ".wslconfig" in line
    assert "WSL2 (Linux x86_64)" in doctor.describe_machine(env)


def test_a_docker_socket_the_user_may_not_use_is_not_called_a_missing_daemon(monkeypatch):
    import docker

    def refuse(**kwargs):
        raise docker.errors.DockerException("Error while fetching server API version: ('Connection aborted.', "
                                            "PermissionError(13, 'Permission denied'))")

    monkeypatch.setattr(docker, "from_env", refuse)
    version, nvidia, error = machine.docker_status()
    assert version is None and "add yourself to the `docker` group" in error


def test_architecture_names_follow_wheels_and_images():
    assert [machine.architecture(m) for m in ("arm64", "AMD64", "x86_64", "aarch64")] == [
        "aarch64", "x86_64", "x86_64", "aarch64"]


@pytest.fixture
def macos(monkeypatch):
    """This Python as macOS's: no sched_getaffinity, no /proc, platform says Darwin arm64."""
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    real_read_text = Path.read_text

    def no_proc(path, *args, **kwargs):
        if str(path).startswith(("/proc", "/sys")):
            raise FileNotFoundError(path)
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", no_proc)
    monkeypatch.setattr(machine, "_cpu_flags", lambda: [])
    monkeypatch.setattr(cpus, "_last_sample", [0.0, {}])


def test_a_notebook_starts_on_a_simulated_mac_and_its_report_says_what_will_not_run(macos, tmp_path):
    lab = chapter.start("00_setup", tmp_path, runtime="local", model="qwen2.5-coder-0.5b")
    assert (lab.env.system, lab.env.machine, lab.env.wsl, lab.env.memory_limit_gb) == ("Darwin", "aarch64", False, None)
    assert lab.env.cpus == os.cpu_count() and cpus.thread_cpus()  # without affinity or /proc/stat: every CPU
    report = doctor.report(lab.env)
    assert "Darwin aarch64" in report and "vllm         local   will not run" in report
    assert "onnx-engine  local   will run" in report


def test_every_backend_says_where_its_packages_are_published():
    for entry in backends.BACKENDS.values():
        assert set(entry.platforms) == set(machine.RUNTIMES) and all(entry.platforms.values()), entry.name
